"""The key ledger: which Aha! object each upstream key became, and what was last sent to it.

Singer delivers at least once and Aha! has no idempotency key, so without this every re-run
would duplicate a customer's roadmap. One row per (stream, target, key): the Aha! id, the
reference number, the object's page, a hash of the last body sent, and `pending_since` while a
create's outcome is unknown (the row is written *before* the create is sent), with
`pending_before`: the ids of same-named objects that already existed then, for containers
whose listings carry no creation time (teams, custom table records).

Two stores share the same SQL: a SQLite file (the default; WAL mode, every statement its own
transaction, so the file is consistent whatever instruction the process dies at) and
PostgreSQL through SQLAlchemy, for runners without a lasting disk; there, a session advisory
lock per key keeps two runs from creating the same key at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from target_aha.errors import ConfigError

TABLE = "target_aha_ledger"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    stream TEXT NOT NULL,
    target TEXT NOT NULL,
    key TEXT NOT NULL,
    aha_id TEXT,
    reference_num TEXT,
    url TEXT,
    body_hash TEXT NOT NULL,
    pending_since DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    pending_before TEXT,
    PRIMARY KEY (stream, target, key)
)"""
ADD_PENDING_BEFORE = f"ALTER TABLE {TABLE} ADD COLUMN pending_before TEXT"
"""The migration of a ledger written before `pending_before` existed (a nullable column, so
old rows read as "no listing was taken"). SQLite checks the column first; PostgreSQL says:"""
ADD_PENDING_BEFORE_IF_MISSING = ADD_PENDING_BEFORE.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS")
INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {TABLE}_aha_id ON {TABLE} (aha_id)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_reference_num ON {TABLE} (reference_num)",
)
SELECT = (
    f"SELECT aha_id, reference_num, url, body_hash, pending_since, pending_before FROM {TABLE} "
    "WHERE stream = :stream AND target = :target AND key = :key"
)
UPSERT = f"""
INSERT INTO {TABLE} (stream, target, key, aha_id, reference_num, url, body_hash,
                     pending_since, updated_at)
VALUES (:stream, :target, :key, :aha_id, :reference_num, :url, :body_hash,
        :pending_since, :now)
ON CONFLICT (stream, target, key) DO UPDATE SET
    aha_id = excluded.aha_id, reference_num = excluded.reference_num, url = excluded.url,
    body_hash = excluded.body_hash, pending_since = excluded.pending_since,
    pending_before = NULL, updated_at = excluded.updated_at"""
MARK_PENDING = f"""
INSERT INTO {TABLE} (stream, target, key, body_hash, pending_since, pending_before, updated_at)
VALUES (:stream, :target, :key, :body_hash, :now, :before, :now)
ON CONFLICT (stream, target, key) DO UPDATE SET
    body_hash = excluded.body_hash,
    pending_since = COALESCE({TABLE}.pending_since, excluded.pending_since),
    pending_before = COALESCE({TABLE}.pending_before, excluded.pending_before),
    aha_id = NULL, reference_num = NULL, url = NULL, updated_at = excluded.updated_at"""
DELETE = f"DELETE FROM {TABLE} WHERE stream = :stream AND target = :target AND key = :key"
DELETE_OBJECT = f"DELETE FROM {TABLE} WHERE aha_id = :ident OR reference_num = :ident"


@dataclass(frozen=True)
class Scope:
    """One ledger row's identity: the stream, where its creates go, the upstream key."""

    stream: str
    target: str
    key: str

    def params(self) -> dict[str, str]:
        """SQL parameters."""
        return {"stream": self.stream, "target": self.target, "key": self.key}


@dataclass(frozen=True)
class Entry:
    """What the ledger knows of a key."""

    aha_id: str | None
    reference_num: str | None
    url: str | None
    body_hash: str
    pending_since: float | None
    pending_before: frozenset[str] | None = None
    """Ids of same-named objects that existed when the create was first marked pending
    (None: no listing was taken)."""

    @property
    def pending(self) -> bool:
        """A create was sent (or about to be) and its outcome is not known."""
        return self.pending_since is not None


