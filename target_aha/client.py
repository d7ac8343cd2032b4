"""One HTTP call to Aha!: sessions, the auth header, timeouts, and what an answer means.

The API key lives here and only here: it is added to a request only when the request's URL is
on the same origin (scheme, host, port) as `base_url`, so a custom endpoint on another host
never sees it. `Request.describe` / `public_headers` are the single place requests are shown
to people.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit

import requests

from target_aha.errors import ConfigError
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
        """The start of the body, for an error message."""
        text = " ".join(self.text.split())
        return text if len(text) <= ANSWER_EXCERPT else text[:ANSWER_EXCERPT] + "..."


class AhaClient:
    """Sends one `Request` and returns the `Answer`; transport errors are raised as they come.

    Each sending thread gets its own `requests.Session` (sessions are not thread-safe), so
    every worker keeps its connection alive between calls.
    """

    def __init__(self, base_url: str, api_key: str, user_agent: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.account = urlsplit(self.base_url).netloc
        self._origin = origin_of(self.base_url)
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        self._timeout = timeout
        self._local = threading.local()

    def url(self, request: Request) -> str:
        """The full URL of a request, query included."""
        query = f"?{_query_string(tuple(request.query.items()))}" if request.query else ""
        root = request.origin if request.origin is not None else self.base_url
        return f"{root}{request.path}{query}"

    def is_account(self, request: Request) -> bool:
        """Whether a request goes to base_url's origin: the only place the API key may go."""
        return request.origin is None or _origin_cached(request.origin) == self._origin

    def public_headers(self, request: Request) -> dict[str, str]:
        """The headers a request carries, with the token hidden, for printing."""
        headers = self._headers_for(request)
        if "Authorization" in headers:
            headers["Authorization"] = "Bearer ***"
        return headers

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


def check_http_url(url: str, where: str, hint: str = "") -> SplitResult:
    """An http(s) URL with a host, plain http only for loopback hosts, or a ConfigError.

    The one rule for base_url, absolute custom URLs and webhooks: the API key and records
    never travel unencrypted to another machine.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} {url!r} is not an http(s) URL{hint}.")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise ConfigError(
            f"{where} {url!r} uses plain http; use https (http is only allowed for loopback "
            "hosts such as the local sandbox)."
        )
    return parts


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
    """(scheme, host, port) of a URL, default ports filled in, for same-server comparisons."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(
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
