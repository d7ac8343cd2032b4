"""`Sandbox`: a local Aha!-compatible API server, started and stopped from Python."""

from __future__ import annotations

import secrets
import threading
from types import TracebackType

from .engine import Engine
from .server import SandboxHTTPServer


class Sandbox(Engine):
    """An Aha! look-alike on a local port, for tests, demos and benchmarks.

    >>> with Sandbox() as sb:
    ...     sb.base_url  # doctest: +SKIP
    'http://127.0.0.1:54321/sandbox-3f9a0c1e/api/v1'

    Each start serves its site under a new `sandbox-<random>` path segment: a key ledger
    keys objects by base_url, so a restarted sandbox (empty again, maybe on the same port)
    is a new account to it, never the old one whose objects the ledger remembers.

    The inspection and fault methods (configure, requests, objects, stats, reset, ...) come
    from Engine and are also reachable over HTTP under /__sandbox/.
    """

    def __init__(
        self,
        token: str = "sandbox-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_per_second: int | None = None,
        rate_per_minute: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            token=token, rate_per_second=rate_per_second, rate_per_minute=rate_per_minute,
            seed=seed,
        )
        self.host = host
        self.port = port  # the real port once started (port 0 picks a free one)
        self._requested_port = port
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The site root, e.g. http://127.0.0.1:54321/sandbox-3f9a0c1e (objects' `url` pages
        live under it; /__sandbox/ admin routes too)."""
        if not self.site_url:
            raise RuntimeError("the sandbox has not been started")
        return self.site_url

    @property
    def base_url(self) -> str:
        """The API root a client is configured with, e.g.
        http://127.0.0.1:54321/sandbox-3f9a0c1e/api/v1."""
        return f"{self.url}/api/v1"

    def start(self) -> Sandbox:
        """Bind, load the seed data and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        server = SandboxHTTPServer((self.host, self._requested_port), self)
        self.port = int(server.server_address[1])
        self.instance = f"sandbox-{secrets.token_hex(4)}"  # not from seed: new every start
        self.site_url = f"http://{self.host}:{self.port}/{self.instance}"
        self.stopping.clear()
        self.reset()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"aha-sandbox-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections; requests hanging on purpose end at once."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
