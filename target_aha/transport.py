"""Bounded HTTP exchanges: a deadline over a whole request, and a cap on what is read of an answer.

`requests`' timeout is per socket operation, so a server that sends one byte a second never
times out, and `response.text` reads an answer whole, however large. `exchange` is the one
way target-aha talks HTTP (to Aha!, to the response webhook, in `--test`):

- one watchdog thread closes the socket of any exchange past its deadline, whatever phase it
  is in (headers or body); the blocked read returns at once and the exchange ends with
  `DeadlinePassed` (a `requests.Timeout`). Sessions must be made by `bounded_session`, so
  that the watchdog knows their connections.
- the answer is streamed and read only up to `limit` bytes (after decompression); beyond
  that the exchange ends with `AnswerTooLarge` (the connection is dropped, not drained).
- `WATCHDOG.close()` (the run is stopping) cuts every exchange in flight and every later one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CHUNK = 64 * 1024
"""Bytes read from an answer at a time."""
TICK = 0.05
"""How often the watchdog looks again at an exchange it already cut (a connect in progress)."""


class AnswerTooLarge(requests.RequestException):
    """The answer was longer than the exchange's limit; the rest of it was not read.

    `status` is the answer's HTTP status (a webhook's 2xx still means it took the post).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DeadlinePassed(requests.Timeout):
    """The exchange did not end (answer read to its last byte) within its deadline."""


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


def bounded_session(headers: Mapping[str, str]) -> requests.Session:
    """A keep-alive session whose exchanges the watchdog can cut."""
    session = requests.Session()
    session.headers.update(headers)
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class Exchanged:
    """An answer read within its bounds: status, headers and body text."""

    status: int
    headers: dict[str, str]
    text: str


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    seconds: float,
    limit: int,
    **kwargs: Any,
) -> Exchanged:
    """One request, from connecting to the last byte of the answer within `seconds`.

    Raises `DeadlinePassed` (a `requests.Timeout`) past the deadline, `AnswerTooLarge` for
    an answer over `limit` bytes, and `requests.RequestException` for other network faults.
    """
    with WATCHDOG.watch(seconds) as entry:
        try:
            response = session.request(
                method, url, timeout=seconds, stream=True, allow_redirects=False, **kwargs
            )
            with response:
                body = bytearray()
                for chunk in response.iter_content(CHUNK):
                    body += chunk
                    if len(body) > limit:
                        raise AnswerTooLarge(
                            f"the answer was longer than {_size(limit)}; target-aha stopped "
                            "reading it", response.status_code,
                        )
        except AnswerTooLarge:
            raise
        except requests.RequestException as exc:
            if entry.expired:
                raise DeadlinePassed(_late(seconds)) from exc
            raise
        if entry.expired:  # cut just as the last byte came: do not trust the answer
            raise DeadlinePassed(_late(seconds))
    return Exchanged(response.status_code, dict(response.headers), _decode(bytes(body), response))


def _late(seconds: float) -> str:
    return f"no complete answer within {seconds:g} s (request_timeout bounds the whole request)"


def _size(limit: int) -> str:
    return f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit / 2**10:g} KiB"


def _decode(body: bytes, response: requests.Response) -> str:
    """The body as text, in the charset the answer names (UTF-8 if none or unknown)."""
    try:
        return body.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")
