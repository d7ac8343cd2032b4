"""What happened to each record: the results file (JSON Lines) and the run's tallies.

Every record read ends as exactly one line here (succeeded, rejected or dry_run), so a user
can reconcile the file with the tap's output. Lines are flushed as they are written: after a
crash, the file still says which records Aha! acknowledged. The file is appended to run after
run, so each line carries its run's `run_id` (a dry run's starts with `dry-run-`), which the
end-of-run summary names too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from target_aha.errors import ConfigError
from target_aha.redact import REDACTOR


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


def new_run_id(dry_run: bool) -> str:
    """`20261201T214012Z-1a2b3c`: when the run started (UTC) and a random part, so that two
    runs started in the same second differ; `dry-run-` first for a dry run."""
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{'dry-run-' if dry_run else ''}{started}-{secrets.token_hex(3)}"


MAX_REASONS = 100
"""Distinct rejection reasons kept for the summary; later new ones are counted together."""
OTHER_REASONS = "(other reasons)"


def reason_of(error: str | None) -> str:
    """What rejections have in common: the error with numbers masked (ids in paths, counts),
    so fifty 404s of one wrong release are one reason, not fifty."""
    return re.sub(r"\d+", "#", (error or "no message").strip().splitlines()[0])[:300]


@dataclass
class Reason:
    """One rejection reason: how many records it rejected, and the first of them."""

    count: int
    stream: str
    key: str | None
    error: str


class Results:
    """Appends results lines (when `results_path` is set) and counts them.

    Counts are kept for the whole run (`counts`: `status` and `status:operation`), per stream
    (`by_stream`), per rejection reason (`reasons`) and for events that are not records
    (`tally`: creates recovered after a lost answer).
    """

    def __init__(self, path: str | None, run_id: str = "") -> None:
        self.path = path or None
        self.run_id = run_id
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
        self.by_stream: dict[str, Counter[str]] = {}
        self.reasons: dict[str, Reason] = {}
        self.events: Counter[str] = Counter()

    def tally(self, event: str) -> None:
        """Count an event of the run that is not a record's outcome (thread-safe)."""
        with self._lock:
            self.events[event] += 1

    def write(self, outcome: Outcome) -> None:
        """Record one record's outcome (on the hot path: no copies beyond the line itself)."""
        with self._lock:
            status_op = f"{outcome.status}:{outcome.operation}"
            self.counts[outcome.status] += 1
            self.counts[status_op] += 1
            stream = self.by_stream.get(outcome.stream)
            if stream is None:
                stream = self.by_stream[outcome.stream] = Counter()
            stream[outcome.status] += 1
            stream[status_op] += 1
            if outcome.status == "rejected":
                self._note_reason(outcome)
            if self._file is None:
                return
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
            line = {"run_id": self.run_id, **vars(outcome), "at": now}
            if outcome.error is not None:  # an answer may quote what it was sent
                line["error"] = REDACTOR.redact(outcome.error)
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()

    def _note_reason(self, outcome: Outcome) -> None:
        """Count a rejection under its reason (called with the lock held)."""
        reason = reason_of(outcome.error)
        known = self.reasons.get(reason)
        if known is None and len(self.reasons) >= MAX_REASONS:
            reason, known = OTHER_REASONS, self.reasons.get(OTHER_REASONS)
        if known is not None:
            known.count += 1
            return
        error = REDACTOR.redact(outcome.error or "no message")
        self.reasons[reason] = Reason(1, outcome.stream, outcome.key, error)

    def close(self) -> None:
        """Close the file (a sender thread still running when a run is cut short may write
        after this: its line is counted, not written to a closed file)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
