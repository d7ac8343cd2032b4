"""A tiny HTTP server that records every request as it arrived: a webhook, or another host.

It answers `status` (200 by default; set it to 500 to play a broken webhook) with a small
JSON body, and can be stopped to play one that is down. Requests are kept with their raw
bytes (request line, headers and body) so a test can grep them for a secret.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Receiver:
    """Start with `with Receiver() as r:`; `r.url` is its root, `r.received` what came."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Received] = []
        self.failed_raw: list[bytes] = []  # requests answered with a non-2xx status
        self.attempts = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                head = f"{self.requestline}\r\n{self.headers}".encode()
                with receiver._lock:
                    receiver.attempts += 1
                    status = receiver.status
                    if 200 <= status < 300:
                        receiver.received.append(Received(
                            self.command, self.path, dict(self.headers.items()), body,
                            head + body,
                        ))
                    else:
                        receiver.failed_raw.append(head + body)
                answer = json.dumps({"ok": 200 <= status < 300, "id": "ext-1"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any  # noqa: N815

        return Handler

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def all_raw(self) -> bytes:
        """Every byte received, answered or not."""
        with self._lock:
            return b"".join([r.raw for r in self.received] + self.failed_raw)
