"""`--verify-ledger` (spec §13): find the ledger's rows whose objects were deleted in Aha!.

A row whose object was deleted by hand says `unchanged` forever: its records are never sent
again. Verifying lists each container the ledger's rows were created in (200 objects per
request, through the rate gate and the sender's retries) and forgets the rows whose objects
are not there, so the next run creates them again. Nothing is written to Aha!.

Forgetting too much would duplicate objects, so a row missing from its container's listing
is forgotten only once a GET of the object itself answers 404 (an object a PM moved to
another release is still there: that GET finds it, and the row is kept). Rows that cannot be
checked (a pending create, a target that is not a template's container, a container that
cannot be listed, an answer that is not a listing) are kept and counted as unverifiable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import groupby
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from target_aha import aha
from target_aha.errors import ConfigError, RecordRejected
from target_aha.ledger import Known, Ledger
from target_aha.ledger_open import open_ledger
from target_aha.ratelimit import RateGate
from target_aha.references import PLACEHOLDER_START, Parent, Resolver
from target_aha.sender import Sender, sender_policy
from target_aha.shaping import encode_segment
from target_aha.updates import OBJECT_STREAM
from target_aha.wire import Request

if TYPE_CHECKING:
    from target_aha.run import Run

logger = logging.getLogger("target-aha")

GONE = 404
"""The status of a GET of an object that no longer exists."""
MAX_PAGES = 10_000
"""Bound on the pages of one container's listing (2,000,000 objects): a listing whose
`pagination` never ends must not loop forever."""


@dataclass
class Tally:
    """What verifying found for one stream's rows."""

    kept: int = 0
    forgotten: int = 0
    unverifiable: int = 0


@dataclass
class Verified:
    """The outcome of a verification: per stream, and what it cost."""

    streams: dict[str, Tally] = field(default_factory=dict)
    requests: int = 0
    forgetting: bool = True
    """False when rows were only reported (a dry run): none was forgotten."""

    def tally(self, stream: str) -> Tally:
        """The stream's tally (created on first use)."""
        return self.streams.setdefault(stream, Tally())

    @property
    def rows(self) -> int:
        """Rows looked at."""
        return sum(t.kept + t.forgotten + t.unverifiable for t in self.streams.values())

    def lines(self) -> list[str]:
        """The report: one line per stream, then the cost."""
        gone = "forgotten (created again on the next run)" if self.forgetting else (
            "gone from Aha! (dry run: not forgotten)")
        out = [
            f"verify-ledger: {_whose(name)}: {t.kept} kept, {t.forgotten} {gone}, "
            f"{t.unverifiable} unverifiable"
            for name, t in sorted(self.streams.items())
        ]
        if not self.streams:
            out.append("verify-ledger: the ledger has no rows of this account")
        requests = "1 GET request" if self.requests == 1 else f"{self.requests} GET requests"
        out.append(f"verify-ledger: {self.rows} rows checked with {requests} (about one per "
                   "200 objects); nothing was written to Aha!")
        return out


def verify_ledger(ledger: Ledger, sender: Sender, *, forget: bool = True) -> Verified:
    """Check every row of the sender's account against Aha!; forget those whose objects are
    gone (unless `forget` is False); the report."""
    account = sender.client.base_url.rstrip("/")
    before = sender.sent
    verified = Verified(forgetting=forget)
    gone: list[Known] = []
    rows = ledger.account_rows(account)
    parents = Resolver(ledger, account)
    for target, group in groupby(rows, key=lambda row: row.scope.target):
        in_container = list(group)
        path = _resolved(target[len(account):], parents)
        checked = [row for row in in_container if not row.pending and row.idents()]
        present = _listing(sender, path, checked) if _container(path) and checked else None
        for row in in_container:
            tally = verified.tally(row.scope.stream)
            if row.pending or present is None or not row.idents():
                tally.unverifiable += 1
            elif row.idents() & present:
                tally.kept += 1
            else:
                exists = _exists(sender, target, row)
                if exists is None:
                    tally.unverifiable += 1
                elif exists:
                    tally.kept += 1
                else:
                    tally.forgotten += 1
                    gone.append(row)
    if forget:
        ledger.forget_rows(gone)  # one changed meanwhile (a run beside this one) stays
    verified.requests = sender.sent - before
    return verified


