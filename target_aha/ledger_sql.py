"""The ledger's table and the statements both stores run (SQLite and PostgreSQL alike).

One row per (stream, target, key): the Aha! id, the reference number, the object's page, a
hash of the last body sent, `field_hashes` (a JSON object: each top-level field of the object
sent → its digest, `custom_fields` → an object of its keys' digests; NULL in rows written
before target-aha kept them), and `pending_since` while a create's outcome is unknown, with
`pending_before`: the ids of same-named objects that already existed then. The statements
are written once, in the SQL both stores speak (named `:parameters`, `ON CONFLICT`).
"""

from __future__ import annotations

from collections.abc import Iterable

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
    field_hashes TEXT,
    PRIMARY KEY (stream, target, key)
)"""
ADD_PENDING_BEFORE = f"ALTER TABLE {TABLE} ADD COLUMN pending_before TEXT"
"""The migration of a ledger written before `pending_before` existed (a nullable column, so
old rows read as "no listing was taken"). SQLite checks the column first; PostgreSQL says:"""
ADD_FIELD_HASHES = f"ALTER TABLE {TABLE} ADD COLUMN field_hashes TEXT"
"""The migration of a ledger written before per-field digests (spec §13): old rows read as "no
field digests", so their first changed record is sent whole once, and remembered per field."""
ADDED_COLUMNS = {"pending_before": ADD_PENDING_BEFORE, "field_hashes": ADD_FIELD_HASHES}
"""Columns added since the first ledger, with their migrations (SQLite checks each first)."""
ADD_IF_MISSING = tuple(sql.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS")
                       for sql in ADDED_COLUMNS.values())
"""The same migrations as PostgreSQL runs them."""
INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {TABLE}_aha_id ON {TABLE} (aha_id)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_reference_num ON {TABLE} (reference_num)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_stream_key ON {TABLE} (stream, key)",
)
SELECT = (
    "SELECT aha_id, reference_num, url, body_hash, pending_since, pending_before, field_hashes "
    f"FROM {TABLE} "
    "WHERE stream = :stream AND target = :target AND key = :key"
)


def select_without(missing: Iterable[str]) -> str:
    """SELECT for a read-only look at a ledger that lacks added columns (a dry run does not
    migrate it): they read as NULL, as in a migrated ledger's old rows."""
    sql = SELECT
    for column in missing:
        sql = sql.replace(f", {column}", f", NULL AS {column}", 1)
    return sql

UPSERT = f"""
INSERT INTO {TABLE} (stream, target, key, aha_id, reference_num, url, body_hash,
                     pending_since, field_hashes, updated_at)
VALUES (:stream, :target, :key, :aha_id, :reference_num, :url, :body_hash,
        :pending_since, :field_hashes, :now)
ON CONFLICT (stream, target, key) DO UPDATE SET
    aha_id = excluded.aha_id, reference_num = excluded.reference_num, url = excluded.url,
    body_hash = excluded.body_hash, pending_since = excluded.pending_since,
    field_hashes = excluded.field_hashes, pending_before = NULL,
    updated_at = excluded.updated_at"""
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
FIND_KEY = (
    f"SELECT target, aha_id, reference_num FROM {TABLE} "
    "WHERE stream = :stream AND key = :key AND substr(target, 1, :n) = :account "
    "AND pending_since IS NULL ORDER BY updated_at DESC"
)
"""What a key of a stream became in one account, whatever its container (a reference's
parent: its create path may depend on its own record); pending creates name nothing yet."""

# Read side of `--verify-ledger` (verify.py): kept apart from the write statements above.
ACCOUNT_ROWS = (
    f"SELECT stream, target, key, aha_id, reference_num, pending_since FROM {TABLE} "
    "WHERE substr(target, 1, :n) = :account ORDER BY target, stream, key"
)
"""Every row of one account (its targets begin with the account's base URL), grouped by
target, the container whose listing proves the objects still exist."""
