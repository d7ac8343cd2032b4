"""Stream maps that fail on a record say which expression failed, not only a traceback.

The SDK applies `stream_maps` expressions to each record before any sink sees it; an
expression such as `'<p>' + body + '</p>'` raises a bare TypeError on a record whose `body` is
null, and an `__alias__` expression can fail the same way when a SCHEMA registers its stream.
`guard` (a stream map's `transform`) and `guard_mapper` (the mapper's registration of a
stream) turn any such failure into `MapFailed`, naming the expression, for the target to
word with the input line, the stream and the record.
"""

from __future__ import annotations

import traceback
from typing import Any

from singer_sdk.mapper import CustomStreamMap, PluginMapper, StreamMap

from target_aha.sdk_compat import ALIAS_EVAL_CODE, MAP_EVAL_CODE


class MapFailed(Exception):
    """A stream map raised; `expression` is the failing one (`property: expression`), if known."""

    def __init__(self, error: Exception) -> None:
        cause = error.__cause__  # the SDK's MapExpressionError names the expression, not why
        said = f"{type(error).__name__}: {str(error).rstrip('.')}"
        super().__init__(f"{said} ({type(cause).__name__}: {cause})" if cause else said)
        self.expression = failing_expression(error)


def guard(stream_map: StreamMap) -> None:
    """Make `stream_map.transform` raise `MapFailed` on any error (once per map object), and
    keep a record that the map left empty instead of dropping it unseen."""
    if "transform" in vars(stream_map):
        return
    transform = stream_map.transform

    def guarded(record: dict) -> dict | None:
        try:
            result = transform(record)
            if result is None and isinstance(stream_map, CustomStreamMap):
                # The SDK returns None for a record its `__filter__` drops, and also for one
                # the map left empty: that one is kept, so that it gets its results line.
                return {} if stream_map.get_filter_result(record) else None
        except Exception as exc:
            raise MapFailed(exc) from exc
        return result

    stream_map.transform = guarded  # type: ignore[method-assign]


def guard_mapper(mapper: PluginMapper) -> None:
    """Make `mapper.register_raw_stream_schema` (a SCHEMA's stream maps) raise `MapFailed`."""
    register = mapper.register_raw_stream_schema

    def guarded(stream_name: str, schema: dict, key_properties: Any) -> None:
        try:
            register(stream_name, schema, key_properties)
        except Exception as exc:
            raise MapFailed(exc) from exc

    mapper.register_raw_stream_schema = guarded  # type: ignore[method-assign]


def failing_expression(exc: BaseException) -> str | None:
    """`property: expression` (`__filter__: ...`, `__alias__: ...`) of the innermost failing
    evaluation, read from the SDK's evaluation frame (`CustomStreamMap._eval(expr, ...,
    property_name)` or `PluginMapper._eval_stream(expr, ...)`)."""
    found: str | None = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        local: dict[str, Any] = frame.f_locals
        if frame.f_code is MAP_EVAL_CODE:
            found = f"{local.get('property_name') or '__filter__'}: {local.get('expr')}"
        elif frame.f_code is ALIAS_EVAL_CODE:
            found = f"__alias__: {local.get('expr')}"
    return found