def _listing(sender: Sender, path: str, rows: list[Known]) -> set[str] | None:
    """The ids and reference numbers listed at `path`, page after page, until every row is
    found, or the pages left outnumber the rows still missing (a GET of each is cheaper then:
    a release of 5,000 hand-made features and 3 rows costs 1 page and at most 3 GETs); None
    when it cannot be listed (a 4xx, or an answer that is not a listing)."""
    where = f"--verify-ledger, listing {path}"
    found: set[str] = set()
    for page in range(1, MAX_PAGES + 1):
        query = {**aha.listing_query(since=None, search=None), **aha.page_query(page)}
        try:
            answer = sender.send(Request("GET", path, query), where)
        except RecordRejected as exc:
            logger.warning("%s: %s; its rows are kept unverified", where, exc)
            return None
        data = answer.data
        if not _is_listing(data):
            logger.warning("%s: the answer is not a listing; its rows are kept unverified",
                           where)
            return None
        for obj in aha.listed(data) or []:
            found.update(i for i in (aha.text(obj.get("id")),
                                     aha.text(obj.get("reference_num"))) if i)
        missing = sum(1 for row in rows if not row.idents() & found)
        if not missing or aha.last_page(data, page) or aha.pages(data) - page > missing:
            return found
    return found


def _resolved(path: str, parents: Resolver) -> str:
    """A row's target with its parents filled in: a child's row names a parent container
    by key (`/releases/<ref versions:V-1>/epics`, see references.shape), which is listed
    where that parent is now. A parent the ledger does not know leaves the path as it is
    (its listing then fails, and its rows stay unverifiable)."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        text = unquote(segment)
        if not (text.startswith(PLACEHOLDER_START) and text.endswith(">")):
            continue
        named = text[len(PLACEHOLDER_START):-1]
        for at in (i for i, char in enumerate(named) if char == ":"):  # streams may hold ":"
            found = parents.value(Parent("", True, named[:at], named[at + 1:]))
            if found is not None:
                segments[i] = encode_segment(found, "container")
                break
    return "/".join(segments)


def _container(path: str) -> bool:
    """Whether a row's target is a container a template creates in (`.../features`,
    `.../comments`, `/teams`): rows of any other target (an object updated in place, a custom
    endpoint) are not guessed at, and stay unverifiable."""
    return path.rstrip("/").rsplit("/", 1)[-1] in aha.COLLECTIONS


def _is_listing(data: Any) -> bool:
    """An answer that lists objects (`{"features": [...], "pagination": ...}`): a single
    object's answer (`{"feature": {...}}`) must not read as an empty container."""
    return isinstance(data, dict) and any(isinstance(v, list) for v in data.values())


def _exists(sender: Sender, target: str, row: Known) -> bool | None:
    """Whether the object of a row missing from its container's listing still exists: a GET
    of `/<collection>/<id>`; None when the answer says neither (not 404, not the object)."""
    ident = row.aha_id or row.reference_num
    path = f"/{aha.collection_of(target)}/{ident}"
    where = f"--verify-ledger, stream {row.scope.stream}, key {row.scope.key}"
    try:
        answer = sender.send(Request("GET", path), where)
    except RecordRejected as exc:
        if exc.status == GONE:
            return False
        logger.warning("%s: %s; the row is kept unverified", where, exc)
        return None
    return True if aha.named_object(answer.data, None) is not None else None


def verify_from_settings(
    config: Mapping[str, Any], sender: Sender, say: Callable[[str], None]
) -> Verified:
    """`--verify-ledger`: open the ledger the settings name, verify it, print the report."""
    dry_run = bool(config.get("dry_run"))
    if not config["ledger_path"]:
        raise ConfigError('--verify-ledger needs a ledger, but ledger_path is "" (upsert is '
                          "off, so nothing is remembered to verify).")
    ledger = open_ledger(config["ledger_path"], dry_run=dry_run, pool_size=1)
    if ledger is None:  # a dry run of a SQLite file that does not exist yet: an empty ledger
        verified = Verified(forgetting=False)
    else:
        try:
            verified = verify_ledger(ledger, sender, forget=not dry_run)
        finally:
            ledger.close()
    for line in verified.lines():
        say(line)
    return verified


def verify_before_load(run: Run) -> None:
    """`verify_ledger: true`: verify through the run's ledger and sender before its first
    record is sent, the report logged (not in a dry run: its client sends nothing)."""
    if run.ledger is None:
        logger.warning('verify_ledger is on but ledger_path is "": nothing to verify')
        return
    if run.dry_run:
        logger.warning("verify_ledger is on, but a dry run sends no request: not verified")
        return
    for line in verify_ledger(run.ledger, run.sender).lines():
        logger.info("%s", line)


def settings_sender(config: Mapping[str, Any], client: Any, gate: RateGate) -> Sender:
    """The sender `--verify-ledger` reads through: the run's gate and retry policy."""
    return Sender(client, gate, sender_policy(config["max_retries"]))


def _whose(stream: str) -> str:
    """Who a tally is of: a stream, or the objects update streams changed (their rows belong
    to the object, not a stream; a gone one is forgotten by its next update's 404)."""
    if stream == OBJECT_STREAM:
        return "objects changed by update streams (checked by their next update)"
    return f"stream {stream}"
