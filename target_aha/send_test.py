"""`--send-test` (spec §13, the reference product's "Send Test Data"): one real record per stream.

Before trusting a nightly load, a user sends one record of each stream for real and reads
what Aha! did with it. The record takes the normal path (shaping, upsert, the ledger), so the
full load that follows finds it in the ledger and does not create it a second time. Every
request is printed on standard output (credentials masked) with Aha!'s whole answer; no STATE
is emitted (the tap's bookmark must not move past records that were not sent), and reading
stops once every configured stream has had its first record.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

from target_aha.redact import REDACTOR, mask_url
from target_aha.transport import Transport, TransportError
from target_aha.wire import Answer, Outgoing, public_headers


class SendTestDone(Exception):
    """Every configured stream has had its first record: stop reading the input."""


class FirstRecords:
    """Which records `--send-test` lets through: the first of each stream."""

    def __init__(self, configured: Iterable[str]) -> None:
        self.configured = frozenset(configured)
        """The streams of the `streams` setting: once each had a record, reading stops
        (none configured: streams named after templates, read to the end)."""
        self.seen: set[str] = set()

    def admit(self, stream: str) -> bool:
        """Whether this record of `stream` is sent (its stream's first); raises SendTestDone
        at a later record once every configured stream had its first."""
        if stream not in self.seen:
            self.seen.add(stream)
            return True
        if self.configured and self.configured <= self.seen:
            raise SendTestDone
        return False


class ShowingTransport:
    """Sends each call through the real transport, then prints it with Aha!'s whole answer.

    One JSON object per exchange on standard output: the request (URL and headers with
    credentials masked, the body as sent) and the answer (status, headers, body parsed when it
    is JSON), or the error when no answer came.
    """

    def __init__(self, inner: Transport, out: TextIO | None = None) -> None:
        self._inner = inner
        self._out = out
        self._lock = threading.Lock()

    def send(self, call: Outgoing) -> Answer:
        """Send the call; print it and what came back (an error is printed, then raised)."""
        request = {"method": call.method, "url": mask_url(call.url),
                   "headers": public_headers(call.headers), "body": call.body}
        try:
            answer = self._inner.send(call)
        except TransportError as exc:
            self._show({"request": request, "error": f"{exc.kind}: {exc}"})
            raise
        self._show({"request": request, "answer": {
            "status": answer.status, "headers": public_headers(dict(answer.headers)),
            "body": answer.data if answer.data is not None else answer.text,
        }})
        return answer

    def _show(self, exchange: dict[str, Any]) -> None:
        out = self._out or sys.stdout  # looked up at the call: tests capture sys.stdout
        with self._lock:
            out.write(REDACTOR(json.dumps(exchange, ensure_ascii=False, default=str)) + "\n")
            out.flush()
