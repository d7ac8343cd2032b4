"""The watchdog: a deadline over a whole HTTP exchange, whatever phase it is in.

`requests`' timeout is per socket operation, so a server that sends one byte a second never
times out. One watchdog thread closes the socket of any exchange past its deadline (headers
or body); the blocked read returns at once and the transport ends the exchange with
`DeadlinePassed`. Sessions must be made by `bounded_session`, so that the watchdog knows their
connections. `WATCHDOG.close()` (the run is stopping) cuts every exchange in flight and every
later one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

TICK = 0.05
"""How often the watchdog looks again at an exchange it already cut (a connect in progress)."""


@dataclass(eq=False)
class _Watch:
    """One exchange in flight: its deadline and the connections it used."""

    deadline: float
    connections: list[object] = field(default_factory=list)
    expired: bool = False


class Watchdog:
    """One thread that closes the sockets of exchanges past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[_Watch] = set()
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def watch(self, seconds: float) -> Iterator[_Watch]:
        """Bound what runs inside to `seconds` from now (in this thread)."""
        entry = _Watch(time.monotonic() + seconds)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="aha-watchdog", daemon=True
                )
                self._thread.start()
            if self._closed:
                entry.deadline = 0.0
            self._watches.add(entry)
            self._cond.notify()
        self._local.watch = entry
        try:
            yield entry
        finally:
            self._local.watch = None
            with self._cond:
                self._watches.discard(entry)

    def adopt(self, conn: object) -> None:
        """A connection the current thread's exchange uses (called by the watched pools)."""
        entry: _Watch | None = getattr(self._local, "watch", None)
        if entry is not None:
            with self._cond:
                entry.connections.append(conn)
                if entry.expired:
                    _cut(conn)

    def close(self) -> None:
        """Cut every exchange in flight now, and every later one as it starts."""
        with self._cond:
            self._closed = True
            for entry in self._watches:
                entry.deadline = 0.0
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                pending = [w.deadline for w in self._watches if not w.expired]
                for entry in self._watches:
                    if entry.deadline <= now:
                        entry.expired = True
                        for conn in entry.connections:  # again each tick: a connect may finish
                            _cut(conn)
                if any(w.expired for w in self._watches):
                    wait: float | None = TICK
                elif pending:
                    wait = max(min(pending) - now, 0.0)
                else:
                    wait = None
                self._cond.wait(wait)


def _cut(conn: object) -> None:
    """Shut a connection's socket down: a read blocked on it returns at once."""
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


WATCHDOG = Watchdog()
"""The process's one watchdog."""


class _WatchedHTTPPool(HTTPConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        WATCHDOG.adopt(conn)
        return conn


class _WatchedHTTPSPool(HTTPSConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        WATCHDOG.adopt(conn)
        return conn


WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connection pools tell the watchdog which connection is in use."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The usual pool manager, with watched pools."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The usual proxy manager; an http(s) proxy's pools are watched too."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = WATCHED_POOLS
        return manager


def bounded_session() -> requests.Session:
    """A keep-alive session whose exchanges the watchdog can cut."""
    session = requests.Session()
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
