"""The rate gate: Aha!'s budget (per second, per minute) shared by every sender of a run.

pyrate-limiter's sliding-window bucket keeps the windows; the waiting is done here, with an
injectable clock and sleep, so a test can prove the minute window without a minute of real
time. On top of the windows, a 429 or an exhausted `X-Ratelimit-Remaining` sets a pause
(read by `retry.asked_wait`) that every sender honours before its next call.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from pyrate_limiter import InMemoryBucket, Rate, RateItem

from target_aha.retry import asked_wait
from target_aha.wire import Answer

ARRIVAL_MARGIN_MS = 50
"""Each window is this much longer than Aha!'s, so network jitter between our send and
Aha!'s count of the arrival cannot push two windows' worth of requests into one."""
BUFFER_MS = 5
"""Added to each wait for a window to free, so the retry lands after the slot is free."""

logger = logging.getLogger("target-aha")  # the SDK sets this name's level (TARGET_AHA_LOGLEVEL)


def _rate(per_window: float, window_ms: int) -> Rate:
    """A pyrate Rate for a possibly fractional budget (0.5/s = 1 per 2 s)."""
    count = max(1, math.floor(per_window))
    return Rate(count, round(window_ms * count / per_window) + ARRIVAL_MARGIN_MS)


def _windows(second: Rate, minute: Rate) -> list[Rate]:
    """The windows that can bind: pyrate refuses a window that another one makes redundant."""
    if minute.limit <= second.limit:
        return [minute]
    if minute.limit / minute.interval >= second.limit / second.interval:
        return [second]
    return [second, minute]


class RateGate:
    """The one limiter of a run: two windows (second, minute) plus pauses Aha! asks for.

    `clock` (seconds, monotonic) dates requests and pauses, `wall` (unix seconds) reads
    `X-Ratelimit-Reset`, `sleep` waits; all three are the real ones unless a test gives its own.
    """

    def __init__(
        self,
        per_second: float,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._bucket = InMemoryBucket(
            _windows(_rate(per_second, 1000), _rate(per_minute, 60_000))
        )
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pause_until = 0.0
        self.throttled = 0

    def wait_turn(self) -> None:
        """Block until this caller may send one request."""
        while (delay := self._pause_until - self._clock()) > 0:
            self._sleep(delay)
        while (wait_ms := self._admit()) is not None:
            self._sleep((wait_ms + BUFFER_MS) / 1000)

    def _admit(self) -> int | None:
        """Take a slot in every window now (None), or say how many ms until one frees."""
        with self._lock:
            item = RateItem("aha", int(self._clock() * 1000))
            if self._bucket.put(item):
                self._bucket.leak(item.timestamp)  # forget what no window can count any more
                return None
            wait = self._bucket.waiting(item)
            assert isinstance(wait, int)
            return max(wait, 0)

    def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` (from now)."""
        with self._lock:
            self._pause_until = max(self._pause_until, self._clock() + seconds)

    def observe(self, answer: Answer) -> float | None:
        """Read Aha!'s rate headers; returns the wait they ask for, if any, and applies it."""
        wait = asked_wait(answer, self._wall())
        if answer.status == 429:
            with self._lock:  # senders observe concurrently: keep the count exact
                self.throttled += 1
        if wait is not None:
            self.pause(wait)
            if answer.status == 429:
                logger.info("Aha! answered 429 (rate limit): all senders wait %.1f s", wait)
        return wait
