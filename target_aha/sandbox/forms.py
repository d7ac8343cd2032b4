"""Request bodies: JSON, or form-encoded with Rails-style nested keys.

Aha! is a Rails application, so besides JSON it takes `application/x-www-form-urlencoded`
bodies whose keys nest like `feature[name]=x&feature[tags][]=a`. The target's `form` content
format sends those; decoding them into the same structure as JSON lets the sandbox validate and
store both alike. The decoder follows Rack's `normalize_params`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

FORM_TYPE = "application/x-www-form-urlencoded"

_HEAD = re.compile(r"\A[\[\]]*([^\[\]]+)\]*")
_LIST_OF_OBJECTS = re.compile(r"\A\[\]\[([^\[\]]+)\]\Z")
_LIST_REST = re.compile(r"\A\[\](.+)\Z")


class FormError(ValueError):
    """Form keys that contradict each other (`a=1&a[b]=2`), which Rails rejects with 400."""


def parse_body(raw: bytes, content_type: str) -> tuple[Any, str | None]:
    """The decoded body and, if it could not be decoded, why (for a 400 on writes).

    An empty body is None. Anything that is not a form is read as JSON whatever its declared
    type, as Aha! does for API clients that forget the header.
    """
    if not raw.strip():
        return None, None
    text = raw.decode("utf-8", errors="replace")
    if content_type.split(";", maxsplit=1)[0].strip().lower() == FORM_TYPE:
        try:
            return decode_form(text), None
        except FormError as error:
            return None, f"Invalid form parameters: {error}"
    try:
        return json.loads(text), None
    except ValueError:
        return None, "Request body is not valid JSON"


def decode_form(text: str) -> dict[str, Any]:
    """`feature[name]=x&feature[tags][]=a` → `{"feature": {"name": "x", "tags": ["a"]}}`."""
    params: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        _normalize(params, name, value)
    return params


def _normalize(params: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    match = _HEAD.match(name)
    if match is None:
        return params
    key, after = match.group(1), name[match.end():]
    if after == "":
        params[key] = value
    elif after == "[":
        params[name] = value
    elif after == "[]":
        _child(params, key, list).append(value)
    elif nested := (_LIST_OF_OBJECTS.match(after) or _LIST_REST.match(after)):
        child_key = nested.group(1)
        items = _child(params, key, list)
        if items and isinstance(items[-1], dict) and not _has_key(items[-1], child_key):
            _normalize(items[-1], child_key, value)
        else:
            items.append(_normalize({}, child_key, value))
    else:
        _normalize(_child(params, key, dict), after, value)
    return params


def _child(params: dict[str, Any], key: str, kind: type) -> Any:
    """params[key], created as an empty `kind` if absent; a clash of types is a FormError."""
    current = params.setdefault(key, kind())
    if not isinstance(current, kind):
        raise FormError(f"expected {kind.__name__} for key '{key}'")
    return current


def _has_key(params: dict[str, Any], name: str) -> bool:
    """Whether the nested key `a[b]` is already set in `params` (starts a new list item)."""
    if "[]" in name:
        return False
    current: Any = params
    for part in re.split(r"[\[\]]+", name):
        if not part:
            continue
        if not isinstance(current, dict) or part not in current:
            return False
        current = current[part]
    return True
