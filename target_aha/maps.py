"""Stream maps that fail on a record say which expression failed, not only a traceback.

The SDK applies `stream_maps` expressions to each record before any sink sees it; an
expression such as `'<p>' + body + '</p>'` raises a bare TypeError on a record whose `body` is
null. `guard` wraps a stream map's `transform` so that any failure becomes `MapFailed`,
naming the map's stream and the expression, for the target to word with the input line and
the record.
"""

from __future__ import annotations

import traceback
from typing import Any

from singer_sdk.mapper import CustomStreamMap, StreamMap

_EVAL = CustomStreamMap._eval.__code__  # the frame that evaluates one expression


class MapFailed(Exception):
    """A stream map raised on one record; `expression` is the failing one, when known."""

    def __init__(self, alias: str, expression: str | None, error: Exception) -> None:
        cause = error.__cause__ or error  # the SDK's MapExpressionError hides the reason
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.alias = alias
        self.expression = expression
        self.error = error


def guard(stream_map: StreamMap) -> None:
    """Make `stream_map.transform` raise `MapFailed` on any error (once per map object)."""
    if "transform" in vars(stream_map):
        return
    transform = stream_map.transform

    def guarded(record: dict) -> dict | None:
        try:
            return transform(record)
        except Exception as exc:
            raise MapFailed(stream_map.stream_alias, failing_expression(exc), exc) from exc

    stream_map.transform = guarded  # type: ignore[method-assign]


def failing_expression(exc: BaseException) -> str | None:
    """`property: expression` (or `__filter__: expression`) of the innermost failing evaluation.

    Read from the SDK's evaluation frame (`CustomStreamMap._eval(expr, ..., property_name)`).
    """
    found: str | None = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code is _EVAL:
            local: dict[str, Any] = frame.f_locals
            found = f"{local.get('property_name') or '__filter__'}: {local.get('expr')}"
    return found
