"""The `{name}` placeholder syntax, read in one place.

Paths of the catalog (`/releases/{release_id}/features`), parameter values of `streams`
(`"PRJ1-R-{n}"`) and custom URLs (`/ideas/{id}`) all use it. One reading keeps them alike: a
doubled brace is a literal brace, and a format spec or conversion after the name is ignored
(`{id:x}` reads `id`), as Python's `str.format` reads them.
"""

from __future__ import annotations

import functools
import string

Parts = tuple[tuple[str, str | None], ...]
"""(literal text, placeholder name after it) pairs; the name is None after the last literal
and "" for an empty `{}`."""


@functools.lru_cache(maxsize=512)
def split(text: str) -> Parts:
    """A text split into (literal, placeholder) pairs, once per text (templates repeat).

    Raises ValueError for a text that is not well formed (`{unclosed`, a single `}`).
    """
    return tuple((literal, name) for literal, name, _, _ in string.Formatter().parse(text))


def names(text: str) -> tuple[str, ...]:
    """The non-empty placeholder names of a text, in order of appearance."""
    return tuple(name for _, name in split(text) if name)
