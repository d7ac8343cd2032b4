"""Create-or-update of one keyed record through the ledger, safe against crashes and timeouts.

For a `create_*` template and a keyed record:
- key unknown: mark it pending, create, store the id;
- key known, same body hash: send nothing (`unchanged`);
- key known, body changed: PUT to the template's update path only the fields whose digest
  changed (spec §13; `update_fields: all`, or a row of an older target-aha that kept no field
  digests: the whole body), so what people edited in Aha! in other fields stays; a 404 there
  (the object was deleted in Aha!) creates it again;
- key pending (an earlier create's outcome is unknown: the process died, the request timed
  out after it was sent, or Aha!'s 2xx named no object): look in the container for an object
  with the same name (custom table records: the same fields; comments, which have no name:
  the same body in the same commented object) that is new since the mark, and adopt a single
  match instead of creating a second object. Several matches: reject the
  record and list them. "New" is read from Aha!'s `created_at` where listings carry one;
  teams and custom table records carry none, so their creates note the look-alikes that
  already exist when they are marked pending, and only an object not among them is adopted.

A ledger that fails mid-run (a full disk, a lost database) stops the run with a message that
says what Aha! already did for the record and what the next run will do about it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from target_aha import aha
from target_aha.endpoints import Template
from target_aha.errors import RecordError, RecordRejected, TargetAhaError
from target_aha.ledger import (
    Digests,
    Entry,
    Ledger,
    LedgerError,
    Scope,
    body_hash,
    field_digests,
)
from target_aha.shaping import changed_only, fill_path, object_fields, with_fields
from target_aha.wire import Answer, Request

CLOCK_SLACK_SECONDS = 10.0
"""An object counts as created after a pending mark if Aha! dated it at most this much before
the mark (our clock and Aha!'s differ a little)."""

logger = logging.getLogger("target-aha")


def _uncounted(event: str) -> None:
    """The default `Upsert.count`: count nothing."""


class Sending(Protocol):
    """What upsert needs of a sender (`sender.Sender`)."""

    def send(self, request: Request, where: str, recover: Any = None) -> Answer:
        """Send one request (see sender.Sender.send)."""


@dataclass(frozen=True)
class Delivered:
    """How a keyed record was settled: the operation, Aha!'s answer or the ledger's entry."""

    operation: str
    answer: Answer | None = None
    entry: Entry | None = None
    request: Request | None = None
    """The request Aha! answered, when it is not the record's own (an upsert's PUT)."""


@dataclass(frozen=True)
class Keyed:
    """One keyed record on its way: its create request, parameters, ledger row, and name."""

    request: Request
    values: Mapping[str, str]
    scope: Scope
    where: str
    pinned: Mapping[str, str] = field(default_factory=dict)
    """Parameters set by references (their parents' ids): not in the body, but a parent
    created again with a new id must change the digest (spec §12)."""

    @property
    def digest(self) -> str:
        """The hash the ledger keeps of what this record's body is (and where it points)."""
        if self.pinned:
            return body_hash({"body": self.request.body, "references": dict(self.pinned)})
        return body_hash(self.request.body)


class Unrecorded(TargetAhaError):
    """Aha! did what a record asked, but the ledger could not note it; the run stops.

    `done` is the record's outcome, which still goes to the results file.
    """

    def __init__(self, done: Delivered, error: LedgerError) -> None:
        super().__init__(str(error))
        self.done = done


def ledger_stop(
    where: str, exc: LedgerError, happened: str = "",
    next_run: str = "Aha! was not changed for this record, so the next run sends it again.",
) -> LedgerError:
    """The fatal error of a ledger failure at one record: what, where, and what happens next."""
    return LedgerError(
        f"Stopped at {where}: {happened + ' ' if happened else ''}{exc}. The run stopped here "
        f"and no STATE was emitted past this record. {next_run} Make room for the ledger "
        "(free disk space, or fix its database) and run again."
    )


def _named(obj: Mapping[str, Any]) -> str:
    """`PRJ1-12 (id 123)` for messages."""
    ref, ident = obj.get("reference_num"), obj.get("id")
    return f"{ref} (id {ident})" if ref and ident else str(ref or ident or "an object")


@dataclass
class Upsert:
    """The ledger-backed path of one `create_*` stream."""

    sender: Sending
    ledger: Ledger
    template: Template
    dry_run: bool
    count: Callable[[str], None] = _uncounted
    """Counts the run's events (`recovered`: a create adopted after its answer was lost)."""
    only_changed: bool = True
    """`update_fields: changed` (the default): an update sends only the changed fields."""

    def digests(self, job: Keyed) -> Digests | None:
        """The digest of each field of the record's object (None: its body is no object)."""
        fields = object_fields(job.request.body, self.template.wrapper)
        return None if fields is None else field_digests(fields)

    def unchanged(self, job: Keyed) -> Entry | None:
        """The ledger's entry if the record is certainly unchanged, else None.

        A read only, cheap enough for the reading thread: a re-sync of unchanged records then
        never waits on a sender thread. Anything else goes through `deliver`.
        """
        entry = self.ledger.get(job.scope)
        if entry is not None and not entry.pending and entry.body_hash == job.digest:
            return entry
        return None

    def deliver(self, job: Keyed) -> Delivered:
        """Settle one keyed record; raises RecordRejected/RecordError like a plain send.

        A ledger failure raises LedgerError (nothing done in Aha!) or Unrecorded (done there).
        """
        try:
            return self._settle(job)
        except LedgerError as exc:
            raise ledger_stop(job.where, exc) from exc

    def _settle(self, job: Keyed) -> Delivered:
        with self.ledger.hold(job.scope):
            entry = self.ledger.get(job.scope)
            if entry is not None and entry.pending and not self.dry_run:
                adopted = self._adopt(entry, job)
                if adopted is not None and entry.body_hash == job.digest:
                    return Delivered("create", answer=adopted)
                entry = self.ledger.get(job.scope)
            if entry is not None and not entry.pending:
                if entry.body_hash == job.digest:
                    return Delivered("unchanged", entry=entry)
                updated = self._update(entry, job)
                if updated is not None:
                    return updated
            return self._create(job)

    def _update(self, entry: Entry, job: Keyed) -> Delivered | None:
        """PUT the changed body; None if the object is gone (then the caller creates)."""
        assert self.template.update_path is not None
        wrapper = self.template.wrapper
        body, digests = job.request.body, self.digests(job)
        fields = object_fields(body, wrapper)
        if self.only_changed and fields is not None and digests is not None \
                and entry.field_hashes is not None:
            # Nothing changed in the body means a parent set by a reference moved: send all.
            body = with_fields(body, wrapper, changed_only(fields, digests, entry.field_hashes)
                               or fields)
        put = replace(
            job.request, method="PUT", body=body,
            path=fill_path(self.template.update_path, {**job.values, "id": entry.aha_id or ""}),
        )
        try:
            answer = self.sender.send(put, job.where)
        except RecordRejected as exc:
            if exc.status != 404:
                raise
            if not self.dry_run:
                self.ledger.forget(job.scope)
            return None
        done = Delivered("update", answer=answer, request=put)
        if not answer.simulated:
            obj = aha.object_in(answer.data, self.template.wrapper)
            merged = {**entry.as_object(), **{k: v for k, v in obj.items() if v}}
            self._store(job, merged, job.digest, done, digests,
                        happened=f"Aha! updated {_named(merged)}, but",
                        next_run="The ledger still has the previous body's hash, so the next "
                        "run sends this update again.")
        return done

    def _create(self, job: Keyed) -> Delivered:
        if self.dry_run:
            return Delivered("create", answer=self.sender.send(job.request, job.where))
        before = None
        if not self.template.list_dated:
            # Nothing in the listing will say when an object was made: note which look-alikes
            # exist now, so that recovery adopts only one that was not there before. Where the
            # list takes updated_since, recovery reads only objects touched since the mark
            # (less the slack), so only those can be mistaken for ours: list just them, which
            # keeps this one page however large the table grows.
            entry = self.ledger.get(job.scope)
            if entry is None or entry.pending_before is None:
                recent = time.time() - CLOCK_SLACK_SECONDS
                before = [str(o.get("id")) for o in self._same_named(job, since=recent)]
        mark = self.ledger.mark_pending(job.scope, job.digest, before)
        assert mark.pending_since is not None
        try:
            answer = self.sender.send(
                job.request, job.where,
                recover=lambda: self._adoptable(job, mark.pending_since or 0.0,
                                                mark.pending_before),
            )
        except RecordRejected:
            self.ledger.forget(job.scope)  # Aha! refused it: certainly nothing was created
            raise
        # An answer that names no object leaves the key pending (RecordError): unknown outcome.
        obj = aha.created_object(
            answer, job.request, self.template.wrapper, where=job.where, keyed=True
        )
        done = Delivered("create", answer=answer)
        self._store(job, obj, job.digest, done, self.digests(job),
                    happened=f"Aha! created {_named(obj)}, but",
                    next_run="The key stays marked pending in the ledger, so the next run "
                    "finds this object and adopts it instead of creating it again.")
        return done

    def _store(self, job: Keyed, obj: Mapping[str, Any], digest: str, done: Delivered,
               fields: Digests | None, *, happened: str, next_run: str) -> None:
        """Note in the ledger what Aha! did; if the ledger fails, stop with `done` kept."""
        try:
            self.ledger.store(job.scope, obj, digest, fields)
        except LedgerError as exc:
            raise Unrecorded(done, ledger_stop(job.where, exc, happened, next_run)) from exc

    def _adopt(self, entry: Entry, job: Keyed) -> Answer | None:
        """Settle a key an earlier attempt left pending: store the object it made, if any."""
        assert entry.pending_since is not None
        adopted = self._adoptable(job, entry.pending_since, entry.pending_before)
        if adopted is not None:
            obj = aha.object_in(adopted.data, self.template.wrapper)
            # The fields' digests are this record's only if the pending body was this one.
            fields = self.digests(job) if entry.body_hash == job.digest else None
            self._store(job, obj, entry.body_hash, Delivered("create", answer=adopted), fields,
                        happened=f"an earlier attempt created {_named(obj)}, but",
                        next_run="The key stays marked pending in the ledger, so the next run "
                        "adopts this object again instead of creating a second one.")
        return adopted

    def _adoptable(
        self, job: Keyed, since: float, before: frozenset[str] | None
    ) -> Answer | None:
        """The single object an unknown-outcome create made, as if Aha! had answered with it."""
        matches = self.find_created(job, since, before)
        if not matches:
            return None
        if len(matches) > 1:
            listed = ", ".join(
                str(m.get("reference_num") or m.get("id")) for m in matches
            )
            raise RecordError(
                f"an earlier create of this key had an unknown outcome, and {len(matches)} "
                f"matching objects were created since then ({listed}); target-aha will not "
                "guess which one is this record's. Delete the duplicates in Aha! and run again"
            )
        self.count("recovered")
        logger.info(
            "%s: the answer to an earlier create of this key was lost (the process stopped, "
            "the request timed out, or a gateway failed after Aha! committed it); found %s, "
            "new since the create was marked pending, and adopted it instead of creating a "
            "second object.", job.where, _named(matches[0]),
        )
        return Answer(200, {}, json.dumps({self.template.wrapper: matches[0]}))

    def find_created(
        self, job: Keyed, since: float, before: frozenset[str] | None
    ) -> list[dict[str, Any]]:
        """Objects in the record's container that look like its create, made since `since`.

        New means: not among `before` (the look-alikes listed when the create was marked
        pending), or, with no such listing, dated by Aha! after the mark. An object that is
        neither is never adopted: adopting someone else's object would point the key at it
        and later updates would overwrite it, which is worse than a second object.
        """
        after = since - CLOCK_SLACK_SECONDS
        matches = []
        for obj in self._same_named(job, since=after):
            if before is not None:
                if str(obj.get("id")) not in before:
                    matches.append(obj)
            elif (created := aha.created_at(obj)) is not None and created >= after:
                matches.append(obj)
        return matches

    def _same_named(self, job: Keyed, since: float | None) -> list[dict[str, Any]]:
        """Objects in the record's container with its name (records: its custom fields;
        comments: its body, see Template.same_by).

        Lists are paged through (at most aha.MAX_LIST_PAGES pages), narrowed by `q=` and
        `updated_since=` only where Aha! documents them for that list.
        """
        template = self.template
        assert template.list_path is not None and template.wrapper is not None
        fields = (job.request.body or {}).get(template.wrapper) or {}
        same_by = template.same_by
        if template.nest is None and not fields.get(same_by):
            return []
        query = aha.listing_query(
            since=since if template.list_since else None,
            search=str(fields[same_by]) if template.list_search and template.nest is None
            else None,
        )
        matches = []
        path = fill_path(template.list_path, job.values)
        for page in range(1, aha.MAX_LIST_PAGES + 1):
            listing = Request("GET", path, {**query, **aha.page_query(page)})
            answer = self.sender.send(listing, f"{job.where}, looking for its pending create")
            data = answer.data
            items = aha.listed(data)
            if items is None:
                break
            matches += [o for o in items if aha.carries(o, fields, template.nest, same_by)]
            if aha.last_page(data, page):
                break
        return matches
