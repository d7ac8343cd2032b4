"""Records checked against their SCHEMA by a compiled validator (fastjsonschema).

The SDK's default (jsonschema) is the largest CPU cost of a load: measured by
benchmarks/overhead.py, compiling the schema once made target-aha's CPU per record less than a
do-nothing SDK target's. A mismatch raises the SDK's `InvalidRecord` family (`SchemaMismatch`),
so a sink's `fail_on_record_validation_exception` works as the SDK documents it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import fastjsonschema
from singer_sdk.exceptions import InvalidJSONSchema, InvalidRecord
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from target_aha.sdk_compat import VALIDATION_FAILED


class SchemaMismatch(InvalidRecord):
    """A record does not match its stream's SCHEMA; its message is the problem alone (the
    target words it with the input line, the stream and the record)."""

    def __init__(self, problem: str, record: dict | None = None, *,
                 stops_run: bool = False) -> None:
        super().__init__(problem, record or {})
        self.args = (problem,)
        self.stops_run = stops_run
        """The sink fails on it (`fail_on_record_validation_exception`): the run stops."""


def _refuse_remote(uri: str) -> NoReturn:
    raise fastjsonschema.JsonSchemaDefinitionException(
        f"its $ref {uri[:200]!r} points outside the schema, and target-aha never fetches "
        "schemas (only refs within the schema, such as #/definitions/x, are read)"
    )


class _NoRemote(Mapping[str, Callable[[str], Any]]):
    """fastjsonschema's URI handlers: every scheme refused (else it would urlopen any $ref,
    http:// or file://, that a tap's SCHEMA names)."""

    def __getitem__(self, scheme: str) -> Callable[[str], Any]:
        return _refuse_remote

    def __contains__(self, scheme: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


NO_REMOTE = _NoRemote()


class RecordValidator(BaseJSONSchemaValidator):
    """A stream's compiled validator.

    Defaults are not filled in (a record is sent as the tap wrote it), and formats are checked
    only if the SDK's `validate_field_string_format` says so; `stops_run` is the sink's
    `fail_on_record_validation_exception`.
    """

    def __init__(self, schema: dict[str, Any], *, validate_formats: bool,
                 stops_run: bool = True) -> None:
        super().__init__(schema)
        self.stops_run = stops_run
        try:
            self._check = fastjsonschema.compile(
                schema, use_default=False, use_formats=validate_formats, handlers=NO_REMOTE
            )
        except (fastjsonschema.JsonSchemaDefinitionException, re.error) as exc:
            raise InvalidJSONSchema(f"the stream's schema cannot be compiled: {exc}") from exc

    def validate(self, record: dict) -> None:
        """Raise SchemaMismatch if the record does not match the stream's schema."""
        try:
            self._check(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise SchemaMismatch(exc.message.replace("data", "the record", 1), record,
                                 stops_run=self.stops_run) from exc


class QuietMismatch(logging.Filter):
    """Drops the SDK's traceback of a `SchemaMismatch` that stops the run: the target words
    that error for users instead (a skipped record's log line is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the log line is shown."""
        error = record.exc_info[1] if record.exc_info else None
        return not (record.msg == VALIDATION_FAILED and isinstance(error, SchemaMismatch)
                    and error.stops_run)


QUIET_MISMATCH = QuietMismatch()
