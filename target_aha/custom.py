"""The `custom` endpoint's own settings: method, URL, content format, wrap key and batching.

Checked once at start-up, like every stream entry, so that a wrong method, a malformed URL,
another host without `allow_other_hosts` or a bad `batch` is reported before any record is
read. The URL's `{field}` placeholders become the stream's parameters (see destination.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from target_aha import placeholders
from target_aha.errors import ConfigError
from target_aha.expressions import BatchExpression
from target_aha.redact import REDACTOR, mask_url
from target_aha.urls import check_url_text, parse_http_url, same_origin
from target_aha.wire import CONTENT_TYPES

METHODS = ("POST", "PUT", "PATCH", "DELETE")
CUSTOM_KEYS = frozenset(
    {"method", "url", "content_format", "wrap_key", "allow_other_hosts", "batch"}
)
BATCH_ALGORITHMS = ("property", "code")
DEFAULT_BATCH_SIZE = 100


@dataclass(frozen=True)
class Batch:
    """`batch`: how many records go in one call and how their body is built."""

    size: int
    algorithm: str
    property_name: str = "records"
    other_props: Mapping[str, Any] = field(default_factory=dict)
    expression: BatchExpression | None = None


@dataclass(frozen=True)
class Custom:
    """A custom endpoint, resolved.

    `path` is the URL's path with `{field}` placeholders, relative to base_url when `origin`
    is None, else on `origin` (an absolute URL outside base_url). `on_account_host`: the URL
    is on base_url's server, so the API key and `disable_mailers` go with it.
    """

    method: str
    path: str
    origin: str | None
    on_account_host: bool
    query: Mapping[str, str] = field(default_factory=dict)
    content_format: str = "json"
    wrap_key: str | None = None
    batch: Batch | None = None


def parse_custom(entry: Mapping[str, Any], where: str, base_url: str) -> Custom:
    """Resolve the custom settings of a `streams` entry; ConfigError on anything wrong."""
    method = entry.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ConfigError(f"{where}.method is {method!r}; it must be one of {', '.join(METHODS)}.")
    content_format = entry.get("content_format", "json")
    if content_format not in CONTENT_TYPES:
        raise ConfigError(
            f"{where}.content_format is {content_format!r}; it must be 'json' (the default) "
            "or 'form' (application/x-www-form-urlencoded with Rails-style keys)."
        )
    wrap_key = entry.get("wrap_key")
    if wrap_key is not None and (not isinstance(wrap_key, str) or not wrap_key):
        raise ConfigError(f"{where}.wrap_key must be a key name such as \"feature\".")
    allow_other_hosts = entry.get("allow_other_hosts", False)
    if not isinstance(allow_other_hosts, bool):
        raise ConfigError(f"{where}.allow_other_hosts must be true or false.")
    path, origin, query = _split_url(entry.get("url"), f"{where}.url", base_url)
    on_account_host = origin is None or same_origin(origin, base_url)
    shown = mask_url(str(entry.get("url")))
    if not on_account_host and not allow_other_hosts:
        raise ConfigError(
            f"{where}.url {shown!r} is not on the Aha! account's host "
            f"({urlsplit(base_url).netloc}). Records would leave Aha!: if that is intended, "
            "set allow_other_hosts: true on this stream (the API key is never sent to "
            "another host)."
        )
    batch = _parse_batch(entry.get("batch"), f"{where}.batch")
    if batch is not None:
        if placeholders.names(path):
            raise ConfigError(
                f"{where}.url {shown!r} reads record fields, but a batch is one "
                "call for many records; use a fixed URL with batch, or drop batch."
            )
        if wrap_key is not None:
            raise ConfigError(
                f"{where}.wrap_key does not apply to batches; put the wrapper in "
                "batch.other_props or build it in batch.code."
            )
    return Custom(
        method=method.upper(),
        path=path,
        origin=origin,
        on_account_host=on_account_host,
        query=query,
        content_format=content_format,
        wrap_key=wrap_key,
        batch=batch,
    )


def _split_url(url: object, where: str, base_url: str) -> tuple[str, str | None, dict[str, str]]:
    """(path template, origin or None, literal query) of a configured URL.

    An absolute URL is read once by `parse_http_url` (the reading the HTTP client connects
    with); its origin decides everything else. Secret-looking query values are registered
    with the redactor, so messages never show them.
    """
    example = 'such as "/products/PRJ1/ideas" or "https://mycompany.aha.io/api/v1/ideas/{id}"'
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where} is required: the endpoint's URL, {example}.")
    REDACTOR.add_url(url)
    shown = repr(mask_url(url))
    check_url_text(url, where)
    try:
        names = [name for _, name in placeholders.split(url) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"{where} {shown} is malformed ({exc}); {example}.") from exc
    if "" in names or any(not n.isidentifier() for n in names):
        raise ConfigError(
            f"{where} {shown} has a placeholder that is not a field name; write {{field}}."
        )
    parts = urlsplit(url)
    if parts.fragment:
        raise ConfigError(f"{where} {shown} has a #fragment, which is never sent; remove it.")
    if any("{" in piece for piece in (parts.scheme, parts.netloc, parts.query)):
        raise ConfigError(
            f"{where} {shown} has a placeholder outside the path; record fields can only "
            "fill path segments."
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if not parts.scheme and not parts.netloc:
        return "/" + parts.path.lstrip("/"), None, query
    parsed = parse_http_url(url, where, f"; {example}")
    base = urlsplit(base_url.rstrip("/"))
    if same_origin(url, base_url) and (
        parsed.path == base.path or parsed.path.startswith(base.path + "/")
    ):
        return parsed.path[len(base.path):] or "/", None, query
    return parsed.path or "/", parsed.root, query


def _parse_batch(value: object, where: str) -> Batch | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f'{where} must be an object such as {{"size": 100, ...}}.')
    algorithm = value.get("algorithm", "property")
    allowed = {"size", "algorithm"} | (
        {"property_name", "other_props"} if algorithm == "property" else {"code"}
    )
    if algorithm not in BATCH_ALGORITHMS:
        raise ConfigError(f"{where}.algorithm is {algorithm!r}; it must be 'property' or 'code'.")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(
            f"{where} has unknown setting(s) {', '.join(unknown)}; algorithm "
            f"'{algorithm}' takes: {', '.join(sorted(allowed))}."
        )
    size = value.get("size", DEFAULT_BATCH_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{where}.size must be a whole number of records >= 1, not {size!r}.")
    if algorithm == "code":
        expression = BatchExpression(value.get("code"), f"{where}.code")
        return Batch(size, algorithm, expression=expression)
    property_name = value.get("property_name", "records")
    other_props = value.get("other_props", {})
    if not isinstance(property_name, str) or not property_name:
        raise ConfigError(f"{where}.property_name must be a key name such as \"records\".")
    if not isinstance(other_props, Mapping):
        raise ConfigError(f"{where}.other_props must be an object.")
    if property_name in other_props:
        raise ConfigError(
            f"{where}.other_props has the key {property_name!r}, which property_name fills "
            "with the records; remove it from other_props or choose another property_name."
        )
    return Batch(size, algorithm, property_name, dict(other_props))
