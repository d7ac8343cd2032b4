"""The real transport: `requests` sessions, bounded in time and in what is read of an answer.

The one place target-aha uses an HTTP library (for Aha!, the response webhook and `--test`):
each call runs under the watchdog's deadline (`request_timeout` bounds the whole request,
not each socket read), the answer is streamed and read only up to `limit` bytes (after
decompression; beyond that the connection is dropped, not drained), redirects are never
followed (the API key must not travel with one), and every `requests` exception is mapped
here to a `TransportError`.
"""

from __future__ import annotations

import threading

import requests

from target_aha.transport import AnswerTooLarge, DeadlinePassed, TransportError
from target_aha.watchdog import WATCHDOG, bounded_session
from target_aha.wire import Answer, Outgoing

CHUNK = 64 * 1024
"""Bytes read from an answer at a time."""


class HttpTransport:
    """Sends calls over keep-alive sessions, one per thread (sessions are not thread-safe).

    `seconds` bounds each call from connecting to the answer's last byte; `limit` is the most
    of an answer that is read.
    """

    def __init__(self, seconds: float, limit: int) -> None:
        self.seconds = seconds
        self.limit = limit
        self._local = threading.local()

    def send(self, call: Outgoing) -> Answer:
        """One attempt; raises TransportError (DeadlinePassed, AnswerTooLarge, or the fault)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = bounded_session()
        with WATCHDOG.watch(self.seconds) as entry:
            try:
                response = session.request(
                    call.method, call.url, data=call.data, headers=call.headers,
                    timeout=self.seconds, stream=True, allow_redirects=False,
                )
                with response:
                    body = bytearray()
                    for chunk in response.iter_content(CHUNK):
                        body += chunk
                        if len(body) > self.limit:
                            raise AnswerTooLarge(self.limit, response.status_code)
            except requests.RequestException as exc:
                if entry.expired:
                    raise DeadlinePassed(self.seconds) from exc
                raise TransportError(type(exc).__name__, str(exc)) from exc
            if entry.expired:  # cut just as the last byte came: do not trust the answer
                raise DeadlinePassed(self.seconds)
        return Answer(response.status_code, dict(response.headers), _decode(bytes(body), response))


def _decode(body: bytes, response: requests.Response) -> str:
    """The body as text, in the charset the answer names (UTF-8 if none or unknown)."""
    try:
        return body.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")
