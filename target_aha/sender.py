"""One logical call to Aha!: its turn at the rate gate, its retries, the meaning of its answer.

A dry run uses the same sender over the dry-run transport (with no gate): its answers are
simulated 2xx, so nothing downstream needs to know that nothing was sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from target_aha import explain
from target_aha.client import AhaClient
from target_aha.errors import FatalAhaError, RecordRejected
from target_aha.retry import Gate, GaveUp, RetryPolicy, Verdict, classify
from target_aha.transport import TransportError
from target_aha.wire import Answer, Request

FIRST_WAIT = 0.5
"""First backoff between attempts (doubling, with full jitter)."""
MAX_WAIT = 30.0
"""Longest backoff between attempts."""

logger = logging.getLogger("target-aha")  # the SDK sets this name's level (TARGET_AHA_LOGLEVEL)


def sender_policy(max_retries: int) -> RetryPolicy:
    """The policy of calls to Aha!: `max_retries` retries, 0.5 s doubling up to 30 s."""
    return RetryPolicy(max_retries + 1, FIRST_WAIT, MAX_WAIT)


@dataclass
class Sender:
    """One logical call: waits its turn, retries what is worth retrying, judges the answer."""

    client: AhaClient
    gate: Gate | None
    policy: RetryPolicy
    sent: int = 0
    retries: int = 0
    """Attempts beyond each call's first, for the end-of-run summary."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(
        self, request: Request, where: str, recover: Callable[[], Answer | None] | None = None
    ) -> Answer:
        """The 2xx answer; raises RecordRejected (400/404/422...) or FatalAhaError.

        `where` names the stream and record for messages. After a timeout, a dropped
        connection or a 5xx the request may or may not have been carried out: `recover`, if
        given, is asked first and its answer (the object found in Aha!) is used instead of
        sending again.
        """
        try:
            answer = self.policy.call(
                lambda: self._attempt(request), gate=self.gate, recover=recover,
                on_retry=lambda attempt, last: self._retrying(request, attempt, last),
            )
        except GaveUp as exc:
            raise FatalAhaError(
                explain.gave_up(self.client, request, where, exc.attempts - 1, exc.last)
            ) from None
        verdict = classify(answer.status)
        if verdict is Verdict.REJECTED:
            raise RecordRejected(
                answer.status, answer.excerpt(), request.describe(), answer, request
            )
        if verdict is Verdict.FATAL:
            raise FatalAhaError(explain.refused(self.client, answer, request, where))
        return answer

    def _attempt(self, request: Request) -> Answer:
        started = time.monotonic()
        try:
            answer = self.client.send(request)
        finally:
            with self.lock:
                self.sent += 1
        if logger.isEnabledFor(logging.DEBUG):  # per request: no message built for nothing
            logger.debug("%s -> %d in %.0f ms", request.describe(), answer.status,
                         (time.monotonic() - started) * 1000)
        return answer

    def _retrying(self, request: Request, attempt: int, last: TransportError | Answer) -> None:
        logger.debug("Retrying %s (%s), attempt %d", request.describe(),
                     explain.last_attempt(last), attempt)
        with self.lock:
            self.retries += 1
