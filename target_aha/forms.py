"""Rails form encoding: the body of a `content_format: form` request as it goes on the wire."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def encode_form(body: Any) -> str:
    """Rails-style form encoding: `{"f": {"n": "x", "t": ["a"]}}` → `f[n]=x&f[t][]=a`.

    Lists of objects become `a[][x]=1&a[][y]=2`, which Rails reads back as `[{x, y}]`.
    Values go as text (true/false for booleans, empty for null); empty lists and objects
    cannot be expressed in a form and are left out.
    """
    if not isinstance(body, dict):
        raise TypeError("a form body must be an object")
    pairs: list[tuple[str, str]] = []
    for key, value in body.items():
        _form_pairs(str(key), value, pairs)
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)


def _form_pairs(name: str, value: Any, pairs: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _form_pairs(f"{name}[{key}]", item, pairs)
    elif isinstance(value, list | tuple):
        for item in value:
            _form_pairs(f"{name}[]", item, pairs)
    elif isinstance(value, bool):
        pairs.append((name, "true" if value else "false"))
    else:
        pairs.append((name, "" if value is None else str(value)))
