"""Test doubles of the transport seam and of time: no sockets, no real waiting."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from target_aha.transport import TransportError
from target_aha.wire import Answer, Outgoing


class FakeTransport:
    """Answers each call with the next scripted outcome (an Answer, or a TransportError to
    raise) and records every call; once the script is used up, it answers `default`."""

    def __init__(self, script: Iterable[Answer | TransportError] = (),
                 default: Answer | None = None) -> None:
        self.script = list(script)
        self.default = default or Answer(200, {}, "{}")
        self.calls: list[Outgoing] = []
        self._lock = threading.Lock()

    def send(self, call: Outgoing) -> Answer:
        with self._lock:
            self.calls.append(call)
            outcome = self.script.pop(0) if self.script else self.default
        if isinstance(outcome, TransportError):
            raise outcome
        return outcome

    def send_once(self) -> Answer:
        """`send` of an empty GET, for code that only needs "one attempt"."""
        return self.send(Outgoing("GET", "https://fake.invalid/", {}))


class FakeClock:
    """A clock that moves only when someone sleeps on it: `now` in seconds, `sleep` advances.

    `wall` is the same clock read as unix seconds (from `epoch`), for `X-Ratelimit-Reset`.
    """

    def __init__(self, start: float = 1000.0, epoch: float = 1_800_000_000.0) -> None:
        self.now = start
        self.epoch = epoch - start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
