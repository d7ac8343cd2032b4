"""A webhook, or another host, that records every request: a `Hostile` with a fixed answer.

It answers `status` (200 by default; 500 plays a broken webhook) with a small JSON body, and
stops at the end of its `with` to play one that is down. `received` holds the requests it
answered with a 2xx, `failed_raw` the raw bytes of the others, `attempts` counts both.
"""

from __future__ import annotations

import json
import threading

from tests.hostile import Hostile, Reply, Seen


class Receiver(Hostile):
    """`with Receiver() as r:`; `r.url` is its root, `r.received` what came."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Seen] = []
        self.failed_raw: list[bytes] = []
        self._lock = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, seen: Seen) -> Reply:
        ok = 200 <= self.status < 300
        with self._lock:
            if ok:
                self.received.append(seen)
            else:
                self.failed_raw.append(seen.raw)
        return self.status, {}, json.dumps({"ok": ok, "id": "ext-1"}).encode()

    @property
    def attempts(self) -> int:
        """Requests that arrived, answered with any status."""
        return len(self.seen)

    def __enter__(self) -> Receiver:
        return self

    def all_raw(self) -> bytes:
        """Every byte received, answered or not."""
        with self._lock:
            return b"".join([r.raw for r in self.received] + self.failed_raw)
