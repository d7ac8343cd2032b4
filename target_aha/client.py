"""One HTTP call to Aha!: sessions, the auth header, timeouts, and what an answer means.

The API key lives here and only here: it is added to a request only when the request's URL is
on the same origin (scheme, host, port) as `base_url`, so a custom endpoint on another host
never sees it. Origins are read by `parse_http_url` / `origin_of`, the way urllib3 (which
requests uses) reads them when it connects, so the key decision and the connection can never
disagree. `Request.describe` / `public_headers` are the single place requests are shown to
people.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import requests
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from target_aha.errors import ConfigError
from target_aha.redact import MASK, mask_url, secret_name
from target_aha.transport import bounded_session, exchange

ANSWER_EXCERPT = 500
"""How much of an answer's body an error message shows."""
ANSWER_LIMIT = 16 * 2**20
"""The most of an Aha! answer that is read (the largest real answers are far smaller): a
longer one is an error, as a timeout is, and never fills memory."""
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts that may be reached over plain http (the local sandbox, a local receiver)."""
CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded"}
"""The body encodings a request can ask for (`content_format`), and their Content-Type."""


@dataclass(frozen=True)
class Request:
    """A request as shaped from records, body as JSON-like data.

    `path` is relative to `base_url`, unless `origin` (`scheme://host[:port]`) names the
    server of an absolute URL outside `base_url`. `content_format` says how the body goes on
    the wire: `json`, or `form` (Rails-style nested keys; the body must then be an object).
    """

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    origin: str | None = None
    content_format: str = "json"

    def describe(self) -> str:
        """`METHOD /path` (or `METHOD https://host/path`) for messages: no query, never a secret."""
        return f"{self.method} {self.origin or ''}{self.path}"


class Verdict(Enum):
    """What an answer means for the record and the run."""

    OK = "ok"
    RETRY = "retry"
    REJECTED = "rejected"
    FATAL = "fatal"


def classify(status: int) -> Verdict:
    """2xx done; 429/5xx worth another try; 401/403 end the run; other 4xx reject the record."""
    if 200 <= status < 300:
        return Verdict.OK
    if status in (401, 403):
        return Verdict.FATAL
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.REJECTED


@dataclass(frozen=True)
class Answer:
    """Aha!'s answer: status, headers and the body (parsed JSON when it is JSON)."""

    status: int
    headers: dict[str, str]
    text: str

    @property
    def data(self) -> Any:
        """The JSON body, or None for an empty or non-JSON body."""
        try:
            return json.loads(self.text) if self.text else None
        except ValueError:
            return None

    def excerpt(self) -> str:
        """The start of the body, for an error message; a redirect first says where to.

        target-aha never follows redirects (the key must not travel with one), so a 3xx is
        shown with its `Location` (credentials masked) for the user to fix the URL.
        """
        text = " ".join(self.text.split())
        text = text if len(text) <= ANSWER_EXCERPT else text[:ANSWER_EXCERPT] + "..."
        location = {k.lower(): v for k, v in self.headers.items()}.get("location")
        if 300 <= self.status < 400 and location:
            where = mask_url(location[:ANSWER_EXCERPT])
            return f"a redirect to {where} (not followed: fix the URL in the configuration)" + (
                f"; {text}" if text else ""
            )
        return text


