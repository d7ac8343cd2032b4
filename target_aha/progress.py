"""Progress lines on a long run: what was read, sent, left unchanged, rejected, and throttled.

A daemon thread logs one line every `interval` seconds while the run is going, so a person
watching a multi-hour load (Aha! allows about 18,000 writes an hour) sees it move.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger("target-aha")  # the SDK sets this name's level


class Progress:
    """Logs `snapshot()` every `interval` seconds, with the request rate since the last line."""

    def __init__(self, interval: float, snapshot: Callable[[], Mapping[str, int]]) -> None:
        self._interval = interval
        self._snapshot = snapshot
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin logging (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aha-progress", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop logging."""
        self._stop.set()

    def _run(self) -> None:
        last_sent, last_at = 0, time.monotonic()
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            figures = self._snapshot()
            rate = (figures["sent"] - last_sent) / max(now - last_at, 1e-9)
            last_sent, last_at = figures["sent"], now
            logger.info(
                "progress: %d records read, %d requests sent (%.1f/s), %d unchanged, "
                "%d rejected, %d x 429",
                figures["read"], figures["sent"], rate, figures["unchanged"],
                figures["rejected"], figures["throttled"],
            )
