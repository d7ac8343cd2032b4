"""HTTP for the sandbox: parsing requests, logging them, answering, and dropping connections.

A ThreadingHTTPServer answers each connection in its own thread, so concurrent clients
overlap their injected latency the way they would against Aha!. HTTP/1.1 keep-alive lets a
client reuse connections, which matters for benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from .engine import INJECTED_ERROR, Engine, Verdict
from .forms import parse_body
from .store import not_found

LOG = logging.getLogger(__name__)
_MAX_LINE = 65537


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading server that knows its Engine and can cut every open connection on stop."""

    daemon_threads = True
    request_queue_size = 128  # bursts of concurrent clients should queue, not be refused

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        self.engine = engine
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host, which can take seconds."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        """Remember (or forget) a client connection so close_connections() can reach it."""
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open client connection, so idle keep-alive threads end on stop."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is normal here (timeouts, stop): log quietly."""
        LOG.debug("error while serving %s", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    """One connection: routes /api/v1 to the Engine and /__sandbox/ to the admin operations."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms a request), which would make every benchmark measure that instead.
    disable_nagle_algorithm = True
    server_version = "target-aha-sandbox"
    server: SandboxHTTPServer

    def setup(self) -> None:
        """Track the connection, so stopping the sandbox can close it."""
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        """Forget the connection."""
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Access lines at debug level: tests and benchmarks read the request log instead."""
        LOG.debug("%s " + format, self.address_string(), *args)

    def _dispatch_any(self) -> None:
        """Every method goes through one router (Aha! answers 404 for unknown routes)."""
        self._dispatch()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch_any  # noqa: N815 - http.server names them

    # -- routing ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        instance = "/" + self.server.engine.instance
        ours = raw_path.startswith(instance + "/")
        if ours:  # the rest is the path as Aha! would see it, and as the log shows it
            raw_path = raw_path[len(instance):]
        # Each segment is decoded on its own, so an encoded "/" or "?" stays inside its
        # segment: /releases/..%2Fx/features names the release "../x", never a parent path.
        segments = [unquote(part) for part in raw_path.split("/")[1:]]
        while segments and segments[-1] == "":
            segments.pop()
        raw_body = self._read_body()
        if segments[:1] == ["__sandbox"]:  # with or without the instance segment
            self._serve_admin(segments[1:], raw_body)
        elif not ours:
            self._send(404, self._elsewhere(segments))
        elif segments[:2] == ["api", "v1"]:
            self._serve_api(raw_path, raw_query, segments, raw_body)
        else:
            self._send(404, not_found().payload())

    def _elsewhere(self, segments: list[str]) -> dict[str, Any]:
        """The 404 for a path outside this start's site: say where its API is, and why."""
        if "api" not in segments[:2]:
            return not_found().payload()
        engine = self.server.engine
        return {"errors": {"message": (
            f"Record not found: this sandbox serves its API at {engine.site_url}/api/v1. "
            "Each start of a sandbox has its own URL, so that a key ledger never takes a new, "
            "empty sandbox for an earlier one whose objects it remembers; point base_url at "
            "that URL (a script can read it from --port-file)."
        )}}

    def _serve_api(self, raw_path: str, raw_query: str, segments: list[str], raw: bytes) -> None:
        engine = self.server.engine
        content_type = self.headers.get("Content-Type", "")
        body, body_error = parse_body(raw, content_type)
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        entry = engine.log.arrive({
            "method": self.command,
            "path": "/" + "/".join(segments),
            "raw_path": raw_path,
            "segments": segments[2:],
            "query": query,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "content_type": content_type,
            "body": body,
            "raw_body": raw.decode("utf-8", errors="replace"),
        })
        verdict = engine.judge(entry["at"], self.headers.get("Authorization"), self.command)
        if verdict.delay > 0:
            engine.stopping.wait(verdict.delay)
        if verdict.action == "answer":
            self._answer(entry, verdict, verdict.status, verdict.payload)
        elif verdict.action == "drop":
            self._hang_up(entry, verdict)
        else:
            status, payload = engine.call(self.command, segments[2:], query, body, body_error)
            if verdict.action == "commit_timeout":
                engine.stopping.wait(verdict.hang)
                self._hang_up(entry, verdict)
            elif verdict.action == "commit_error":  # a gateway failing after the commit
                error_status = engine.config()["error_status"]
                self._answer(entry, verdict, error_status, INJECTED_ERROR)
            else:
                self._answer(entry, verdict, status, payload)

    def _answer(self, entry: dict[str, Any], verdict: Verdict, status: int, payload: Any) -> None:
        # Settle first: a client that reads the log right after its answer must see the status.
        self.server.engine.log.settle(entry, status, verdict.fault)
        self._send(status, payload, verdict.headers)

    def _serve_admin(self, segments: list[str], raw: bytes) -> None:
        """The /__sandbox/ operations: no auth, no rate limit, no faults, not logged."""
        engine = self.server.engine
        match (self.command, segments):
            case ("GET", ["requests"]):
                self._send(200, engine.requests())
            case ("DELETE", ["requests"]):
                engine.clear_requests()
                self._send(204, None)
            case ("GET", ["config"]):
                self._send(200, engine.config())
            case ("POST", ["config"]):
                changes, error = parse_body(raw, "application/json")
                if error is not None or not isinstance(changes, dict):
                    self._send(400, {"errors": {"message": error or "expected a JSON object"}})
                    return
                try:
                    engine.configure(**changes)
                except (TypeError, ValueError) as problem:
                    self._send(400, {"errors": {"message": str(problem)}})
                    return
                self._send(200, engine.config())
            case ("GET", ["objects", kind]):
                try:
                    self._send(200, engine.objects(kind))
                except ValueError as problem:
                    self._send(404, {"errors": {"message": str(problem)}})
            case ("DELETE", ["objects", kind, key]):
                try:
                    engine.delete_object(kind, key)
                except (KeyError, ValueError):
                    self._send(404, not_found().payload())
                    return
                self._send(204, None)
            case ("GET", ["stats"]):
                self._send(200, engine.stats())
            case ("POST", ["reset"]):
                engine.reset()
                self._send(204, None)
            case _:
                self._send(404, not_found().payload())

    # -- wire ------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        """The request body, from Content-Length or chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline(_MAX_LINE).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(_MAX_LINE)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _hang_up(self, entry: dict[str, Any], verdict: Verdict) -> None:
        """Close the connection without a byte of answer; the client sees it end."""
        self.server.engine.log.settle(entry, None, verdict.fault)
        self.close_connection = True
        _shutdown(self.connection)


def _shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
