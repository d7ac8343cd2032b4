"""A hostile "Aha!" on 127.0.0.1: an `http.server` whose every answer a test decides.

`Hostile(answer)` calls `answer(seen)` for each request and sends back the
`(status, headers, body)` it returns; every request is kept in `seen` so a test can check what
arrived (and that a secret did or did not). tests/receiver.py builds a fixed-status receiver on it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Seen:
    """One request as it arrived (`path` with its query); `raw` is its request line, headers
    and body as bytes, for grepping a secret."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]


class Hostile:
    """Serves from construction until `close()` (or the end of a `with`); `url` is its root."""

    def __init__(self, answer: Callable[[Seen], Reply]) -> None:
        self.seen: list[Seen] = []
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                head = f"{self.requestline}\r\n{self.headers}".encode()
                seen = Seen(self.command, self.path, dict(self.headers.items()), body,
                            head + body)
                hostile.seen.append(seen)
                status, headers, data = answer(seen)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Hostile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
