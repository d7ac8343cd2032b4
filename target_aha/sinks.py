"""Sinks: turn each record into a unit of work for the dispatcher, settle it at drains.

A record is shaped and handed to the dispatcher as soon as it is read, so sending overlaps
reading. When the SDK drains a sink (before it emits STATE), `process_batch` waits until
every record handed over so far has an outcome (and its answer went to the response
webhook), which is what makes STATE safe. A batched custom stream's sink is in
`batch_sink.py`; records are validated by `validation.py`.

A record whose references (references.py) name a parent in flight is handed over with the
parent's ordering key, and resolved when the parent settled; one whose parent is not known
yet is deferred (deferral.py) and handed back by `Run.settle_deferred` at the end of input.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink

from target_aha.aha import created_object, object_in, text
from target_aha.deferral import held
from target_aha.destination import Destination
from target_aha.errors import ConfigError, FatalAhaError, RecordError, RecordRejected
from target_aha.ledger import LedgerError, Scope, ledger_key, legacy_key
from target_aha.references import Shaped, parents_of, shape, unresolved
from target_aha.results import Outcome
from target_aha.updates import ObjectUpdates
from target_aha.upsert import Delivered, Keyed, Unrecorded, Upsert, ledger_stop
from target_aha.validation import QUIET_MISMATCH, RecordValidator
from target_aha.webhook import envelope

if TYPE_CHECKING:
    from singer_sdk import Target
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from target_aha.run import Run
    from target_aha.wire import Answer, Request


class AhaSink(BatchSink):
    """The sink of a stream: one record, one Aha! call, as its destination's template says.

    It is handed what it needs, the run (shared by every sink) and the stream's destination;
    the SDK's `target` is only the SDK's (its settings, logger and clock).
    """

    MAX_SIZE_DEFAULT = 1000

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
        *,
        run: Run,
        destination: Destination,
    ) -> None:
        self.run = run
        self.destination = destination
        self.template = destination.template
        super().__init__(target, stream_name, schema, key_properties)
        self.logger.addFilter(QUIET_MISMATCH)  # once per logger
        prop = self.destination.key_property
        self.key_fields: list[str] = [prop] if prop else list(key_properties or [])
        self.webhook_url: str | None = self.destination.webhook_url or run.webhook_url
        self._position = 0
        self._warn_id_key_in_body()
        if stream_name in run.referenced and len(self.key_fields) != 1:
            raise ConfigError(
                f"Stream '{stream_name}' is named by other streams' references, so each of "
                "its records needs a key of one field, and its "
                + ("SCHEMA names no key properties" if not self.key_fields
                   else f"key is {len(self.key_fields)} fields ({', '.join(self.key_fields)})")
                + f"; set streams.{stream_name}.key_property to the field that identifies "
                "a record (the one references' `key` names)."
            )
        ledger = self.run.ledger
        upserts = self.destination.write_mode == "upsert" and self.template.update_path
        only_changed = self.destination.update_fields == "changed"
        self.upsert = (
            Upsert(self.run.sender, ledger, self.template, self.run.dry_run,
                   self.run.results.tally, only_changed)
            if ledger is not None and upserts
            else None
        )
        self.updates = (
            ObjectUpdates(self.run.sender, ledger, self.template.wrapper,
                          self.template.operation, self.run.dry_run, only_changed)
            if ledger is not None and self._updates_one_object()
            else None
        )

    def _updates_one_object(self) -> bool:
        """Whether each record updates one object the ledger can remember (spec §13): an
        `update_*` template (its path names the object), or a custom PUT/PATCH whose
        stream has a key or whose path names the object by a record's field."""
        dest = self.destination
        if dest.custom is None:
            return self.template.method == "PUT" and self.template.update_path is None \
                and dest.write_mode == "upsert"
        return dest.custom.method in {"PUT", "PATCH"} and dest.custom.batch is None and (
            bool(self.key_fields) or bool(dest.params) or "{" in dest.custom.path)

    def _warn_id_key_in_body(self) -> None:
        """Key fields are sent (unless excluded); one named `id` says "Aha!'s id" to Aha!.

        Warned once per stream (a new SCHEMA makes a new sink), only where the body goes to
        Aha! itself (templates, custom endpoints on the account's host).
        """
        dest = self.destination
        sent = "id" in self.key_fields and "id" not in dest.consumed | dest.exclude
        to_aha = dest.custom is None or dest.custom.on_account_host
        if not sent or not to_aha or self.stream_name in self.run.warned_id_key:
            return
        self.run.warned_id_key.add(self.stream_name)
        self.logger.warning(
            "Stream '%s': its key field 'id' is sent in each %s body as the field \"id\" "
            "(key fields are sent unless excluded), but an Aha! object's id is Aha!'s own. "
            "To keep it out of Aha!, add it to the stream's exclude_attributes (the ledger "
            "still keys records on it), or rename it with a stream map.",
            self.stream_name, dest.endpoint,
        )

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """Validate records as the SDK does (`validate_records`), with a readable error."""
        if not self.validate_schema:
            return None
        return RecordValidator(self.schema, validate_formats=self.validate_field_string_format,
                               stops_run=self.fail_on_record_validation_exception)

    def key_parts(self, record: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The values of the record's key properties, or None if it has no complete key."""
        values = [record.get(f) for f in self.key_fields]
        if not values or any(v is None or v == "" for v in values):
            return None
        return tuple(str(v) for v in values)

    def key_of(self, record: Mapping[str, Any]) -> str | None:
        """The record's key as people read it (results, messages): parts joined with '|'.

        Not unique when a part contains '|': the ledger and the dispatcher's ordering use
        `ledger_key` of the parts instead.
        """
        parts = self.key_parts(record)
        return None if parts is None else "|".join(parts)

    def process_record(self, record: dict, context: dict) -> None:
        """Shape the record and hand it to the dispatcher (sending starts at once)."""
        self._position += 1
        self.run.read += 1
        parts = self.key_parts(record)
        self._route(record, f"stream '{self.stream_name}', record " + (
            f"key {'|'.join(parts)!r}" if parts is not None else f"#{self._position}"
        ))

    def _route(self, record: dict, where: str) -> bool:
        """Send the record now, after a parent in flight, or defer it to the end of input.

        Whether it was handed on (False: it was deferred, or settled as rejected).
        """
        parts = self.key_parts(record)
        key = None if parts is None else "|".join(parts)
        order: list[Hashable] = []
        if parts is not None:
            order.append(("key", self.stream_name, ledger_key(parts)))
            if self.run.waits_behind(self.stream_name, ledger_key(parts)):
                self._defer(record, where)  # an older record of its key is deferred
                return False
        try:
            waits = [p.order for p in parents_of(self.destination, record)
                     if self.run.dispatcher.busy([p.order])]
            if waits:
                # A parent is in flight (created, or perhaps created again with a new id):
                # resolve after it, without blocking other records.
                self.run.dispatcher.submit(
                    functools.partial(self._deliver_linked, record, parts, where),
                    [*order, *waits],
                )
                return True
            shaped = self._shape(record)
        except RecordError as exc:
            self._reject(key, where, str(exc), None)
            return False
        if shaped.missing:
            self._defer(record, where)
            return False
        request = shaped.request
        if request.method != "POST":
            order.append(("object", request.origin, request.path))
        if self.upsert is not None and parts is not None and not self.run.dispatcher.busy(order):
            job = self._keyed(shaped, parts, where)
            try:
                entry = self.upsert.unchanged(job)
            except LedgerError as exc:
                raise ledger_stop(where, exc) from exc
            if entry is not None:  # settled here: nothing to send, nothing to wait for
                self.run.results.write(self._outcome(key, Delivered("unchanged", entry=entry)))
                return True
        if self.updates is not None and not self.run.dispatcher.busy(order):
            try:
                entry = self.updates.unchanged(self._object(request), request)
            except LedgerError as exc:
                raise ledger_stop(where, exc) from exc
            if entry is not None:
                self.run.results.write(self._outcome(key, Delivered("unchanged", entry=entry)))
                return True
        self.run.dispatcher.submit(
            functools.partial(self._deliver, shaped, parts, where), order
        )
        return True

    def _shape(self, record: Mapping[str, Any]) -> Shaped:
        """The record's request, its parents resolved where the ledger knows them."""
        return shape(self.destination, record, self.run.resolver, dry_run=self.run.dry_run,
                     disable_mailers=self.run.disable_mailers)

    def _defer(self, record: dict, where: str) -> None:
        """Hold the record on disk until the end of the input: only what it sends or reads."""
        parts = self.key_parts(record)
        self.run.defer(self.stream_name, self, held(self.destination, self.key_fields, record),
                       where, None if parts is None else ledger_key(parts))

    def replay(self, record: dict[str, Any], where: str) -> bool:
        """A deferred record, at the end of the input: handed on, or deferred again."""
        return self._route(record, where)

    def give_up(self, record: dict[str, Any], where: str) -> None:
        """A deferred record whose parents never came: rejected under `on_record_error`."""
        parts = self.key_parts(record)
        key = None if parts is None else "|".join(parts)
        try:
            missing = self._shape(record).missing
        except RecordError as exc:
            self._reject(key, where, str(exc), None)
            return
        if not missing:  # its parent settled after all (a last round found it)
            self._route(record, where)
            return
        self._reject(key, where, unresolved(where, missing), None)

    def reject_unreadable(self, error: str) -> None:
        """Settle a RECORD whose `record` is not an object: it cannot be shaped into a
        request, so it is rejected as `on_record_error` says (never silently dropped)."""
        self._position += 1
        self.run.read += 1
        self._reject(None, f"stream '{self.stream_name}', record #{self._position}", error, None)

    def process_batch(self, context: dict) -> None:
        """Wait until every record handed over so far is settled (or raise the fatal error)."""
        self.run.settle()

    def _deliver_linked(
        self, record: dict, parts: tuple[str, ...] | None, where: str
    ) -> None:
        """Runs on a sender thread after the record's parents in flight: resolve and send
        (or defer, if a parent did not come to be: its create was rejected)."""
        key = None if parts is None else "|".join(parts)
        try:
            shaped = self._shape(record)
        except RecordError as exc:
            self._reject(key, where, str(exc), None)
            return
        if shaped.missing:
            self._defer(record, where)
            return
        self._deliver(shaped, parts, where)

    def _keyed(self, shaped: Shaped, parts: tuple[str, ...], where: str) -> Keyed:
        return Keyed(shaped.request, shaped.values, self._scope(shaped.path, parts), where,
                     shaped.pinned)

    def _deliver(self, shaped: Shaped, parts: tuple[str, ...] | None, where: str) -> None:
        """Runs on a sender thread, after every earlier record with the same key settled."""
        key = None if parts is None else "|".join(parts)
        request = shaped.request
        try:
            if self.upsert is not None and parts is not None:
                done = self.upsert.deliver(self._keyed(shaped, parts, where))
            elif self.updates is not None:
                done = self.updates.deliver(self._object(request), request, where)
            else:
                answer = self.run.sender.send(request, where)
                if not answer.simulated and self.template.operation == "create":
                    created_object(answer, request, self.template.wrapper, where=where,
                                   keyed=False)
                done = Delivered(self.template.operation, answer=answer)
                if request.method == "DELETE" and not answer.simulated:
                    self._forget_deleted(request, done, where)
        except Unrecorded as exc:  # Aha! did it, the ledger could not note it: keep the outcome
            self.run.results.write(self._outcome(key, exc.done))
            raise
        except RecordRejected as exc:
            self._notify(exc.request or request, key, exc.response)
            self._reject(key, where, str(exc), exc.status)
            return
        except RecordError as exc:
            self._reject(key, where, str(exc), None)
            return
        if done.answer is not None:
            self._notify(done.request or request, key, done.answer)
        self.run.results.write(self._outcome(key, done))

    def _forget_deleted(self, request: Request, done: Delivered, where: str) -> None:
        """A deleted object must be created afresh if its key comes back: forget its rows.

        Only a DELETE under base_url deletes one of the account's objects (one to another host
        forgets nothing); the ledger keeps other accounts' and other kinds' rows.
        """
        if self.run.ledger is None or request.origin is not None:
            return
        try:
            self.run.ledger.forget_object(self.run.sender.client.base_url, request.path)
        except LedgerError as exc:
            raise Unrecorded(
                done, ledger_stop(
                    where, exc, f"Aha! deleted {request.path}, but",
                    "The ledger still names the deleted object; an upsert of its key finds "
                    "it gone (404) and creates it again.",
                )
            ) from exc

    def _object(self, request: Request) -> Scope:
        """The ledger row of the object an update record changes: its URL (account + path),
        whichever stream updates it."""
        assert self.updates is not None
        root = request.origin if request.origin is not None else self.run.sender.client.base_url
        return self.updates.scope(root + request.path, request)

    def _scope(self, path: str, parts: tuple[str, ...]) -> Scope:
        """The ledger row of a keyed record: the account and the create's path make the target,
        so one ledger can serve several Aha! accounts (staging, production) without mixing."""
        return Scope(self.stream_name, self.run.sender.client.base_url + path,
                     ledger_key(parts), legacy_key(parts))

    def _notify(
        self, request: Request, key: str | list[str | None] | None, answer: Answer | None
    ) -> None:
        """Post the answer that settled a record (or batch) to the response webhook, if any.

        None or a dry run's simulated answer posts nothing. The envelope has no headers:
        never the API key.
        """
        if answer is None or answer.simulated or self.webhook_url is None:
            return
        response = answer.data if answer.data is not None else (answer.text or None)
        self.run.webhook.post(
            self.webhook_url,
            envelope(
                self.stream_name, key, method=request.method,
                url=self.run.sender.client.url(request), status=answer.status,
                response=response,
            ),
        )

    def _outcome(self, key: str | None, done: Delivered) -> Outcome:
        status = "dry_run" if self.run.dry_run else "succeeded"
        if done.entry is not None:
            obj = done.entry.as_object()
        else:
            obj = object_in(done.answer.data if done.answer else None, self.template.wrapper)
        return Outcome(
            self.stream_name,
            key,
            self.destination.endpoint,
            done.operation,
            status,
            http_status=done.answer.status if done.answer and not done.answer.simulated
            else None,
            aha_id=text(obj.get("id")),
            reference_num=text(obj.get("reference_num")),
            url=text(obj.get("url")),
        )

    def _reject(self, key: str | None, where: str, error: str, status: int | None) -> None:
        """Settle a record Aha! rejected or that cannot be shaped, as `on_record_error` says."""
        self.run.results.write(
            Outcome(
                self.stream_name, key, self.destination.endpoint, self.template.operation,
                "rejected", http_status=status, error=error,
            )
        )
        if self.run.on_record_error == "fail":
            raise FatalAhaError(
                f"Record rejected ({where}): {error}. Fix the record or the stream's entry "
                "in `streams`, or set on_record_error: skip to record such records as "
                "rejected in the results file and go on."
            )
