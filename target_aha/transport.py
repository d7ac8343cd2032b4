"""The transport seam: `send(Outgoing) -> Answer`, and the one error type a transport raises.

Everything above this seam (the client, the sender, the webhook, `--test`) talks HTTP through
a `Transport` and never sees an HTTP library's exceptions: `HttpTransport`
(`http_transport.py`) maps them all to `TransportError`, whose `retryable` is decided there,
once. `DryRunTransport` prints each call instead of making it and answers as Aha! would
(a 2xx), marked `simulated`, so the layers above run a dry run exactly as a real one. The
errors carry facts (which bound, how long); the words for users are made in `explain.py`.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Protocol, TextIO

from target_aha.redact import mask_url
from target_aha.wire import Answer, Outgoing, public_headers


class Transport(Protocol):
    """Carries one call and returns its answer, or raises `TransportError`."""

    def send(self, call: Outgoing) -> Answer:
        """One attempt; raises TransportError when no (complete) answer came."""


class TransportError(Exception):
    """No usable answer: a network fault, a timeout, or a bound target-aha sets was hit.

    `kind` names the fault (`ConnectionError`, `ReadTimeout`, `DeadlinePassed`, ...);
    `retryable` says whether another attempt may get a different outcome. The message is
    the fault's own text (it can name the URL: messages pass the redactor).
    """

    def __init__(self, kind: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


class AnswerTooLarge(TransportError):
    """The answer was longer than the transport's limit; the rest of it was not read.

    Not retryable: asking again brings the same long answer. `status` is the answer's HTTP
    status (a webhook's 2xx still means it took the post).
    """

    def __init__(self, limit: int, status: int) -> None:
        super().__init__(
            "AnswerTooLarge",
            f"the answer was longer than {_size(limit)}; target-aha stopped reading it",
            retryable=False,
        )
        self.status = status


class DeadlinePassed(TransportError):
    """The exchange did not end (answer read to its last byte) within `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__("DeadlinePassed", f"no complete answer within {seconds:g} s")
        self.seconds = seconds


def _size(limit: int) -> str:
    return f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit / 2**10:g} KiB"


class DryRunTransport:
    """Prints each call as one JSON line (on stderr) instead of sending it.

    The line shows the URL and headers with credentials masked, and the body as it would go
    out: JSON data as data, a form body as the exact encoded string. The answer is a 200
    with no body, marked `simulated`.
    """

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, call: Outgoing) -> Answer:
        """Print the call; answer as Aha! would, without an object (nothing was made)."""
        # A JSON body is already encoded as `data`; json.dumps would encode it again, with the
        # same separators, so the line is `json.dumps` of {method, url, headers, body}.
        body = call.data if call.data is not None and call.body is not call.data else (
            json.dumps(call.body))
        line = (
            f'{{"method": {json.dumps(call.method)}, "url": {json.dumps(mask_url(call.url))}, '
            f'"headers": {json.dumps(public_headers(call.headers))}, "body": {body}}}\n'
        )
        out = self._out or sys.stderr  # looked up at the call: tests capture sys.stderr
        with self._lock:
            out.write(line)
            out.flush()
        return Answer(200, {}, "", simulated=True)
