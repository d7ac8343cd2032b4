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
lock per key keeps two runs from creating the same key at once. A SQLite ledger is held by one
run at a time: an exclusive `flock` on a lock file beside it, which the operating system
releases when the process ends, however it ends.

A row's key is the record's key properties: one property's value as it is (so ledgers of
0.1.0 with one key property keep working), several as a JSON array text (never `a|b`, which
made `("x|y", "z")` and `("x", "y|z")` one key).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

from target_aha.endpoints import TEMPLATES
from target_aha.errors import ConfigError, TargetAhaError
from target_aha.redact import mask_url

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
MIGRATE = (
    f"UPDATE {TABLE} SET key = :key "
    "WHERE stream = :stream AND target = :target AND key = :legacy"
)
FIND_OBJECT = (
    f"SELECT stream, target, key FROM {TABLE} "
    "WHERE (aha_id = :ident OR reference_num = :ident) AND substr(target, 1, :n) = :account"
)

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

KINDS: dict[str, str] = {
    t.path.rsplit("/", 1)[-1]: t.update_path.split("/")[-2]
    for t in TEMPLATES.values() if t.update_path is not None
}
"""The collection a row's objects live in (as delete paths name it), by the last segment of its
create path: `.../features` makes `features`, `.../custom_objects/{key}/records` makes
`custom_object_records`."""


class LedgerError(TargetAhaError):
    """The ledger could not be read or written once the run had started (a full disk, a lost
    database connection); the message names the ledger, never a password."""


def ledger_key(parts: Sequence[str]) -> str:
    """The ledger's identity of a record key: one part as it is, several as a JSON array text.

    Injective, unlike joining with `|`: ("x|y", "z") and ("x", "y|z") are two keys.
    """
    if len(parts) == 1:
        return parts[0]
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def legacy_key(parts: Sequence[str]) -> str | None:
    """The key 0.1.0 stored for a composite key (`a|b`), when it can only have meant these parts.

    None for a single part (stored the same way then and now) and when a part contains `|`
    (the old row might be another record's: it is left alone, and the key is new).
    """
    if len(parts) < 2 or any("|" in part for part in parts):
        return None
    return "|".join(parts)


@dataclass(frozen=True)
class Scope:
    """One ledger row's identity: the stream, where its creates go, the upstream key."""

    stream: str
    target: str
    key: str
    legacy: str | None = None
    """The same key as target-aha 0.1.0 wrote it, to adopt such a row (see `legacy_key`)."""

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

    name = "the ledger"
    """How messages name the store (a file path, or a URL without credentials)."""
    read_only = False

    def get(self, scope: Scope) -> Entry | None:
        """The key's entry, if any (a 0.1.0 row of the same key is renamed to today's key)."""
        rows = self._run(SELECT, scope.params(), fetch=True)
        if not rows and scope.legacy is not None:
            if self.read_only:
                rows = self._run(SELECT, {**scope.params(), "key": scope.legacy}, fetch=True)
            else:
                self._run(MIGRATE, {**scope.params(), "legacy": scope.legacy})
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

    def forget_object(self, account: str, path: str) -> int:
        """Drop the rows of an object deleted in Aha! by `path` (relative to `account`).

        The path's last segment is the id or reference number, the one before it the
        collection (`/epics/PRJ1-E-2`). Only rows of that account and of that kind of object
        are dropped: one ledger may serve several accounts with the same reference numbers,
        and ids need not be unique across kinds. Forgetting too little is safe (an update of
        the key answers 404 and creates again); forgetting too much makes duplicates.
        Returns how many rows were dropped.
        """
        head, _, ident = path.rstrip("/").rpartition("/")
        collection = head.rsplit("/", 1)[-1]
        prefix = account.rstrip("/") + "/"
        found = self._run(
            FIND_OBJECT, {"ident": unquote(ident), "account": prefix, "n": len(prefix)},
            fetch=True,
        )
        dropped = 0
        for stream, target, key in found:
            made = target.rstrip("/").rsplit("/", 1)[-1]
            if KINDS.get(made, made) == collection:
                self.forget(Scope(stream, target, key))
                dropped += 1
        return dropped

    @contextlib.contextmanager
    def hold(self, scope: Scope) -> Iterator[None]:
        """Keep other runs away from this key while it is being written (a no-op here)."""
        yield

    def close(self) -> None:
        """Release the store."""

    def _run(self, sql: str, params: Mapping[str, Any], fetch: bool = False) -> list[tuple]:
        raise NotImplementedError

    def _failed(self, exc: BaseException) -> LedgerError:
        """The error a failed statement raises: what the store said, where, never the SQL."""
        cause = getattr(exc, "orig", None) or exc
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        return LedgerError(f"the key ledger ({self.name}) failed: {text}")


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
            if "pending_before" not in columns:
                self._db.execute(ADD_PENDING_BEFORE)
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


