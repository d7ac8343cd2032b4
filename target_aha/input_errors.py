"""Input errors worded for users: one table from (message, error) to what to say.

The SDK raises its own exceptions for bad input (a record before its SCHEMA, a missing key
property, an invalid schema) and a stream map can fail on any record; each ends the run with
`messages.cannot_load`'s one wording: the input line, what is wrong, what to do. `WORDING` is
the one table of those translations; `CountingReader` applies it to every line it reads, and
the target to the messages it handles (`worded`), where the stream and record are known.
"""

from __future__ import annotations

import json
import typing as t
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from singer_sdk.exceptions import (
    InvalidJSONSchema,
    MapExpressionError,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
    StreamMapConfigError,
)
from singer_sdk.io_base import SingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from target_aha.errors import InputError
from target_aha.maps import MapFailed
from target_aha.messages import (
    KNOWN_TYPES,
    NOT_DONE,
    bounded_lines,
    cannot_load,
    check_message,
    too_deep,
)
from target_aha.sdk_compat import note_current_line
from target_aha.validation import SchemaMismatch


class NoSchemaYet(Exception):
    """A message of a stream whose SCHEMA has not come yet (the SDK would raise a KeyError)."""


ANY = "any"
"""The message kind of a translation that holds wherever the error comes from."""

MAPS_ADVICE = "Fix the stream's entry in stream_maps."
TAP_ADVICE = "Check the tap's output against the Singer specification."


@dataclass(frozen=True)
class Wording:
    """How one input error is said: `problem` is formatted with the error's context
    (`error`, `stream`, `where`, `expression`); `explained` raises it as the SDK's error
    class too (an `EXPLAINED` class), so a caller can still catch the SDK's exception."""

    problem: str
    advice: str
    explained: bool = True


WORDING: dict[tuple[str, type[Exception]], Wording] = {
    (ANY, InvalidInputLine): Wording("{error}", TAP_ADVICE),
    (ANY, RecordsWithoutSchemaException): Wording(
        "{error}", "Every RECORD needs a SCHEMA message of its stream before it; check the "
        "tap's output."),
    (ANY, MissingKeyPropertiesError): Wording(
        "{error}", "Every record needs the key properties its SCHEMA names; fix the tap's "
        "output or its key_properties, or set the stream's key_property in `streams`."),
    (ANY, SchemaMismatch): Wording(
        "{error}", "Every record must match its stream's SCHEMA; fix the tap's output or its "
        "schema, or set validate_records: false to send records as the tap wrote them."),
    (ANY, InvalidJSONSchema): Wording("{error}", "Fix the tap's schema (or its catalog)."),
    (ANY, StreamMapConfigError): Wording("{error}", MAPS_ADVICE),
    (ANY, MapExpressionError): Wording("{error}", MAPS_ADVICE),
    ("SCHEMA", MapFailed): Wording(
        "the stream map{expression} of stream '{stream}' cannot be set up: {error}",
        MAPS_ADVICE, explained=False),
    ("ACTIVATE_VERSION", NoSchemaYet): Wording(
        "ACTIVATE_VERSION for stream '{stream}' came before any SCHEMA of that stream",
        "Check the tap's output: every stream's SCHEMA comes before its messages.",
        explained=False),
    ("RECORD", MapFailed): Wording(
        "the stream map{expression} of stream '{stream}' failed on {where}: {error}",
        "Fix the expression in stream_maps so that it works for this record: a field may be "
        "null or missing (guard it, as in `('<p>' + body + '</p>') if body else None`); or "
        "fix the tap's output.", explained=False),
}
for _cls in (SchemaMismatch, MissingKeyPropertiesError):
    WORDING["RECORD", _cls] = Wording("stream '{stream}', {where}: {error}",
                                      WORDING[ANY, _cls].advice)

EXPLAINED: dict[type[Exception], type[InputError]] = {
    cls: type(cls.__name__, (InputError, cls), {"__doc__": f"{cls.__name__}, worded for users."})
    for kind, cls in WORDING if kind == ANY
}
"""Input errors as the SDK names them, also `InputError`s so the CLI prints them plainly."""


def translate(line: int, kind: str, exc: Exception, **context: Callable[[], str] | str
              ) -> InputError | None:
    """The worded error of `exc` raised while handling a `kind` message, or None if the
    table has none. `context` values may be callables, called only when needed."""
    for cls in type(exc).__mro__:
        wording = WORDING.get((kind, cls)) or WORDING.get((ANY, cls))
        if wording is not None:
            break
    else:
        return None
    expression = getattr(exc, "expression", None)
    values = {name: value() if callable(value) else value for name, value in context.items()
              if "{" + name + "}" in wording.problem}
    problem = wording.problem.format(
        error=exc, expression=f" ({expression})" if expression else "", **values
    )
    explained = EXPLAINED.get(cls) if wording.explained else None
    return cannot_load(line, problem, wording.advice, explained or InputError)


@contextmanager
def worded(line: Callable[[], int], kind: str, **context: Callable[[], str] | str
           ) -> Iterator[None]:
    """Raise the worded error of what the block raises (if `WORDING` has one)."""
    try:
        yield
    except InputError:
        raise  # already worded, with its line
    except Exception as exc:
        error = translate(line(), kind, exc, **context)
        if error is None:
            raise
        raise error from exc


class CountingReader(SingerReader):
    """The SDK's reader, counting lines so that input errors can say where they are.

    Its loop is the SDK's (`GenericSingerReader.process_lines`), with every line read with a
    bound and checked (`messages.check_message`) before the SDK handles it.
    """

    line_number = 0

    def deserialize_json(self, line: str) -> dict:
        """Parse one line; bad JSON becomes an `InputError` naming the line."""
        self.line_number += 1
        try:
            # NaN and Infinity parse (Python taps write them); shaping rejects such a record
            # under on_record_error, naming the field, since Aha! cannot be sent them.
            return deserialize_json(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"Input line {self.line_number} is not valid JSON ({exc.msg} at column "
                f"{exc.colno}): "
                f"{line[:200]!r}. target-aha reads Singer messages, one JSON object per line; "
                f"check the tap's output. {NOT_DONE}"
            ) from exc
        except RecursionError as exc:
            raise too_deep(self.line_number) from exc

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, t.Callable[[dict], None]]
    ) -> t.Counter[str]:
        """Read the input; malformed input ends the run with a message naming the line."""
        stats: t.Counter[str] = Counter()
        with worded(lambda: self.line_number, ANY):
            for text in bounded_lines(file_input or self.default_input, self):
                note_current_line(self, text)
                message = check_message(self.deserialize_json(text), text, self.line_number)
                kind = KNOWN_TYPES[message["type"]]
                callbacks[kind](message)
                stats[kind] += 1
        return stats