def body_hash(body: Any) -> str:
    """A stable hash of a request body (key order does not matter)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Ledger:
    """The SQL both stores share; subclasses say how a statement runs and how a key is held."""

    def get(self, scope: Scope) -> Entry | None:
        """The key's entry, if any."""
        rows = self._run(SELECT, scope.params(), fetch=True)
        if not rows:
            return None
        aha_id, reference_num, url, digest, since, before = rows[0]
        return Entry(aha_id, reference_num, url, digest, since,
                     frozenset(json.loads(before)) if before is not None else None)

    def mark_pending(
        self, scope: Scope, digest: str, before: Iterable[str] | None = None
    ) -> Entry:
        """Note that a create is about to be sent, with the same-named objects that exist now.

        Returns the pending entry: its mark's time and listing are the earliest ones, so a
        retried create still tells the objects that were there before the first attempt.
        """
        self._run(MARK_PENDING, {
            **scope.params(), "body_hash": digest, "now": time.time(),
            "before": None if before is None else json.dumps(sorted(before)),
        })
        entry = self.get(scope)
        assert entry is not None and entry.pending_since is not None
        return entry

    def store(self, scope: Scope, obj: Mapping[str, Any], digest: str) -> None:
        """Record the object a key became and the hash of the body it now has."""
        self._run(UPSERT, {
            **scope.params(),
            "aha_id": _text(obj.get("id")),
            "reference_num": _text(obj.get("reference_num")),
            "url": _text(obj.get("url")),
            "body_hash": digest,
            "pending_since": None,
            "now": time.time(),
        })

    def forget(self, scope: Scope) -> None:
        """Drop a key (its object is gone, or its pending create certainly failed)."""
        self._run(DELETE, scope.params())

    def forget_object(self, ident: str) -> None:
        """Drop the entries of an object deleted in Aha! (by id or reference number)."""
        self._run(DELETE_OBJECT, {"ident": ident})

    @contextlib.contextmanager
    def hold(self, scope: Scope) -> Iterator[None]:
        """Keep other runs away from this key while it is being written (a no-op here)."""
        yield

    def close(self) -> None:
        """Release the store."""

    def _run(self, sql: str, params: Mapping[str, Any], fetch: bool = False) -> list[tuple]:
        raise NotImplementedError


class SQLiteLedger(Ledger):
    """A local SQLite file: one connection shared by the sender threads under a lock."""

    def __init__(self, path: str, read_only: bool = False) -> None:
        self._lock = threading.Lock()
        if read_only:
            uri = Path(path).resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)
        columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({TABLE})")}
        if "pending_before" not in columns:
            self._db.execute(ADD_PENDING_BEFORE)
        for index in INDEXES:
            self._db.execute(index)

    def _run(self, sql: str, params: Mapping[str, Any], fetch: bool = False) -> list[tuple]:
        with self._lock:
            cursor = self._db.execute(sql, dict(params))
            return cursor.fetchall() if fetch else []

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()


class PostgresLedger(Ledger):
    """A table in PostgreSQL (through SQLAlchemy), shared by every runner of a pipeline."""

    def __init__(self, url: str, pool_size: int) -> None:
        import sqlalchemy as sa  # noqa: PLC0415 - only PostgreSQL users pay for the import

        self._sa = sa
        self._engine = sa.create_engine(
            _driver_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )
        with self._engine.begin() as conn:
            # Two runners starting at once must not race on CREATE TABLE IF NOT EXISTS.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7245190331)"))
            conn.execute(sa.text(SCHEMA))
            conn.execute(sa.text(ADD_PENDING_BEFORE_IF_MISSING))
            for index in INDEXES:
                conn.execute(sa.text(index))

    def _run(self, sql: str, params: Mapping[str, Any], fetch: bool = False) -> list[tuple]:
        with self._engine.begin() as conn:
            result = conn.execute(self._sa.text(sql), dict(params))
            return [tuple(row) for row in result] if fetch else []

    @contextlib.contextmanager
    def hold(self, scope: Scope) -> Iterator[None]:
        """A session advisory lock on the key: a second run waits, then sees the first's id.

        The lock lives in the connection, so a runner that dies releases it with its socket.
        """
        lock_id = int.from_bytes(
            hashlib.sha256(f"{scope.stream}\0{scope.target}\0{scope.key}".encode()).digest()[:8],
            "big", signed=True,
        )
        with self._engine.connect() as conn:
            conn.execute(self._sa.text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(self._sa.text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                conn.commit()

    def close(self) -> None:
        """Close the pool."""
        self._engine.dispose()


def _driver_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the driver target-aha's postgres extra installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def open_ledger(path: str, *, dry_run: bool, pool_size: int) -> Ledger | None:
    """Open the ledger named by `ledger_path` ("" = none), or stop with a clear message.

    It is opened, and written once, before anything is sent: a ledger that cannot be used is
    a fatal error, never a silent fallback to creating everything again. A dry run only reads
    (a missing SQLite file then means an empty ledger).
    """
    if not path:
        return None
    where = "PostgreSQL" if path.startswith(("postgresql", "postgres:")) else "SQLite"
    try:
        if where == "PostgreSQL":
            ledger: Ledger = PostgresLedger(path, pool_size)
        elif dry_run:
            if not Path(path).exists():
                return None
            ledger = SQLiteLedger(path, read_only=True)
        else:
            ledger = SQLiteLedger(path)
        probe = Scope("target-aha", "probe", "write-check")
        ledger.get(probe)
        if not dry_run:
            ledger.forget(probe)  # a write: fails now on a read-only file or database
    except Exception as exc:
        # Never echo a PostgreSQL password: show only what follows the credentials.
        shown = path if where == "SQLite" else path.rsplit("@", maxsplit=1)[-1]
        raise ConfigError(
            f"Cannot use the key ledger ({where}, {shown}): {exc}. The ledger is what keeps "
            "re-runs from duplicating objects in Aha!, so nothing was sent. Fix ledger_path "
            '(a writable file path, or a postgresql:// URL), or set ledger_path: "" to run '
            "without one (every re-run then creates again)."
        ) from exc
    return ledger
