"""`ledger_path` → a ledger: which store a value names, and opening it before anything is sent.

A value that would silently do something else is refused here (a URL of another scheme, a
SQLite database that does not outlive the run), and a ledger that cannot be used stops the
run: never a silent fallback to creating everything again.
"""

from __future__ import annotations

import re
from pathlib import Path

from target_aha.errors import ConfigError
from target_aha.ledger import Ledger, LedgerError, Scope
from target_aha.ledger_postgres import PostgresLedger
from target_aha.ledger_sqlite import SQLiteLedger
from target_aha.redact import mask_url

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


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