class PostgresLedger(Ledger):
    """A table in PostgreSQL (through SQLAlchemy), shared by every runner of a pipeline."""

    def __init__(self, url: str, pool_size: int, name: str, read_only: bool = False) -> None:
        import sqlalchemy as sa  # noqa: PLC0415 - only PostgreSQL users pay for the import

        self._sa = sa
        self.name = name
        self.read_only = read_only
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
        try:
            with self._engine.begin() as conn:
                result = conn.execute(self._sa.text(sql), dict(params))
                return [tuple(row) for row in result] if fetch else []
        except self._sa.exc.SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    @contextlib.contextmanager
    def hold(self, scope: Scope) -> Iterator[None]:
        """A session advisory lock on the key: a second run waits, then sees the first's id.

        The lock lives in the connection, so a runner that dies releases it with its socket.
        """
        lock_id = int.from_bytes(
            hashlib.sha256(f"{scope.stream}\0{scope.target}\0{scope.key}".encode()).digest()[:8],
            "big", signed=True,
        )
        try:
            with self._engine.connect() as conn:
                conn.execute(self._sa.text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(self._sa.text("SELECT pg_advisory_unlock(:id)"),
                                 {"id": lock_id})
                    conn.commit()
        except self._sa.exc.SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        """Close the pool."""
        self._engine.dispose()


def _driver_url(url: str) -> str:
    """`postgresql://` (any case) means psycopg 3 here (what target-aha's postgres extra
    installs)."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def ledger_store(path: str) -> str:
    """Which store a non-empty `ledger_path` names: "PostgreSQL" or "SQLite".

    A ConfigError for a value that would silently do something else: a URL of another scheme
    (it would become a directory path, password and all) or a SQLite database that does not
    outlive the run (the next run would create every record again). URL schemes are
    case-insensitive, as in RFC 3986. The message never repeats the value of a URL.
    """
    scheme = URL_SCHEME.match(path)
    if scheme is not None:
        name = scheme.group(1).lower()
        if name in POSTGRES_SCHEMES:
            return "PostgreSQL"
        raise ConfigError(
            f"ledger_path is a URL with scheme {name!r}, which is not a database target-aha "
            "can keep its key ledger in. Use a file path (a SQLite file, for example "
            ".target-aha/ledger.sqlite) or a postgresql:// URL."
        )
    lowered = path.strip().lower()
    if lowered == ":memory:" or (lowered.startswith("file:") and "memory" in lowered):
        raise ConfigError(
            f"ledger_path {path!r} is a SQLite database in memory: it is gone when the run "
            "ends, so the next run would create every record again. Use a file path (for "
            "example .target-aha/ledger.sqlite), or a postgresql:// URL on runners without "
            'a lasting disk, or ledger_path: "" to run without a ledger on purpose.'
        )
    if lowered.startswith("file:"):
        raise ConfigError(
            f"ledger_path {path!r} is a SQLite URI (file:...); give a plain file path instead "
            "(for example .target-aha/ledger.sqlite)."
        )
    return "SQLite"


def open_ledger(path: str, *, dry_run: bool, pool_size: int) -> Ledger | None:
    """Open the ledger named by `ledger_path` ("" = none), or stop with a clear message.

    It is opened, and written once, before anything is sent: a ledger that cannot be used is
    a fatal error, never a silent fallback to creating everything again. A dry run only reads
    (a missing SQLite file then means an empty ledger) and takes no lock.
    """
    if not path:
        return None
    where = ledger_store(path)
    # Never echo a PostgreSQL password (user:pw@ or ?password=...): mask_url hides both.
    shown = path if where == "SQLite" else mask_url(path)
    try:
        if where == "PostgreSQL":
            ledger: Ledger = PostgresLedger(path, pool_size, shown, read_only=dry_run)
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
    except ConfigError:
        raise
    except ImportError as exc:
        raise ConfigError(
            f"ledger_path is a PostgreSQL URL ({shown}), but the PostgreSQL driver is not "
            f"installed ({exc}). Install target-aha[postgres] (in Meltano: pip_url: "
            "target-aha[postgres]), or use a SQLite file path; nothing was sent."
        ) from exc
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc, LedgerError) and exc.__cause__ else exc
        raise ConfigError(
            f"Cannot use the key ledger ({where}, {shown}): {cause}. The ledger is what keeps "
            "re-runs from duplicating objects in Aha!, so nothing was sent. Fix ledger_path "
            '(a writable file path, or a postgresql:// URL), or set ledger_path: "" to run '
            "without one (every re-run then creates again)."
        ) from exc
    return ledger
