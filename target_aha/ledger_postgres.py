"""The PostgreSQL ledger: a table shared by every runner of a pipeline, through SQLAlchemy.

For runners without a lasting disk, and for runs that must overlap: a session advisory lock
per key keeps two runs from creating the same key at once. SQLAlchemy and psycopg are
imported when such a ledger is opened, never before (they are the `postgres` extra, and most
runs, and every `--version`, do without them).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from target_aha.ledger import Ledger, Scope
from target_aha.ledger_sql import ADD_IF_MISSING, INDEXES, SCHEMA


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
            for migration in ADD_IF_MISSING:
                conn.execute(sa.text(migration))
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
