"""The key ledger: which Aha! object each upstream key became, and what was last sent to it.

Singer delivers at least once and Aha! has no idempotency key, so without this every re-run
would duplicate a customer's roadmap. A row (see ledger_sql.py) is written *before* a create
is sent, marked pending until Aha!'s answer names the object, so a run that dies in between
finds the object again instead of creating a second one.

This module is what the rest of target-aha uses: the keys (`Scope`, `ledger_key`), what a
row says (`Entry`), the body hash, and `Ledger`, the operations both stores share. The stores
say only how a statement runs and how a key is held: a SQLite file (ledger_sqlite.py, the
default) or PostgreSQL (ledger_postgres.py, for runners without a lasting disk);
ledger_open.py reads `ledger_path` and opens one.

A row's key is the record's key properties: one property's value as it is (so ledgers of
0.1.0 with one key property keep working), several as a JSON array text (never `a|b`, which
made `("x|y", "z")` and `("x", "y|z")` one key).

Beside the body's hash a row keeps each field's digest (`field_digests`), so an update sends
only what changed (spec §13). Update streams' rows (updates.py) are one per Aha! object, shared
by the streams that update it: stream `""`, target the object's URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from target_aha import aha
from target_aha.errors import TargetAhaError
from target_aha.ledger_sql import (
    ACCOUNT_ROWS,
    DELETE,
    FIND_KEY,
    FIND_OBJECT,
    MARK_PENDING,
    MIGRATE,
    SELECT,
    UPSERT,
)


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
    field_hashes: Digests | None = None
    """The digest of each field last sent (`field_digests`); None in a row written before
    target-aha kept them: its next changed record is sent whole once."""

    @property
    def pending(self) -> bool:
        """A create was sent (or about to be) and its outcome is not known."""
        return self.pending_since is not None

    def as_object(self) -> dict[str, str | None]:
        """The object the key became, as Aha! names it in an answer (`id`, `reference_num`,
        `url`): what an unchanged record's results line reports."""
        return {"id": self.aha_id, "reference_num": self.reference_num, "url": self.url}


@dataclass(frozen=True)
class Known:
    """A row as `--verify-ledger` reads it: its identity and the object it names."""

    scope: Scope
    aha_id: str | None
    reference_num: str | None
    pending: bool

    def idents(self) -> set[str]:
        """The names Aha! may list the object under (its id, its reference number)."""
        return {i for i in (self.aha_id, self.reference_num) if i}


def body_hash(body: Any) -> str:
    """A stable hash of a request body (key order does not matter)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


CUSTOM_FIELDS = "custom_fields"
"""The field whose keys are remembered one by one: each is a field of its own in Aha!."""

Digests = Mapping[str, Any]
"""Field → digest, and `custom_fields` → {key → digest} when it is an object."""


def field_digests(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The digest of each top-level field of an object's body (and of each `custom_fields`
    key): what tells which fields of a changed record changed (spec §13)."""
    digests: dict[str, Any] = {}
    for name, value in fields.items():
        if name == CUSTOM_FIELDS and isinstance(value, Mapping):
            digests[name] = {str(k): body_hash(v) for k, v in value.items()}
        else:
            digests[name] = body_hash(value)
    return digests


class Ledger:
    """The SQL both stores share; subclasses say how a statement runs and how a key is held."""

    name = "the ledger"
    """How messages name the store (a file path, or a URL without credentials)."""
    read_only = False
    select = SELECT
    """The statement `get` reads a row with (a dry run on a ledger of an older target-aha,
    which it may not migrate, reads the columns it lacks as NULL)."""

    def get(self, scope: Scope) -> Entry | None:
        """The key's entry, if any (a 0.1.0 row of the same key is renamed to today's key)."""
        rows = self._run(self.select, scope.params(), fetch=True)
        if not rows and scope.legacy is not None:
            if self.read_only:
                rows = self._run(self.select, {**scope.params(), "key": scope.legacy},
                                 fetch=True)
            else:
                self._run(MIGRATE, {**scope.params(), "legacy": scope.legacy})
                rows = self._run(self.select, scope.params(), fetch=True)
        if not rows:
            return None
        aha_id, reference_num, url, digest, since, before, fields = rows[0]
        return Entry(aha_id, reference_num, url, digest, since,
                     frozenset(json.loads(before)) if before is not None else None,
                     json.loads(fields) if fields is not None else None)

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

    def store(self, scope: Scope, obj: Mapping[str, Any], digest: str,
              fields: Digests | None = None) -> None:
        """Record the object a key became, the hash of the body it now has and the digests
        of its fields (None: not known, the next change sends the whole body)."""
        self._run(UPSERT, {
            **scope.params(),
            "aha_id": aha.text(obj.get("id")),
            "reference_num": aha.text(obj.get("reference_num")),
            "url": aha.text(obj.get("url")),
            "body_hash": digest,
            "pending_since": None,
            "field_hashes": None if fields is None else json.dumps(fields, sort_keys=True),
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
        collection, ident = aha.object_path(path)
        prefix = account.rstrip("/") + "/"
        found = self._run(
            FIND_OBJECT, {"ident": ident, "account": prefix, "n": len(prefix)}, fetch=True,
        )
        dropped = 0
        for stream, target, key in found:
            if aha.collection_of(target) == collection:
                self.forget(Scope(stream, target, key))
                dropped += 1
        return dropped

    def find_key(self, stream: str, account: str, key: str) -> list[tuple[str, str, str | None]]:
        """(target, id, reference number) of every settled row of `key` in `stream` and
        `account`, the most recently written first: what a reference to that key resolves
        to."""
        prefix = account.rstrip("/") + "/"
        rows = self._run(FIND_KEY, {"stream": stream, "key": key, "account": prefix,
                                    "n": len(prefix)}, fetch=True)
        return [(target, aha_id, ref) for target, aha_id, ref in rows if aha_id or ref]

    # Read side of `--verify-ledger` (verify.py): reads rows, forgets the ones it names.

    def account_rows(self, account: str) -> list[Known]:
        """Every row of `account` (a base URL), ordered by target (container), stream, key."""
        prefix = account.rstrip("/") + "/"
        rows = self._run(ACCOUNT_ROWS, {"account": prefix, "n": len(prefix)}, fetch=True)
        return [Known(Scope(stream, target, key), aha_id, ref, since is not None)
                for stream, target, key, aha_id, ref, since in rows]

    def forget_rows(self, rows: Iterable[Known]) -> int:
        """Drop these rows (their objects are gone from Aha!); how many were dropped.

        Each key is held while it is dropped, and a row that changed since it was read (a run
        beside this one created the object again, or is creating it) is left alone.
        """
        dropped = 0
        for row in rows:
            with self.hold(row.scope):
                now = self.get(row.scope)
                if now is None or now.pending or now.aha_id != row.aha_id:
                    continue
                self.forget(row.scope)
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
