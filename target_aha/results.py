"""What happened to each record: the results file (JSON Lines) and the run's tallies.

Every record read ends as exactly one line here (succeeded, rejected or dry_run), so a user
can reconcile the file with the tap's output. Lines are flushed as they are written: after a
crash, the file still says which records Aha! acknowledged.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from target_aha.errors import ConfigError


@dataclass(frozen=True)
class Outcome:
    """One results line (field names are the public contract, §5 of the spec)."""

    stream: str
    key: str | None
    endpoint: str
    operation: str
    status: str
    http_status: int | None = None
    aha_id: str | None = None
    reference_num: str | None = None
    url: str | None = None
    error: str | None = None


def object_in(data: Any, wrapper: str | None) -> dict[str, Any]:
    """The object inside an Aha! answer (`{"feature": {...}}` → the feature)."""
    if not isinstance(data, dict):
        return {}
    inner = data.get(wrapper) if wrapper else None
    if isinstance(inner, dict):
        return inner
    if len(data) == 1 and isinstance(only := next(iter(data.values())), dict):
        return only
    return data


class Results:
    """Appends results lines (when `results_path` is set) and counts them."""

    def __init__(self, path: str | None) -> None:
        self._file: IO[str] | None = None
        if path:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._file = Path(path).open("a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise ConfigError(
                    f"Cannot open results_path '{path}' for appending: {exc.strerror}. "
                    "Point results_path at a writable file, or remove the setting; nothing "
                    "was sent to Aha!."
                ) from exc
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def write(self, outcome: Outcome) -> None:
        """Record one record's outcome (on the hot path: no copies beyond the line itself)."""
        with self._lock:
            self.counts[outcome.status] += 1
            self.counts[f"{outcome.status}:{outcome.operation}"] += 1
            if self._file is None:
                return
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
            self._file.write(json.dumps({**vars(outcome), "at": now}) + "\n")
            self._file.flush()

    def summary(self) -> str:
        """One line for the log at the end of a run."""
        c = self.counts
        total = c["succeeded"] + c["rejected"] + c["dry_run"]
        parts = [f"{total} records"]
        for status in ("succeeded", "rejected", "dry_run"):
            if c[status]:
                ops = ", ".join(
                    f"{k.split(':', 1)[1]} {v}"
                    for k, v in sorted(c.items())
                    if k.startswith(status + ":")
                )
                parts.append(f"{status} {c[status]} ({ops})")
        return "; ".join(parts)

    def close(self) -> None:
        """Close the file (a sender thread still running when a run is cut short may write
        after this: its line is counted, not written to a closed file)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
