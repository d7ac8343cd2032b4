"""The SQLite ledger: a local file, held by one writing run at a time.

The default store. WAL mode and every statement its own transaction keep the file consistent
whatever instruction the process dies at. An exclusive `flock` on a lock file beside it keeps
a second run away (it would create the same keys again); the operating system releases the
lock when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from target_aha.errors import ConfigError
from target_aha.ledger import Ledger
from target_aha.ledger_sql import ADDED_COLUMNS, INDEXES, SCHEMA, TABLE, select_without


class SQLiteLedger(Ledger):
    """A local SQLite file: one connection shared by the sender threads under a lock.

    A writing run holds `<file>.lock` (an exclusive `flock`) until it closes the ledger: a
    second run on the same file would create the same keys again, so it is refused at once
    (see `_hold_file`). A read-only (dry) run takes no lock: WAL readers see a consistent file.
    """

    def __init__(self, path: str, read_only: bool = False) -> None:
        self._lock = threading.Lock()
        self.name = path
        self.read_only = read_only
        self._lock_file: IO[str] | None = None
        if read_only:
            uri = Path(path).resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({TABLE})")}
            if columns:  # an empty file has no table yet: every get says "unknown" anyway
                self.select = select_without(set(ADDED_COLUMNS) - columns)
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _hold_file(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                       timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({TABLE})")}
            for column, migration in ADDED_COLUMNS.items():
                if column not in columns:
                    self._db.execute(migration)
            for index in INDEXES:
                self._db.execute(index)
        except BaseException:
            self._lock_file.close()
            raise

    def _run(self, sql: str, params: Mapping[str, Any], fetch: bool = False) -> list[tuple]:
        with self._lock:
            try:
                cursor = self._db.execute(sql, dict(params))
                return cursor.fetchall() if fetch else []
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def close(self) -> None:
        """Close the file, then let other runs have it."""
        with self._lock:
            self._db.close()
            if self._lock_file is not None:
                self._lock_file.close()


def _hold_file(path: str) -> IO[str]:
    """Take the exclusive lock of a SQLite ledger, or refuse at once if another run has it.

    Refused rather than waited for: a second run overlapping the first usually means a schedule
    shorter than a run, and waiting would silently stack runs up; refusing sends nothing and
    moves no STATE, so the next scheduled run loads what this one would have. The lock dies
    with its process (even on SIGKILL), so a crashed run never leaves the ledger locked.
    """
    lock_path = f"{path}.lock"
    handle = open(lock_path, "a")  # noqa: SIM115 - held open until the ledger closes
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(
            f"The key ledger {path} is in use by another target-aha run (it holds "
            f"{lock_path}). Two runs at once on one SQLite ledger would create the same "
            "records twice, so nothing was sent and no STATE was emitted. Wait for the other "
            "run to end and run again, or give runners that must run at once a shared "
            "PostgreSQL ledger (ledger_path: postgresql://...)."
        ) from None
    except OSError:
        handle.close()
        raise
    return handle