class AhaClient:
    """Sends one `Request` and returns the `Answer`; transport errors are raised as they come.

    Each sending thread gets its own `requests.Session` (sessions are not thread-safe), so
    every worker keeps its connection alive between calls.
    """

    def __init__(self, base_url: str, api_key: str, user_agent: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.account = urlsplit(self.base_url).netloc
        self._origin = _origin_cached(self.base_url)
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        self._timeout = timeout
        self._local = threading.local()

    def url(self, request: Request) -> str:
        """The full URL of a request, query included."""
        query = f"?{_query_string(tuple(request.query.items()))}" if request.query else ""
        root = request.origin if request.origin is not None else self.base_url
        return f"{root}{request.path}{query}"

    def public_url(self, request: Request) -> str:
        """The full URL for printing: credentials in its query masked."""
        return mask_url(self.url(request))

    def is_account(self, request: Request) -> bool:
        """Whether a request goes to base_url's origin: the only place the API key may go."""
        return request.origin is None or _origin_cached(request.origin) == self._origin

    def host_of(self, request: Request) -> str:
        """Who a request goes to, for messages: the Aha! account, or the other host."""
        return f"Aha! at {self.account}" if self.is_account(request) else f"{request.origin}"

    def public_headers(self, request: Request) -> dict[str, str]:
        """The headers a request carries, credentials hidden, for printing."""
        headers = self._headers_for(request)
        if "Authorization" in headers:
            headers["Authorization"] = f"Bearer {MASK}"
        return {k: MASK if secret_name(k) and k != "Authorization" else v
                for k, v in headers.items()}

    def _headers_for(self, request: Request) -> dict[str, str]:
        """Every header of one request; Authorization only for the account's own origin."""
        auth = self._auth if self.is_account(request) else {}
        content = (
            {"Content-Type": CONTENT_TYPES[request.content_format]}
            if request.body is not None
            else {}
        )
        return {**self._headers, **auth, **content, **request.headers}

    def send(self, request: Request) -> Answer:
        """One attempt, bounded as a whole by `request_timeout` and `ANSWER_LIMIT`.

        Raises `requests.RequestException` on timeouts, network faults and answers over the
        limit (`transport.AnswerTooLarge`): all mean the outcome is unknown.
        """
        got = exchange(
            thread_session(self._local, self._headers),
            request.method,
            self.url(request),
            seconds=self._timeout,
            limit=ANSWER_LIMIT,
            data=encode_body(request),
            headers=self._headers_for(request),
        )
        return Answer(got.status, got.headers, got.text)


@dataclass(frozen=True)
class Url:
    """A URL from the configuration, read once: what the HTTP client will connect to.

    `root` is `scheme://host[:port]` as written (safe: the parse agreed with urllib3's),
    `origin` the (scheme, host, port) comparisons use, `path` and `query` as written.
    """

    root: str
    origin: tuple[str, str, int | None]
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


def thread_session(local: threading.local, headers: Mapping[str, str]) -> requests.Session:
    """This thread's keep-alive session (requests sessions are not thread-safe)."""
    session = getattr(local, "session", None)
    if session is None:
        session = bounded_session(headers)
        local.session = session
    return session


@functools.lru_cache(maxsize=256)
def _query_string(items: tuple[tuple[str, str], ...]) -> str:
    """`urlencode`, remembered: most requests carry the same `disable_mailers=true`."""
    return urlencode(items)


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL as urllib3 connects to it, for same-server comparisons.

    A URL urllib3 cannot read has no origin that could match (its request fails anyway).
    """
    try:
        parts = parse_url(url)
    except LocationParseError:
        return ("", "", None)
    return _origin(parts.scheme, parts.host, parts.port)


def _origin(scheme: str | None, host: str | None, port: int | None) -> tuple[str, str, int | None]:
    """The comparable origin: lower case, IPv6 brackets off, default ports filled in."""
    scheme = (scheme or "").lower()
    return scheme, (host or "").strip("[]").lower(), port or {"http": 80, "https": 443}.get(
        scheme
    )


def encode_body(request: Request) -> str | None:
    """The body as sent: JSON text, or the form string (`feature[name]=x&tags[]=a`)."""
    if request.body is None:
        return None
    if request.content_format == "form":
        return encode_form(request.body)
    return json.dumps(request.body)


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


_origin_cached = functools.lru_cache(maxsize=64)(origin_of)
"""`origin_of` for the few origins a run's requests name (custom endpoints on other hosts)."""
