"""The one retry policy: what an answer means, what is worth another try, how long to wait.

Every caller that talks HTTP (the sender, the response webhook, `--test`) runs its attempts
through `RetryPolicy.call`: one rule for retryable statuses (408, 429, 5xx), one for errors
(`TransportError.retryable`, decided at the transport seam), exponential backoff with
jitter (python-backoff's `expo` and `full_jitter`), and the waits Aha! asks for
(`Retry-After`, `X-Ratelimit-Reset`) honoured through the rate gate instead of the backoff.
`sleep` and the clocks are injectable, so the policy is tested without waiting.
"""

from __future__ import annotations

import math
import time
import typing as t
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import backoff

from target_aha.transport import TransportError
from target_aha.wire import Answer

MIN_429_PAUSE = 0.1
"""Shortest pause after a 429, whatever its headers say."""
MAX_PAUSE_SECONDS = 65.0
"""Cap on a wait read from Aha!'s headers (a skewed clock must not stall the run)."""
EPOCH_2001 = 1e9
"""A reset value below this is a number of seconds to wait, not a unix time."""


class Verdict(Enum):
    """What an answer means for the record and the run."""

    OK = "ok"
    RETRY = "retry"
    REJECTED = "rejected"
    FATAL = "fatal"


def retryable_status(status: int) -> bool:
    """408, 429 and 5xx: the server may answer differently if asked again."""
    return status in (408, 429) or status >= 500


def classify(status: int) -> Verdict:
    """2xx done; 429/5xx worth another try; 401/403 end the run; other 4xx reject the record."""
    if 200 <= status < 300:
        return Verdict.OK
    if status in (401, 403):
        return Verdict.FATAL
    if retryable_status(status):
        return Verdict.RETRY
    return Verdict.REJECTED


def asked_wait(answer: Answer, now: float) -> float | None:
    """The wait Aha!'s headers ask for after this answer, if any (`now`: unix seconds).

    A 429 waits for `Retry-After`, else until `X-Ratelimit-Reset`, at least MIN_429_PAUSE (a
    reset already past must not mean "hammer"). A 2xx with `X-Ratelimit-Remaining: 0` spent
    the budget but got through: wait until the earliest the window can end (Reset has
    whole-second resolution, rounded up); if it has not ended yet after all, the 429 that
    follows waits for all of it.
    """
    headers = {k.lower(): v for k, v in answer.headers.items()}
    if answer.status == 429:
        wait = _seconds(headers.get("retry-after"))
        if wait is None:
            wait = _until(headers.get("x-ratelimit-reset"), now)
        return None if wait is None else max(wait, MIN_429_PAUSE)
    if headers.get("x-ratelimit-remaining") == "0":
        return _until(headers.get("x-ratelimit-reset"), now, earliest=True)
    return None


def _number(value: str | None) -> float | None:
    """A header's number, or None if it is absent or not a number."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _bounded(wait: float) -> float:
    """A wait between 0 and MAX_PAUSE_SECONDS."""
    return min(max(wait, 0.0), MAX_PAUSE_SECONDS)


def _seconds(value: str | None) -> float | None:
    """A `Retry-After` in seconds."""
    number = _number(value)
    return None if number is None else _bounded(number)


def _until(reset: str | None, now: float, earliest: bool = False) -> float | None:
    """Seconds until an `X-Ratelimit-Reset` time (UTC unix seconds; some APIs send a delta).

    `earliest`: the soonest a whole-second Reset can mean, one second before it.
    """
    value = _number(reset)
    if value is None:
        return None
    return _bounded(value if value < EPOCH_2001 else value - now - (1.0 if earliest else 0.0))


class Gate(Protocol):
    """The rate gate as the policy uses it (`ratelimit.RateGate`)."""

    def wait_turn(self) -> None:
        """Block until one more request may go."""

    def observe(self, answer: Answer) -> float | None:
        """Apply the wait an answer's headers ask for; return it, if any."""


class GaveUp(Exception):
    """Every attempt allowed failed, or one failed in a way no retry can mend.

    `last` is how the last attempt ended (its error, or its retryable answer) and `attempts`
    how many were made; the caller words it for users.
    """

    def __init__(self, attempts: int, last: TransportError | Answer) -> None:
        super().__init__(f"gave up after {attempts} attempt(s)")
        self.attempts = attempts
        self.last = last


full_jitter: Callable[[float], float] = backoff.full_jitter
"""Anywhere between 0 and the wait: senders that failed together do not retry together."""


def no_jitter(wait: float) -> float:
    """Exactly `wait`."""
    return wait


@dataclass(frozen=True)
class RetryPolicy:
    """How one call is attempted: how often, and how long to wait between attempts.

    The n-th wait is `first_wait * 2**(n-1)`, at most `max_wait`, through `jitter`. A retry
    after an answer whose headers asked for a wait (the gate applies it) skips the backoff.
    """

    attempts: int
    first_wait: float
    max_wait: float = math.inf
    jitter: Callable[[float], float] = full_jitter
    sleep: Callable[[float], None] = time.sleep

    def waits(self) -> Iterator[float]:
        """The waits between attempts, in order, before jitter."""
        delays = backoff.expo(
            factor=self.first_wait, max_value=None if math.isinf(self.max_wait) else self.max_wait
        )
        next(delays)  # python-backoff's generators are primed before their first wait
        return t.cast(Iterator[float], delays)

    def call(
        self,
        send: Callable[[], Answer],
        *,
        gate: Gate | None = None,
        recover: Callable[[], Answer | None] | None = None,
        on_retry: Callable[[int, TransportError | Answer], None] | None = None,
    ) -> Answer:
        """The first answer that is not worth retrying; raises GaveUp.

        After an error or a 5xx the request may or may not have been carried out:
        `recover`, if given, is asked (after the backoff) and its answer, the object found,
        is returned instead of sending again. `on_retry(attempt, last)` is told of each retry.
        """
        waits = self.waits()
        last: TransportError | Answer | None = None
        for attempt in range(self.attempts):
            final = attempt == self.attempts - 1
            if attempt and on_retry is not None and last is not None:
                on_retry(attempt, last)
            if gate is not None:
                gate.wait_turn()
            try:
                answer = send()
            except TransportError as exc:
                last = exc
                if exc.retryable and (not final or recover is not None):
                    # Aha! may still be committing: give it time before looking.
                    self.sleep(self.jitter(next(waits)))
                if recover is not None and (found := recover()) is not None:
                    return found
                if not exc.retryable:
                    raise GaveUp(attempt + 1, exc) from exc
                continue
            paused = gate.observe(answer) if gate is not None else None
            if not retryable_status(answer.status):
                return answer
            last = answer
            if paused is None and not final:
                self.sleep(self.jitter(next(waits)))
            # A gateway's 502/504 can come after the application committed: look first.
            if answer.status >= 500 and recover is not None and (found := recover()) is not None:
                return found
        assert last is not None
        raise GaveUp(self.attempts, last)

