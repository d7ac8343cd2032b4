"""The response webhook: each Aha! answer that settles a record (or a batch), POSTed onward.

Posting happens on a few background threads, so a slow or dead webhook never holds a sender
(and with it Aha!'s rate budget) hostage. The sinks call `join` before the SDK emits STATE
and `close` at the end of the run, so every answer is posted (or given up on) before the
tap's bookmark moves or the process ends. A webhook that fails is retried a few times with a
small backoff and then logged: it never fails the load. The webhook has its own sessions and
never sees the Aha! API key: the envelope carries only the method, URL (credentials masked),
status and answer, and goes through the redactor before it is posted (a server that echoes
what it received cannot make the webhook carry a secret onward).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
from dataclasses import replace
from typing import Any

from urllib3.util import parse_url

from target_aha.http_transport import HttpTransport
from target_aha.redact import REDACTOR, mask_url
from target_aha.retry import GaveUp, RetryPolicy
from target_aha.transport import AnswerTooLarge, Transport, TransportError
from target_aha.wire import Answer, Outgoing

RETRIES = 3
"""Retries of one post on a connection error, a timeout, 408, 429 or 5xx."""
BACKOFF_SECONDS = 0.2
"""First wait between attempts; it doubles each retry (0.2, 0.4, 0.8 s, with jitter)."""
TIMEOUT = 10.0
"""Seconds for one post, from connecting to the last byte of the answer: a black-holed or
trickling webhook costs seconds, not minutes."""
ANSWER_LIMIT = 64 * 2**10
"""The most of a webhook's answer that is read: its body is ignored, only the status counts."""
POLICY = RetryPolicy(
    1 + RETRIES, BACKOFF_SECONDS, jitter=lambda wait: random.uniform(0.5, 1.0) * wait
)
"""The retry policy of one post (one attempt only while the webhook is failing)."""
GIVE_UP_AFTER = 3
"""After this many posts in a row failed every attempt, later posts get one attempt each
(until one goes through), so a webhook that is down cannot stall the end of a long run."""
WORKERS = 4
QUEUE_SIZE = 1000
"""Posts waiting at most; beyond that, senders wait (memory stays flat)."""

logger = logging.getLogger("target-aha")


def envelope(
    stream: str,
    key: str | list[str | None] | None,
    *,
    method: str,
    url: str,
    status: int,
    response: Any,
) -> dict[str, Any]:
    """The JSON a webhook receives (contract: spec §6). `key` is a list for a batch.

    The request's URL is shown as `mask_url` shows it: a secret in its query stays out.
    """
    return {
        "stream": stream,
        "key": key,
        "request": {"method": method, "url": mask_url(url)},
        "status": status,
        "response": response,
    }


class Webhook:
    """Queues envelopes and posts them from background threads, with retries."""

    def __init__(
        self, user_agent: str, transport: Transport | None = None,
        policy: RetryPolicy = POLICY,
    ) -> None:
        self._headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(QUEUE_SIZE)
        self._transport = transport or HttpTransport(TIMEOUT, ANSWER_LIMIT)
        self._policy = policy
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._failing_streak = 0
        self.delivered = 0
        self.undelivered = 0

    def post(self, url: str, body: dict[str, Any]) -> None:
        """Queue one envelope for `url` (blocks only while the queue is full)."""
        with self._lock:
            if not self._workers:
                self._workers = [
                    threading.Thread(target=self._run, name=f"aha-webhook-{i}", daemon=True)
                    for i in range(WORKERS)
                ]
                for worker in self._workers:
                    worker.start()
        self._queue.put((url, body))

    def join(self, deadline: float | None = None) -> bool:
        """Wait until every queued envelope was posted or given up on; whether all were.

        With a `deadline` (a `time.monotonic()` value, for a run that is ending early), wait
        only until then.
        """
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                done.wait(left)
        return True

    def close(self, deadline: float | None = None) -> None:
        """Post what is queued (until `deadline`, if given), stop the threads, log the tally."""
        with self._lock:
            workers, self._workers = self._workers, []
        if not workers:
            return
        unposted = 0 if self.join(deadline) else self._queue.unfinished_tasks
        for _ in workers:
            with contextlib.suppress(queue.Full):  # workers still busy die with the process
                self._queue.put_nowait(None)
        if self.undelivered or unposted:
            logger.warning(
                "Response webhook: %d answers posted, %d could not be delivered (see the "
                "warnings above)%s; the results file has every record's outcome.",
                self.delivered, self.undelivered,
                f", {unposted} were not posted before the run stopped" if unposted
                else "",
            )
        else:
            logger.info("Response webhook: %d answers posted.", self.delivered)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._deliver(*item)
            except Exception:  # a worker must survive anything, or join() would hang
                logger.exception("Response webhook: unexpected error while posting")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _deliver(self, url: str, body: dict[str, Any]) -> None:
        with self._lock:
            policy = (replace(self._policy, attempts=1)
                      if self._failing_streak >= GIVE_UP_AFTER else self._policy)
        problem = self._attempt(url, json.dumps(REDACTOR.data(body)), policy)
        with self._lock:
            if problem is None:
                self.delivered += 1
                self._failing_streak = 0
                return
            self.undelivered += 1
            self._failing_streak += 1
            streak = self._failing_streak
        logger.warning(
            "Response webhook at %s did not take the answer for stream '%s', key %s (%s); "
            "the load goes on and the results file has the record's outcome.",
            _site(url), body["stream"], json.dumps(body["key"]), problem,
        )
        if streak == GIVE_UP_AFTER:
            logger.warning(
                "Response webhook at %s failed %d posts in a row; posting each further "
                "answer once, without retries, until it answers again.", _site(url), streak,
            )

    def _attempt(self, url: str, data: str, policy: RetryPolicy) -> str | None:
        """Post until accepted; None on success, else what went wrong the last time."""
        call = Outgoing("POST", url, dict(self._headers), data)
        tries = 0

        def post() -> Answer:
            nonlocal tries
            tries += 1
            try:
                return self._transport.send(call)
            except AnswerTooLarge as exc:  # the body is ignored anyway: the status is enough
                return Answer(exc.status, {}, "")

        try:
            answer = policy.call(post)
        except GaveUp as exc:
            last = exc.last
            what = last.kind if isinstance(last, TransportError) else f"HTTP {last.status}"
            return f"{what} after {tries} attempt(s)"
        if 200 <= answer.status < 300:
            return None
        return f"HTTP {answer.status} after {tries} attempt(s)"


def _site(url: str) -> str:
    """The webhook's scheme and host only (as the client connects): its path or query may
    hold a secret of its own."""
    parts = parse_url(url)
    return f"{parts.scheme}://{parts.netloc}"
