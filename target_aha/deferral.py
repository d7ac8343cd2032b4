"""Records waiting for a parent that is not known yet, held on disk until the end of input.

A child whose parent is neither in the key ledger nor in flight is written here and read
back at the end of the input, in rounds: each round reads every record of the round before
(in input order) and either hands it on or writes it into the next round. The store is a
private temporary SQLite database (`sqlite3.connect("")`): it lives in the system's temp
directory, SQLite's page cache bounds the memory it uses however many records wait, and it
is deleted when it is closed or the process dies (nothing to clean up after a SIGKILL: the
tap sends the records again, since no STATE moved past them).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from target_aha.destination import Destination
from target_aha.shaping import is_bookkeeping, to_json_value

PAGE = 500
"""Records read back at once."""


def held(dest: Destination, key_fields: Iterable[str], record: Mapping[str, Any]
         ) -> dict[str, Any]:
    """What of a record is held while it waits: only what it sends or reads (its parameters,
    references and key), as JSON values."""
    needed = dest.consumed | set(key_fields)
    return {k: to_json_value(v) for k, v in record.items()
            if k in needed or (k not in dest.exclude and not is_bookkeeping(k))}


class Spool:
    """Deferred records by round; safe to use from the reading thread and sender threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA cache_size=-2000")  # KiB: memory stays flat
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE deferred (seq INTEGER PRIMARY KEY, round INTEGER NOT NULL, "
            "stream TEXT NOT NULL, key TEXT, record TEXT NOT NULL, place TEXT NOT NULL)"
        )
        self._db.execute("CREATE INDEX deferred_round ON deferred (round, seq)")
        self._db.execute("CREATE INDEX deferred_key ON deferred (stream, key)")
        self._round = 0
        self._waiting = 0
        self._in_tx = False

    @property
    def waiting(self) -> int:
        """Records deferred and not read back yet."""
        with self._lock:
            return self._waiting

    def add(self, stream: str, record: dict[str, Any], where: str, key: str | None) -> None:
        """Hold a record (JSON values only) until the next round; `where` is how messages
        name it (`stream 's', record #3`: its position is not in the record); `key` is its
        ledger key, if it has one (see `holds`)."""
        text = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if not self._in_tx:  # one transaction per burst of writes: no sync per record
                self._db.execute("BEGIN")
                self._in_tx = True
            self._db.execute(
                "INSERT INTO deferred (round, stream, key, record, place) "
                "VALUES (?, ?, ?, ?, ?)",
                (self._round, stream, key, text, where),
            )
            self._waiting += 1

    def holds(self, stream: str, key: str) -> bool:
        """Whether a record of this key waits here: a later record of the key must wait
        behind it, or the older one would be sent last and undo the newer one."""
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM deferred WHERE stream = ? AND key = ? LIMIT 1", (stream, key)
            ).fetchone() is not None

    def take_round(self) -> Iterator[tuple[str, dict[str, Any], str]]:
        """Yield (stream, record, where) of every record deferred so far, in input order, once each;
        what is deferred meanwhile goes into the next round."""
        with self._lock:
            self._commit()
            current = self._round
            self._round += 1
        after = 0
        while True:
            with self._lock:
                self._commit()
                rows = self._db.execute(
                    "SELECT seq, stream, record, place FROM deferred WHERE round = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?", (current, after, PAGE),
                ).fetchall()
                if rows:
                    after = rows[-1][0]
                    self._db.execute("DELETE FROM deferred WHERE round = ? AND seq <= ?",
                                     (current, after))
                    self._waiting -= len(rows)
            if not rows:
                return
            for _, stream, text, where in rows:
                yield stream, json.loads(text), where

    def close(self) -> None:
        """Drop the store (its file goes with it)."""
        with self._lock:
            self._db.close()

    def _commit(self) -> None:
        if self._in_tx:
            self._db.execute("COMMIT")
            self._in_tx = False
