"""Counting /api/v1 traffic: the request log, its statistics, and Aha!'s rate limit.

Both look at arrivals in sliding windows of 1 s and 60 s, the way Aha! counts its 20/s and
300/min budgets, so a benchmark can check that a client stayed inside them.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .config import Config

# With no limit configured, a throttled answer still names a limit: Aha!'s per-minute budget.
NOTIONAL_LIMIT = 300

_FAULT_COUNTERS = {
    "throttle": "throttled",
    "rate_limit": "throttled",
    "error": "errors_injected",
    "drop": "dropped",
    "commit_timeout": "commit_timeouts",
    "commit_error": "commit_errors",
}


class RequestLog:
    """Every /api/v1 request in arrival order, and the counters `Sandbox.stats()` reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._counters: dict[str, int] = {}
        self._windows: dict[int, deque[float]] = {1: deque(), 60: deque()}
        self._maxima: dict[int, int] = {1: 0, 60: 0}
        self.reset()

    def reset(self) -> None:
        """Forget requests and statistics."""
        with self._lock:
            self._entries.clear()
            self._counters = {"requests": 0, **dict.fromkeys(_FAULT_COUNTERS.values(), 0)}
            for seconds, window in self._windows.items():
                window.clear()
                self._maxima[seconds] = 0

    def arrive(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Log a request as it arrives; returns its entry, whose `at` is the arrival time.

        The time is taken under the lock so that log order, `at` order and the windows agree.
        The busiest window over a run always ends at an arrival, so counting the arrivals in
        [t - w, t] at each arrival t gives the exact maximum.
        """
        with self._lock:
            now = time.time()
            entry = {**fields, "status": None, "at": now, "fault": None}
            self._entries.append(entry)
            self._counters["requests"] += 1
            for seconds, window in self._windows.items():
                window.append(now)
                while window[0] < now - seconds:
                    window.popleft()
                self._maxima[seconds] = max(self._maxima[seconds], len(window))
            return entry

    def settle(self, entry: dict[str, Any], status: int | None, fault: str | None) -> None:
        """Record what the request was answered (None: no answer) and which fault hit it."""
        with self._lock:
            entry["status"] = status
            entry["fault"] = fault
            if fault in _FAULT_COUNTERS:
                self._counters[_FAULT_COUNTERS[fault]] += 1

    def requests(self) -> list[dict[str, Any]]:
        """Copies of the entries, so callers cannot race the handler threads."""
        with self._lock:
            return copy.deepcopy(self._entries)

    def clear_requests(self) -> None:
        """Forget the logged requests but keep the statistics."""
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict[str, int]:
        """Counters and the busiest 1 s and 60 s windows seen."""
        with self._lock:
            return {
                **self._counters,
                "max_per_second": self._maxima[1],
                "max_per_minute": self._maxima[60],
            }


@dataclass(frozen=True)
class Admission:
    """The rate limiter's answer for one request: may it go on, and the headers to send."""

    admitted: bool
    headers: dict[str, str]


@dataclass(frozen=True)
class _Window:
    limit: int
    seconds: int
    count: int
    oldest: float | None

    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def reset_at(self, now: float) -> float:
        """When the oldest counted arrival leaves the window (now, if nothing is counted)."""
        return now if self.oldest is None else self.oldest + self.seconds


class RateLimiter:
    """Aha!'s limit: `rate_per_second` and `rate_per_minute` over accepted arrivals.

    A request answered 429 does not use budget. Accepted arrivals are remembered for 60 s even
    when no limit is set, so a limit switched on mid-run counts the traffic just before it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted: dict[int, deque[float]] = {1: deque(), 60: deque()}

    def clear(self) -> None:
        """Forget past arrivals (a fresh budget)."""
        with self._lock:
            for window in self._accepted.values():
                window.clear()

    def admit(self, now: float, config: Config) -> Admission:
        """Accept the request at `now` unless a configured window is full."""
        with self._lock:
            windows = self._windows(now, config)
            full = [window for window in windows if window.remaining() == 0]
            if full:
                blocking = max(full, key=lambda window: window.reset_at(now))
                headers = _headers(blocking.limit, 0, blocking.reset_at(now))
                if config.send_retry_after:
                    headers["Retry-After"] = str(max(1, math.ceil(blocking.reset_at(now) - now)))
                return Admission(False, headers)
            for window in self._accepted.values():
                window.append(now)
            return Admission(True, self._report(now, self._windows(now, config)))

    def peek(self, now: float, config: Config) -> dict[str, str]:
        """Headers for a request that does not touch the budget (a 401)."""
        with self._lock:
            return self._report(now, self._windows(now, config))

    def throttled(self, now: float, config: Config) -> dict[str, str]:
        """Headers for an injected 429: nothing left, come back in a second."""
        with self._lock:
            windows = self._windows(now, config)
        limit = min((w.limit for w in windows), default=NOTIONAL_LIMIT)
        headers = _headers(limit, 0, now + 1)
        if config.send_retry_after:
            headers["Retry-After"] = "1"
        return headers

    def _windows(self, now: float, config: Config) -> list[_Window]:
        limits = ((config.rate_per_second, 1), (config.rate_per_minute, 60))
        windows = []
        for limit, seconds in limits:
            accepted = self._accepted[seconds]
            while accepted and accepted[0] <= now - seconds:
                accepted.popleft()
            if limit is not None:
                oldest = accepted[0] if accepted else None
                windows.append(_Window(limit, seconds, len(accepted), oldest))
        return windows

    @staticmethod
    def _report(now: float, windows: list[_Window]) -> dict[str, str]:
        """Headers for the most constraining window: fewest remaining, then latest reset.

        No configured limit means no `X-Ratelimit-*` headers: a notional budget the sandbox
        does not enforce would only make a well-behaved client slow down for nothing.
        """
        if not windows:
            return {}
        window = min(windows, key=lambda w: (w.remaining(), -w.reset_at(now)))
        return _headers(window.limit, window.remaining(), window.reset_at(now))


def _headers(limit: int, remaining: int, reset_at: float) -> dict[str, str]:
    return {
        "X-Ratelimit-Limit": str(limit),
        "X-Ratelimit-Remaining": str(remaining),
        "X-Ratelimit-Reset": str(math.ceil(reset_at)),
    }
