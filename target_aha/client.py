"""One HTTP call to Aha!: sessions, the auth header, timeouts, and what an answer means.

The API key lives here and only here: it is put on each session's headers, and
`Request.describe` / `public_headers` are the single place requests are shown to people.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

ANSWER_EXCERPT = 500
"""How much of an answer's body an error message shows."""


@dataclass(frozen=True)
class Request:
    """A request as shaped from records: path relative to `base_url`, body as JSON data."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """`METHOD /path` for messages: no query, no headers, so never a secret."""
        return f"{self.method} {self.path}"


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
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        self._timeout = timeout
        self._local = threading.local()

    def url(self, request: Request) -> str:
        """The full URL of a request, query included."""
        query = f"?{urlencode(request.query)}" if request.query else ""
        return f"{self.base_url}{request.path}{query}"

    def public_headers(self, request: Request) -> dict[str, str]:
        """The headers a request carries, with the token hidden, for printing."""
        headers = {**self._headers, **self._body_headers(request), **request.headers}
        headers["Authorization"] = "Bearer ***"
        return headers

    @staticmethod
    def _body_headers(request: Request) -> dict[str, str]:
        return {"Content-Type": "application/json"} if request.body is not None else {}

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
        return session

    def send(self, request: Request) -> Answer:
        """One attempt; raises `requests.RequestException` on timeouts and network faults."""
        data = None if request.body is None else json.dumps(request.body)
        response = self._session().request(
            request.method,
            self.url(request),
            data=data,
            headers={**self._body_headers(request), **request.headers},
            timeout=self._timeout,
            allow_redirects=False,
        )
        return Answer(response.status_code, dict(response.headers), response.text)
