"""Update streams remember too (spec §13): one ledger row per target object, not per stream.

A record of an `update_*` template (or of a custom PUT/PATCH to one object) names the object
it changes by its path, so the ledger remembers what was last sent *to that object*: account
+ path is the row's identity, shared by every stream that updates it. The row keeps each
field's digest, merged over every stream's updates, so:
- a record whose every field is what was last sent to the object sends nothing (`unchanged`);
- a changed one sends only its changed fields (all of them with `update_fields: all`);
- two streams updating one object never hide each other's changes: stream B setting a field
  stream A also sends makes A's next record differ from the row, so A sends it again (a row
  per stream would have told A "unchanged" while Aha! holds B's value).

Nothing is created here: an update Aha! answers 404 (the object is gone) is rejected as
before, and the object's row is forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from target_aha import aha
from target_aha.errors import RecordRejected
from target_aha.ledger import Digests, Entry, Ledger, LedgerError, Scope, body_hash, field_digests
from target_aha.shaping import changed_only, object_fields, with_fields
from target_aha.upsert import Delivered, Sending, Unrecorded, ledger_stop
from target_aha.wire import Request

OBJECT_STREAM = ""
"""The `stream` of an object's row: no stream's own (a stream's name is never empty), since
every stream updating the object shares it. Its `target` is the object's URL, its `key` the
path."""


def merged(before: Digests | None, now: Digests) -> dict[str, Any]:
    """The row's digests after sending `now`: other streams' fields (and other
    `custom_fields` keys) stay as they were."""
    out = dict(before or {})
    for name, digest in now.items():
        old = out.get(name)
        if isinstance(digest, Mapping) and isinstance(old, Mapping):
            out[name] = {**old, **digest}
        else:
            out[name] = digest
    return out


@dataclass
class ObjectUpdates:
    """The ledger-backed path of a stream whose records each update one named object."""

    sender: Sending
    ledger: Ledger
    wrapper: str | None
    operation: str
    dry_run: bool
    only_changed: bool = True
    """`update_fields: changed` (the default): a changed record sends only changed fields."""

    def scope(self, url: str, request: Request) -> Scope:
        """The object's row: `url` is the request's full URL without its query."""
        return Scope(OBJECT_STREAM, url, request.path)

    def unchanged(self, scope: Scope, request: Request) -> Entry | None:
        """The object's row if every field of this record is what was last sent to it."""
        entry = self.ledger.get(scope)
        if entry is None or entry.pending:
            return None
        fields = object_fields(request.body, self.wrapper)
        if fields is None:
            return entry if entry.body_hash == body_hash(request.body) else None
        if entry.field_hashes is None:
            return None
        return None if changed_only(fields, field_digests(fields), entry.field_hashes) else entry

    def deliver(self, scope: Scope, request: Request, where: str) -> Delivered:
        """Send what changed of the record (or nothing), and remember it for the object."""
        try:
            with self.ledger.hold(scope):
                return self._settle(scope, request, where)
        except LedgerError as exc:
            raise ledger_stop(where, exc) from exc

    def _settle(self, scope: Scope, request: Request, where: str) -> Delivered:
        entry = self.unchanged(scope, request)
        if entry is not None:
            return Delivered("unchanged", entry=entry)
        entry = self.ledger.get(scope)
        fields = object_fields(request.body, self.wrapper)
        digests = None if fields is None else field_digests(fields)
        sent = request
        if self.only_changed and fields is not None and digests is not None \
                and entry is not None and entry.field_hashes is not None:
            sent = replace(request, body=with_fields(
                request.body, self.wrapper, changed_only(fields, digests, entry.field_hashes)))
        try:
            answer = self.sender.send(sent, where)
        except RecordRejected as exc:
            if exc.status == 404 and entry is not None and not self.dry_run:
                self.ledger.forget(scope)
            raise
        done = Delivered(self.operation, answer=answer, request=sent)
        if answer.simulated or self.dry_run:
            return done
        obj = aha.object_in(answer.data, self.wrapper) if self.wrapper else {}
        known = entry.as_object() if entry is not None else {}
        try:
            self.ledger.store(
                scope, {**known, **{k: v for k, v in obj.items() if v}},
                body_hash(request.body),
                None if digests is None else merged(entry.field_hashes if entry else None,
                                                    digests),
            )
        except LedgerError as exc:
            raise Unrecorded(done, ledger_stop(
                where, exc, f"Aha! updated {request.path}, but",
                "The ledger still has what was sent before, so the next run sends this "
                "update again.",
            )) from exc
        return done
