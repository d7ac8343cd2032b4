"""URL policy: which URLs the configuration may name, and which server a URL means.

Origins are read the way urllib3 (which requests uses) reads them when it connects, so a
check made here and the connection the transport opens can never disagree. `same_origin` is
the one comparison behind "the API key goes only to the account's origin" (the client) and
"this custom URL is on the account's host" (custom endpoints).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from target_aha.errors import ConfigError
from target_aha.redact import mask_url

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts that may be reached over plain http (the local sandbox, a local receiver)."""

Origin = tuple[str, str, int | None]
"""(scheme, host, port), lower case, default port filled in."""


@dataclass(frozen=True)
class Url:
    """A URL from the configuration, read once: what the HTTP client will connect to.

    `root` is `scheme://host[:port]` as written (safe: the parse agreed with urllib3's),
    `origin` the (scheme, host, port) comparisons use, `path` and `query` as written.
    """

    root: str
    origin: Origin
    path: str
    query: str


def parse_http_url(url: str, where: str, hint: str = "") -> Url:
    """An http(s) URL with a host, plain http only for loopback hosts, or a ConfigError.

    The one rule for base_url, absolute custom URLs and webhooks: the API key and records
    never travel unencrypted to another machine, and a URL means one server. Backslashes,
    userinfo, spaces and control characters are refused, and so is any URL that urllib3 (the
    connection) and `urlsplit` (the checks) read differently. Messages show the URL masked.
    """
    shown = repr(mask_url(url))
    check_url_text(url, where)
    try:
        ours = urlsplit(url)
        ours_port = ours.port
        theirs = parse_url(url)
    except (ValueError, LocationParseError) as exc:
        raise ConfigError(f"{where} {shown} is not a valid URL ({_reason(exc)}){hint}.") from exc
    if ours.scheme.lower() not in ("http", "https") or not ours.hostname:
        raise ConfigError(f"{where} {shown} is not an http(s) URL{hint}.")
    if "@" in ours.netloc or theirs.auth is not None:
        raise ConfigError(
            f"{where} {shown} has a user name or password before the host (user:pw@); "
            "remove it: Aha! takes the API key from api_key, another host its credentials "
            "from request_headers."
        )
    if ours.fragment or "#" in url:
        raise ConfigError(f"{where} {shown} has a #fragment, which is never sent; remove it.")
    origin = _origin(theirs.scheme, theirs.host, theirs.port)
    if origin != _origin(ours.scheme, ours.hostname, ours_port) or unquote(
        theirs.path or ""
    ) != unquote(ours.path) or unquote(theirs.query or "") != unquote(ours.query):
        raise ConfigError(
            f"{where} {shown} is read differently by the HTTP client than as written "
            "(dot segments such as /../, or a host name that is not plain ASCII); write "
            f"the URL the way it is meant to be sent{hint}."
        )
    if origin[0] == "http" and origin[1] not in LOOPBACK:
        raise ConfigError(
            f"{where} {shown} uses plain http; use https (http is only allowed for loopback "
            "hosts such as the local sandbox)."
        )
    return Url(f"{ours.scheme}://{ours.netloc}", origin, ours.path, ours.query)


def check_url_text(url: str, where: str) -> None:
    """Refuse what no URL in the configuration may contain: backslashes, spaces, controls."""
    if "\\" in url:
        raise ConfigError(
            f"{where} {mask_url(url)!r} contains a backslash, which HTTP clients read as "
            "the end of the host name; write / (or %5C inside a path segment)."
        )
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError(
            f"{where} {mask_url(url)!r} contains a space or control character; "
            "percent-encode it (a space is %20)."
        )


def check_header(name: str, value: str, where: str) -> None:
    """A header name (a token) and value (printable, no line breaks); never echoes the value.

    A value with CR/LF would otherwise be refused by requests at every send (retried as a
    network fault, its text quoted in messages) or, worse, split into two headers.
    """
    if not name or not all(c in _TOKEN_CHARS for c in name):
        raise ConfigError(
            f"{where}: the header name {name[:60]!r} is not valid; header names are letters, "
            "digits and - (for example X-Source)."
        )
    if any(not (" " <= c <= "~") and c != "\t" for c in value):
        raise ConfigError(
            f"{where} {name}: the value contains a line break, a control character or a "
            "non-ASCII character (the value is not shown); fix the value."
        )


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""The characters of an HTTP header name (RFC 9110 `token`)."""


def _reason(exc: Exception) -> str:
    """Why a URL failed to parse, without the URL (urllib3 quotes it, query and all)."""
    return "port out of range or not a number" if "port" in str(exc).lower() else (
        "malformed host or port")


def origin_of(url: str) -> Origin:
    """(scheme, host, port) of a URL as urllib3 connects to it, for same-server comparisons.

    A URL urllib3 cannot read has no origin that could match (its request fails anyway).
    """
    try:
        parts = parse_url(url)
    except LocationParseError:
        return ("", "", None)
    return _origin(parts.scheme, parts.host, parts.port)


@functools.lru_cache(maxsize=64)
def same_origin(url: str, other: str) -> bool:
    """Whether two URLs reach the same server (scheme, host and port), as urllib3 reads them.

    Remembered: a run compares the same few origins (base_url, custom endpoints) at every
    request.
    """
    return origin_of(url) == origin_of(other)


def _origin(scheme: str | None, host: str | None, port: int | None) -> Origin:
    """The comparable origin: lower case, IPv6 brackets off, default ports filled in."""
    scheme = (scheme or "").lower()
    return scheme, (host or "").strip("[]").lower(), port or {"http": 80, "https": 443}.get(
        scheme
    )
