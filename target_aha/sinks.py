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
from target_aha.results import Outcome, object_in
from target_aha.shaping import build_request

if TYPE_CHECKING:
    from target_aha.client import Answer, Request
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
        key = self.key_of(record)
        where = f"stream '{self.stream_name}', record " + (
            f"key {key!r}" if key is not None else f"#{self._position}"
        )
        try:
            request = build_request(self.destination, record, self.run.disable_mailers)
        except RecordError as exc:
            self._reject(key, where, str(exc), None)
            return
        order: list[Hashable] = []
        if key is not None:
            order.append(("key", self.stream_name, key))
        if request.method != "POST":
            order.append(("object", request.path))
        self.run.dispatcher.submit(functools.partial(self._deliver, request, key, where), order)

    def process_batch(self, context: dict) -> None:
        """Wait until every record handed over so far is settled (or raise the fatal error)."""
        self.run.dispatcher.join()

    def _deliver(self, request: Request, key: str | None, where: str) -> None:
        try:
            answer = self.run.sender.send(request, where)
        except RecordRejected as exc:
            self._reject(key, where, str(exc), exc.status)
            return
        self.run.results.write(self._outcome(key, answer))

    def _outcome(self, key: str | None, answer: Answer | None) -> Outcome:
        operation = self.template.operation
        if answer is None:
            return Outcome(self.stream_name, key, self.destination.endpoint, operation, "dry_run")
        obj = object_in(answer.data, self.template.wrapper)
        return Outcome(
            self.stream_name,
            key,
            self.destination.endpoint,
            operation,
            "succeeded",
            http_status=answer.status,
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
