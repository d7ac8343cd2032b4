"""Sinks: turn each record into a unit of work for the dispatcher, settle it at drains.

A record is shaped and handed to the dispatcher as soon as it is read, so sending overlaps
reading. When the SDK drains a sink (before it emits STATE), `process_batch` waits until
every record handed over so far has an outcome, which is what makes STATE safe.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks import BatchSink
from singer_sdk.sinks.core import JSONSchemaValidator

from target_aha.endpoints import TEMPLATES, Template
from target_aha.errors import FatalAhaError, RecordError, RecordRejected, SchemaMismatch
from target_aha.ledger import Scope
from target_aha.results import Outcome, object_in
from target_aha.shaping import build_request, param_values
from target_aha.upsert import Delivered, Keyed, Upsert

if TYPE_CHECKING:
    from target_aha.client import Request
    from target_aha.target import TargetAha


class RecordValidator(JSONSchemaValidator):
    """The SDK's validator, raising `SchemaMismatch` so the target can word the error."""

    def validate(self, record: dict) -> None:
        """Raise SchemaMismatch if the record does not match the stream's schema."""
        try:
            super().validate(record)
        except InvalidRecord as exc:
            raise SchemaMismatch(exc.error_message) from exc


class AhaSink(BatchSink):
    """Base sink of every template: one record, one Aha! call."""

    MAX_SIZE_DEFAULT = 1000
    template: ClassVar[Template]

    def __init__(
        self,
        target: TargetAha,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.run = target.run
        self.destination = target.destination_for(stream_name)
        prop = self.destination.key_property
        self.key_fields: list[str] = [prop] if prop else list(key_properties or [])
        self._position = 0
        upserts = (
            self.run.ledger is not None
            and self.destination.write_mode == "upsert"
            and self.template.update_path is not None
        )
        self.upsert = (
            Upsert(self.run.sender, self.run.ledger, self.template, self.run.dry_run)
            if upserts and self.run.ledger is not None
            else None
        )

    def get_validator(self) -> JSONSchemaValidator | None:
        """Validate records as the SDK does (`validate_records`), with a readable error."""
        if not self.validate_schema:
            return None
        return RecordValidator(self.schema, validate_formats=self.validate_field_string_format)

    def key_of(self, record: Mapping[str, Any]) -> str | None:
        """The record's upstream key (several key properties are joined with '|')."""
        values = [record.get(f) for f in self.key_fields]
        if not values or any(v is None or v == "" for v in values):
            return None
        return "|".join(str(v) for v in values)

    def process_record(self, record: dict, context: dict) -> None:
        """Shape the record and hand it to the dispatcher (sending starts at once)."""
        self._position += 1
        self.run.read += 1
        key = self.key_of(record)
        where = f"stream '{self.stream_name}', record " + (
            f"key {key!r}" if key is not None else f"#{self._position}"
        )
        try:
            values = param_values(self.destination, record)
            request = build_request(self.destination, record, values, self.run.disable_mailers)
        except RecordError as exc:
            self._reject(key, where, str(exc), None)
            return
        order: list[Hashable] = []
        if key is not None:
            order.append(("key", self.stream_name, key))
        if request.method != "POST":
            order.append(("object", request.path))
        self.run.dispatcher.submit(
            functools.partial(self._deliver, request, values, key, where), order
        )

    def process_batch(self, context: dict) -> None:
        """Wait until every record handed over so far is settled (or raise the fatal error)."""
        self.run.dispatcher.join()

    def _deliver(
        self, request: Request, values: Mapping[str, str], key: str | None, where: str
    ) -> None:
        """Runs on a sender thread, after every earlier record with the same key settled."""
        try:
            if self.upsert is not None and key is not None:
                scope = Scope(self.stream_name, request.path, key)
                done = self.upsert.deliver(Keyed(request, values, scope, where))
            else:
                answer = self.run.sender.send(request, where)
                done = Delivered(self.template.operation, answer=answer)
                if request.method == "DELETE" and answer is not None and self.run.ledger:
                    # The deleted object's key must be created afresh if it comes back.
                    self.run.ledger.forget_object(values[self.template.params[-1]])
        except RecordRejected as exc:
            self._reject(key, where, str(exc), exc.status)
            return
        except RecordError as exc:
            self._reject(key, where, str(exc), None)
            return
        self.run.results.write(self._outcome(key, done))

    def _outcome(self, key: str | None, done: Delivered) -> Outcome:
        status = "dry_run" if self.run.dry_run else "succeeded"
        if done.entry is not None:
            obj = {"id": done.entry.aha_id, "reference_num": done.entry.reference_num,
                   "url": done.entry.url}
        else:
            obj = object_in(done.answer.data if done.answer else None, self.template.wrapper)
        return Outcome(
            self.stream_name,
            key,
            self.destination.endpoint,
            done.operation,
            status,
            http_status=done.answer.status if done.answer else None,
            aha_id=_text(obj.get("id")),
            reference_num=_text(obj.get("reference_num")),
            url=_text(obj.get("url")),
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


def _text(value: object) -> str | None:
    return None if value is None else str(value)


SINK_CLASSES: dict[str, type[AhaSink]] = {
    name: type(
        "".join(part.title() for part in name.split("_")) + "Sink",
        (AhaSink,),
        {"template": template, "__doc__": f"Sends each record with the `{name}` template."},
    )
    for name, template in TEMPLATES.items()
}
