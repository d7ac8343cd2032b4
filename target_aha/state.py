"""When the tap's STATE is passed on: once per new value, and never in a dry run.

A dry run sends nothing, so emitting STATE would move the bookmark over records that were never
loaded; a STATE equal to the last one emitted says nothing new (the SDK emits one per drain).
"""

from __future__ import annotations


class StatePolicy:
    """Decides, STATE by STATE, whether it is written to standard output."""

    def __init__(self, *, dry_run: bool) -> None:
        self.dry_run = dry_run
        self._last: dict | None = None

    def emits(self, state: dict) -> bool:
        """Whether `state` is emitted (and, if so, it becomes the last one emitted)."""
        if self.dry_run or state == self._last:
            return False
        self._last = state
        return True
