"""Singer input lines: read with a bound, parse, and check the envelope before the SDK sees it.

The SDK trusts its input: a line that is a JSON number, a SCHEMA whose `properties` is 5 or a
BATCH message ends in a traceback from deep inside it. Every check a line can fail is made
here, once, so that each one ends in the same kind of message: the input line, the stream
where there is one, what is wrong and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any, Protocol

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from singer_sdk.io_base import SingerMessageType
from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

from target_aha.errors import InputError

MAX_LINE_CHARS = 100 * 2**20
"""One input line is at most 100 MiB of text; a longer one is refused, not held in memory."""

MAX_DEPTH = 100
"""JSON nested deeper than this is refused (Python's parser and every step after it recurse)."""

KNOWN_TYPES = {t.value: t for t in SingerMessageType if t is not SingerMessageType.BATCH}
"""The Singer messages target-aha reads, by their `type` (BATCH has its own refusal)."""

_SHOWN = 200  # characters of a bad line quoted in a message

NOT_DONE = "Nothing from this line on was sent and no STATE was emitted for it."
"""How every input error ends: what the run did not do."""


def cannot_load(
    line: int, problem: str, advice: str, kind: type[InputError] = InputError
) -> InputError:
    """The one wording of an input error: where, what, what to do, and what was not done."""
    problem = " ".join(problem.split()).rstrip(".")
    return kind(f"Input line {line} cannot be loaded: {problem}. {advice} {NOT_DONE}")


class LineCounter(Protocol):
    """The reader: it counts the lines it has parsed."""

    line_number: int


def bounded_lines(stream: IO[str], reader: LineCounter) -> Iterator[str]:
    """The lines of `stream`, refusing one longer than `MAX_LINE_CHARS` before it is all read.

    Standard input is read as bytes and each line decoded as UTF-8 (Singer's encoding, whatever
    the locale says), so that a line that is not UTF-8 is refused by its own number.
    """
    buffer = getattr(stream, "buffer", None)
    lines: Iterator[str | bytes] = (
        iter(lambda: buffer.readline(MAX_LINE_CHARS + 1), b"") if buffer is not None
        else iter(lambda: stream.readline(MAX_LINE_CHARS + 1), "")
    )
    for line in lines:
        number = reader.line_number + 1
        if len(line) > MAX_LINE_CHARS:
            raise cannot_load(
                number,
                f"the line is longer than {MAX_LINE_CHARS // 2**20} MiB",
                "A Singer message is one JSON object per line; check the tap's output, or "
                "split such records upstream.",
            )
        if isinstance(line, str):
            yield line
            continue
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise cannot_load(
                number,
                f"it is not UTF-8 text (byte {line[exc.start]:#04x} at column {exc.start + 1})",
                "Singer messages are UTF-8; check the tap's output and its encoding setting.",
            ) from exc


def too_deep(line: int) -> InputError:
    """The error of a line nested deeper than `MAX_DEPTH`."""
    return cannot_load(
        line,
        f"its JSON is nested more than {MAX_DEPTH} levels deep",
        "target-aha reads records nested at most that deep; flatten the field upstream "
        "(or with the SDK's flattening_enabled) or drop it with a stream map (field: __NULL__).",
    )


def check_depth(message: object, line: int) -> None:
    """Refuse a message nested deeper than `MAX_DEPTH`."""
    todo: list[tuple[object, int]] = [(message, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise too_deep(line)
        if isinstance(value, dict):
            todo.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            todo.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))


def check_message(message: object, text: str, line: int) -> dict[str, Any]:
    """The message parsed from `text` if target-aha can load it, else an `InputError`.

    A SCHEMA's `key_properties` given as one string is read as that one key property
    (the SDK does the same for `bookmark_properties`), so `"id"` is `["id"]`, never the
    characters `i` and `d`.
    """
    if not isinstance(message, dict):
        raise cannot_load(
            line,
            f"it is a JSON {json_kind(message)}, not a Singer message (a JSON object with a "
            f"\"type\"): {text.strip()[:_SHOWN]!r}",
            "Check the tap's output; something other than the tap may be writing to its "
            "standard output.",
        )
    if text.count("{") + text.count("[") > MAX_DEPTH:
        check_depth(message, line)
    kind = message.get("type")
    if kind == "RECORD" and "record" in message and isinstance(message.get("stream"), str):
        return message  # the hot path: one check per record, the rest below
    if kind == "BATCH":
        raise cannot_load(
            line,
            f"it is a BATCH message{_of(message)}, and target-aha does not read batch files",
            "Run the tap without its batch_config setting, so that it sends RECORD messages.",
        )
    if not isinstance(kind, str) or kind not in KNOWN_TYPES:
        problem = (
            'the message has no "type"' if kind is None
            else f"its type {_shown(kind)} is not a Singer message type "
            f"({', '.join(KNOWN_TYPES)})"
        )
        raise cannot_load(line, problem, "Check the tap's output.")
    if kind == "STATE":
        _require(message, line, "value", None)
    elif kind == "ACTIVATE_VERSION":
        _require(message, line, "stream", str)
        _require(message, line, "version", None)
    elif kind == "RECORD":
        _require(message, line, "stream", str)
        _require(message, line, "record", None)  # not an object: the sink rejects it
    else:
        _check_schema_message(message, line)
    return message


def _check_schema_message(message: dict[str, Any], line: int) -> None:
    _require(message, line, "stream", str)
    _require(message, line, "schema", dict)
    where = f"the SCHEMA of stream '{message['stream']}'"
    schema = message["schema"]
    if not isinstance(schema.get("properties"), dict):
        raise cannot_load(
            line,
            f'{where} has no "properties" object',
            "A stream's schema must be a JSON Schema object with its record's properties; "
            "fix the tap's schema (or its catalog).",
        )
    try:
        validator_for(schema, default=DEFAULT_JSONSCHEMA_VALIDATOR).check_schema(schema)
    except SchemaError as exc:
        raise cannot_load(
            line,
            f"{where} is not valid JSON Schema: at {exc.json_path}, {exc.message[:_SHOWN]}",
            "Fix the tap's schema (or its catalog), or override it with the tap's "
            "schema setting in Meltano.",
        ) from exc
    keys = message.get("key_properties")
    if isinstance(keys, str):
        message["key_properties"] = [keys]
    elif keys is not None and not (
        isinstance(keys, list) and all(isinstance(k, str) for k in keys)
    ):
        raise cannot_load(
            line,
            f"{where} has key_properties {_shown(keys)}, not a list of "
            "property names",
            'Give key_properties as a list of names (["id"]), or set the stream\'s '
            "key_property in `streams`.",
        )


def _require(message: dict[str, Any], line: int, field: str, kind: type | None) -> None:
    """`field` must be present (and, if `kind` is given, a non-empty value of that type)."""
    if field not in message:
        problem = f'has no "{field}"'
    elif kind is None or (isinstance(message[field], kind) and message[field]):
        return
    else:
        expected = "a stream name" if kind is str else "a JSON object"
        problem = f'has "{field}": {_shown(message[field])}, not {expected}'
    raise cannot_load(
        line,
        f"the {message['type']} message{_of(message)} {problem}",
        "Check the tap's output against the Singer specification.",
    )


def _shown(value: object) -> str:
    """A value from the input as JSON, cut short (numbers are Decimals: shown as text)."""
    return json.dumps(value, default=str)[:_SHOWN]


def _of(message: dict[str, Any]) -> str:
    stream = message.get("stream")
    return f" of stream '{stream}'" if isinstance(stream, str) and stream else ""


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words (null, string, list, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "number"
