"""Record → request: placeholders, consumed and excluded fields, wrapping, serialization,
and the bodies of batches.

Pure functions of a `Destination` and records; nothing here knows about HTTP sessions,
rate limits or the SDK.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from target_aha import placeholders
from target_aha.aha import MAILERS_OFF
from target_aha.custom import Custom
from target_aha.destination import Destination
from target_aha.errors import ConfigError, RecordError
from target_aha.ledger import Digests
from target_aha.wire import Request


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
    return "".join(
        literal + (encode_segment(values[name], name) if name else "")
        for literal, name in placeholders.split(path)
    )


PLAIN_JSON = frozenset({str, int, bool, type(None)})


class NotJson(ValueError):
    """A value JSON cannot carry (NaN, Infinity): `json.dumps` would write a bare token."""


def to_json_value(value: Any) -> Any:
    """Turn what the SDK parsed back into JSON: dates as ISO strings, decimals as numbers.

    NaN and Infinity (the SDK's reader accepts them) raise NotJson: they are not JSON.
    """
    if type(value) in PLAIN_JSON:  # most fields: nothing to convert (the hot path)
        return value
    if type(value) is float:
        if value - value == 0.0:  # False for NaN and for +-Infinity
            return value
        raise NotJson(repr(value))
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise NotJson(str(value))
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
    """The URL parameters for one record; raises RecordError if one is missing, or if one
    the template limits to a few values (`commentable_type`) has another."""
    values = {p: pattern.render(record, p) for p, pattern in dest.params.items()}
    for param, allowed in dest.template.choices:
        if param in values and values[param] not in allowed:
            raise RecordError(
                f"parameter '{param}' is {values[param]!r}; {dest.template.name} takes one of "
                f"{', '.join(allowed)}"
            )
    return values


BOOKKEEPING_PREFIX = "_sdc_"
"""Singer bookkeeping fields (`_sdc_extracted_at`, a file tap's `_sdc_last_modified`, the
SDK's `add_record_metadata`) start with this. They describe the extraction, not the object:
sent, they would land in Aha! and change the body hash on every run, turning an edit of three
rows into an update of all of them. To send one, rename it with a stream map."""


def is_bookkeeping(field: str) -> bool:
    """A field that is never sent nor hashed: Singer's `_sdc_*` bookkeeping."""
    return field.startswith(BOOKKEEPING_PREFIX)


def record_body(dest: Destination, record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a record sends: all but those consumed by the URL, those excluded, and
    Singer's `_sdc_*` bookkeeping fields (the body is also what the ledger hashes).

    A field holding NaN or Infinity (anywhere inside it) rejects the record, naming it.
    """
    dropped = dest.consumed | dest.exclude
    try:
        return {k: to_json_value(v) for k, v in record.items()
                if k not in dropped and not is_bookkeeping(k)}
    except NotJson:
        for key, value in record.items():
            try:
                if key not in dropped and not is_bookkeeping(key):
                    to_json_value(value)
            except NotJson as exc:
                raise RecordError(
                    f"field '{key}' holds {exc}, which JSON cannot carry; send null or a "
                    "number instead (fix the tap, or drop the field with exclude_attributes)"
                ) from exc
        raise


def build_request(
    dest: Destination, record: Mapping[str, Any], values: Mapping[str, str], mailers_off: bool,
    links: Mapping[str, str] | None = None,
) -> Request:
    """The request a stream sends for one record; raises RecordError if it cannot be built.

    `links` are the body fields the stream's `references` set (over the record's own).
    """
    body = record_body(dest, record)
    template = dest.template
    if links:
        wrapper = template.wrapper if dest.custom is None else dest.custom.wrap_key
        if wrapper is not None and list(body) == [wrapper] and isinstance(body[wrapper], dict):
            body = {wrapper: {**body[wrapper], **links}}  # already wrapped: fill it in
        else:
            body = {**body, **links}
    path = fill_path(template.path, values)
    if dest.custom is not None:
        if dest.custom.method == "DELETE" and not body:
            payload = None
        elif dest.custom.wrap_key is not None:
            payload = wrap(body, dest.custom.wrap_key, None)
        else:
            payload = body
        return _custom_request(dest, dest.custom, path, payload, mailers_off)
    return Request(
        method=template.method,
        path=path,
        query=dict(MAILERS_OFF) if mailers_off else {},
        body=wrap(body, template.wrapper, template.nest),
        headers=dict(dest.headers),
    )


def build_batch_request(
    dest: Destination, bodies: list[dict[str, Any]], mailers_off: bool
) -> Request:
    """The one request of a batch (a custom stream with `batch`): its body holds every record.

    `property`: `{...other_props, property_name: bodies}`. `code`: the expression's result;
    raises ExpressionError (a ConfigError) if it fails, and then nothing is sent.
    """
    custom = dest.custom
    if custom is None or custom.batch is None:
        raise ValueError(f"stream '{dest.stream}' is not batched")
    batch = custom.batch
    if batch.expression is None:
        payload: Any = {**batch.other_props, batch.property_name: bodies}
    else:
        payload = batch.expression.evaluate(bodies, dest.stream)
        if custom.content_format == "form" and not isinstance(payload, dict):
            raise ConfigError(
                f"streams.{dest.stream}.batch.code produced a list, but content_format "
                "'form' needs an object (form fields are key=value pairs); return an object "
                "such as {'records': records}, or use content_format 'json'."
            )
    return _custom_request(dest, custom, fill_path(custom.path, {}), payload, mailers_off)


def _custom_request(
    dest: Destination, custom: Custom, path: str, payload: Any, mailers_off: bool
) -> Request:
    """A custom endpoint's request: its URL's query, and disable_mailers only for Aha!."""
    query = dict(custom.query)
    if mailers_off and custom.on_account_host:
        query.update(MAILERS_OFF)
    return Request(
        method=custom.method,
        path=path,
        query=query,
        body=payload,
        headers=dict(dest.headers),
        origin=custom.origin,
        content_format=custom.content_format,
    )


def object_fields(body: Any, wrapper: str | None) -> dict[str, Any] | None:
    """The object's fields in a request body: inside the wrapper, or the body itself where
    there is none. None when the body is not an object (it is then only sent whole)."""
    inner = body.get(wrapper) if wrapper is not None and isinstance(body, dict) else body
    return inner if isinstance(inner, dict) else None


def with_fields(body: Any, wrapper: str | None, fields: dict[str, Any]) -> Any:
    """The body with the object's fields replaced by `fields`, still inside the wrapper."""
    if wrapper is not None and isinstance(body, dict) and isinstance(body.get(wrapper), dict):
        return {**body, wrapper: fields}
    return fields


def changed_only(
    fields: Mapping[str, Any], now: Digests, before: Digests
) -> dict[str, Any]:
    """The fields whose digest differs from what was last sent (spec §13): a top-level field
    whole, `custom_fields` with only its changed keys. A field the ledger never saw (new in
    the schema) counts as changed; one the record no longer has is left alone in Aha!."""
    changed: dict[str, Any] = {}
    for name, value in fields.items():
        digest, old = now[name], before.get(name)
        if isinstance(digest, Mapping):
            olds = old if isinstance(old, Mapping) else {}
            keys = {k: v for k, v in value.items() if digest[str(k)] != olds.get(str(k))}
            if keys:
                changed[name] = keys
        elif digest != old:
            changed[name] = value
    return changed
