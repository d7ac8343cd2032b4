"""The Aha! account as a client sees it: the API key, which origin is the account, URLs.

The API key lives here and only here: it is added to a request only when the request's URL
is on the same origin (scheme, host, port) as `base_url` (`urls.same_origin`), so a custom
endpoint on another host never sees it. The client turns a shaped `Request` into the
`Outgoing` call its transport carries; `public_url` / `public_headers` are what may be shown.
"""

from __future__ import annotations

import functools
from urllib.parse import urlencode, urlsplit

from target_aha.redact import mask_url
from target_aha.transport import Transport
from target_aha.urls import same_origin
from target_aha.wire import CONTENT_TYPES, Answer, Outgoing, Request, encode_body, public_headers

ANSWER_LIMIT = 16 * 2**20
"""The most of an Aha! answer that is read (the largest real answers are far smaller): a
longer one is an error, as a timeout is, and never fills memory."""


class AhaClient:
    """Sends one `Request` to the account through its transport and returns the `Answer`.

    Transport errors (`TransportError`) are raised as they come: retrying is the sender's.
    """

    def __init__(self, base_url: str, api_key: str, user_agent: str, transport: Transport) -> None:
        self.base_url = base_url.rstrip("/")
        self.account = urlsplit(self.base_url).netloc
        self.transport = transport
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}

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
        return request.origin is None or same_origin(request.origin, self.base_url)

    def host_of(self, request: Request) -> str:
        """Who a request goes to, for messages: the Aha! account, or the other host."""
        return f"Aha! at {self.account}" if self.is_account(request) else f"{request.origin}"

    def public_headers(self, request: Request) -> dict[str, str]:
        """The headers a request carries, credentials hidden, for printing."""
        return public_headers(self._headers_for(request))

    def _headers_for(self, request: Request) -> dict[str, str]:
        """Every header of one request; Authorization only for the account's own origin."""
        auth = self._auth if self.is_account(request) else {}
        content = (
            {"Content-Type": CONTENT_TYPES[request.content_format]}
            if request.body is not None
            else {}
        )
        return {**self._headers, **auth, **content, **request.headers}

    def outgoing(self, request: Request) -> Outgoing:
        """The call as the transport carries it (and as a dry run prints it)."""
        data = encode_body(request)
        return Outgoing(
            request.method, self.url(request), self._headers_for(request), data,
            data if request.content_format == "form" else request.body,
        )

    def send(self, request: Request) -> Answer:
        """One attempt; raises `TransportError` when no (complete) answer came."""
        return self.transport.send(self.outgoing(request))


@functools.lru_cache(maxsize=256)
def _query_string(items: tuple[tuple[str, str], ...]) -> str:
    """`urlencode`, remembered: most requests carry the same `disable_mailers=true`."""
    return urlencode(items)
