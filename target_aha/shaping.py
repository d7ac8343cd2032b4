"""Record → request: placeholders, consumed and excluded fields, wrapping, serialization.

Pure functions of a `Destination` and a record; nothing here knows about HTTP sessions,
rate limits or the SDK.
"""

from __future__ import annotations

import datetime as dt
import decimal
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from target_aha.client import Request
from target_aha.destination import Destination
from target_aha.errors import RecordError


def encode_segment(value: str, param: str) -> str:
    """Percent-encode a value as exactly one path segment.

    `/`, `?`, `#` and `%` are encoded, so a record can never change the path. `.` and `..`
    cannot be encoded (HTTP clients collapse them), so they reject the record instead.
    """
    if value in {"", ".", ".."}:
        raise RecordError(
            f"parameter '{param}' is {value!r}, which cannot be used as a path segment"
        )
    return quote(value, safe="")


def fill_path(path: str, values: Mapping[str, str]) -> str:
    """Fill a path template's `{name}` placeholders with encoded values."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(path):
        out.append(literal)
        if name:
            out.append(encode_segment(values[name], name))
    return "".join(out)


def to_json_value(value: Any) -> Any:
    """Turn what the SDK parsed back into JSON: dates as ISO strings, decimals as numbers."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return value


def wrap(body: dict[str, Any], wrapper: str | None, nest: str | None) -> dict[str, Any] | None:
    """Put the body under the template's wrapper key (and its nest key), unless it already is."""
    if wrapper is None:
        return None
    if list(body) == [wrapper]:
        return body
    if nest is not None and nest not in body:
        body = {nest: body}
    return {wrapper: body}


def param_values(dest: Destination, record: Mapping[str, Any]) -> dict[str, str]:
    """The template's parameters for one record; raises RecordError if one is missing."""
    return {p: pattern.render(record, p) for p, pattern in dest.params.items()}


def build_request(
    dest: Destination, record: Mapping[str, Any], values: Mapping[str, str], mailers_off: bool
) -> Request:
    """The request a template sends for one record; raises RecordError if it cannot be built."""
    dropped = dest.consumed | dest.exclude
    body = {k: to_json_value(v) for k, v in record.items() if k not in dropped}
    template = dest.template
    return Request(
        method=template.method,
        path=fill_path(template.path, values),
        query={"disable_mailers": "true"} if mailers_off else {},
        body=wrap(body, template.wrapper, template.nest),
        headers=dict(dest.headers),
    )
