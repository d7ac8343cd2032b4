"""Deciding which fault, if any, hits a request, from one seeded random generator.

A seeded `random.Random` makes a sequence of requests meet the same faults run after run, so a
failing test or a benchmark figure can be reproduced.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from .config import Config


@dataclass(frozen=True)
class Roll:
    """The dice for one request."""

    throttle: bool  # answer 429 whatever the rate limit says
    delay: float  # seconds to wait before answering
    outcome: str | None  # None, "error", "drop", "commit_timeout" or "commit_error"


class FaultDice:
    """Thread-safe, reproducible fault decisions."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def reseed(self) -> None:
        """Start the sequence again (after a reset, the same requests meet the same faults)."""
        with self._lock:
            self._rng.seed(self._seed)

    def roll(self, config: Config) -> Roll:
        """Draw for one request. Only the rates that are switched on consume random numbers.

        error, drop and commit_timeout share one draw, so their rates add up: 0.2 + 0.3 means
        half of all requests meet one of the two, never both.
        """
        with self._lock:
            throttle = config.throttle_rate > 0 and self._rng.random() < config.throttle_rate
            delay = config.latency_ms
            if config.latency_jitter_ms > 0:
                delay += self._rng.uniform(0, config.latency_jitter_ms)
            outcome = None
            rates = (
                ("error", config.error_rate),
                ("drop", config.drop_rate),
                ("commit_timeout", config.commit_timeout_rate),
                ("commit_error", config.commit_error_rate),
            )
            if any(rate > 0 for _, rate in rates):
                draw = self._rng.random()
                edge = 0.0
                for name, rate in rates:
                    edge += rate
                    if draw < edge:
                        outcome = name
                        break
        return Roll(throttle=throttle, delay=delay / 1000, outcome=outcome)
