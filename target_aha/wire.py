"""What crosses the transport seam: the shaped `Request`, the `Outgoing` call, the `Answer`.

Plain data, no HTTP library: shaping builds a `Request` (relative to the account), the client
turns it into an `Outgoing` (full URL, every header, the encoded body), a transport carries
that and returns an `Answer`. `Request.describe` and `public_headers` are the single place
requests are shown to people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from target_aha.forms import encode_form
from target_aha.redact import MASK, mask_url, secret_name

ANSWER_EXCERPT = 500
"""How much of an answer's body an error message shows."""
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


@dataclass(frozen=True)
class Outgoing:
    """One call as a transport carries it: full URL, every header, the body as sent.

    `body` is the body as a person reads it (JSON data as data, a form body as its encoded
    string, which can be pasted into curl); `data` is the text that goes on the wire.
    """

    method: str
    url: str
    headers: dict[str, str]
    data: str | None = None
    body: Any = None


@dataclass(frozen=True)
class Answer:
    """The answer to one call: status, headers and the body (parsed JSON when it is JSON).

    `simulated`: a dry run's answer, made up by the dry-run transport; nothing was sent, so
    it names no object and is never posted to the response webhook.
    """

    status: int
    headers: dict[str, str]
    text: str
    simulated: bool = False

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


def encode_body(request: Request) -> str | None:
    """The body as sent: JSON text, or the form string (`feature[name]=x&tags[]=a`)."""
    if request.body is None:
        return None
    if request.content_format == "form":
        return encode_form(request.body)
    return json.dumps(request.body)


def public_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers for printing: Authorization as `Bearer ***`, secret-named headers masked."""
    shown = dict(headers)
    if "Authorization" in shown:
        shown["Authorization"] = f"Bearer {MASK}"
    return {k: MASK if secret_name(k) and k != "Authorization" else v for k, v in shown.items()}
