"""Bounds a server cannot break, and runs that end early: trickled and endless answers,
batch expressions that eat memory or time, signals, and fatal errors with requests in flight.

Hostile servers are a few lines of socket code on 127.0.0.1: they send whatever bytes a test
asks for, as slowly as it asks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import EXECUTABLE, TOKEN, record, schema, state

FEATURE = {"f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}}


class Hostile:
    """A TCP server on 127.0.0.1 that answers every connection with `answer(conn)`."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.connections = 0
        self.started: list[float] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by __exit__
                return
            self.connections += 1
            self.started.append(time.monotonic())
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request (small: one record)
                self.answer(conn)
            except OSError:
                pass  # the client hung up: that is what these tests want

    def __enter__(self) -> Hostile:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()


def trickle(data: bytes) -> Callable[[socket.socket], None]:
    """Send `data` one byte every 0.25 s (each read gets a byte well within any timeout)."""

    def answer(conn: socket.socket) -> None:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(0.25)

    return answer


def huge(conn: socket.socket) -> None:
    """A 200 with a 300 MB JSON body, sent as fast as the client reads."""
    chunk = b'"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",' * 20000  # 1 MB
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n[" % (300 * len(chunk) + 3))
    for _ in range(300):
        conn.sendall(chunk)
    conn.sendall(b"1]\n")


def run_measured(tmp_path: Path, args: list[str], stdin: str = "") -> tuple[int, str, str, float]:
    """Run the target; exit code, stdout, stderr and the child's own peak RSS in MiB."""
    (tmp_path / "in").write_text(stdin)
    with (tmp_path / "in").open() as i, (tmp_path / "out").open("w") as o, \
            (tmp_path / "err").open("w") as e:
        proc = subprocess.Popen([EXECUTABLE, *args], stdin=i, stdout=o, stderr=e)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (proc.returncode, (tmp_path / "out").read_text(), (tmp_path / "err").read_text(),
            usage.ru_maxrss / 1024)


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"ledger_path": "", "results_path": str(tmp_path / "r.jsonl"),
                                **config}))
    return path


def results(tmp_path: Path) -> list[dict]:
    path = tmp_path / "r.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def messages(*lines: dict | str) -> str:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)


def test_a_trickled_answer_is_cut_at_request_timeout(tmp_path: Path) -> None:
    # Headers at 4 bytes a second: every socket read succeeds, so only a bound on the whole
    # request ends it. request_timeout 2 with one retry: two attempts of about 2 s, then the
    # run stops with the exhausted-retries message.
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 400
    with Hostile(trickle(head)) as server:
        config = write_config(tmp_path, {
            "base_url": server.url, "api_key": TOKEN, "streams": FEATURE,
            "request_timeout": 2, "max_retries": 1,
        })
        started = time.monotonic()
        proc = subprocess.run(
            [EXECUTABLE, "--config", str(config)], input=messages(
                schema("f"), record("f", {"name": "slow"}), state({"n": 1})),
            capture_output=True, text=True, timeout=60, check=False,
        )
        elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert server.connections == 2
    gap = server.started[1] - server.started[0]
    assert 1.8 <= gap <= 3.5, gap  # the first attempt was cut at about 2 s
    assert elapsed < 12, elapsed
    assert "after 1 retries" in proc.stderr
    assert "no complete answer within 2 s" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""  # no STATE over the unsettled record
    assert results(tmp_path) == []


def test_a_huge_answer_is_not_read_into_memory(tmp_path: Path) -> None:
    # A 300 MB answer to the create (and to --test's GET /me) is read only up to 16 MiB:
    # the run ends with a message saying so, and the child's peak memory stays far below.
    with Hostile(huge) as server:
        config = str(write_config(tmp_path, {
            "base_url": server.url, "api_key": TOKEN, "streams": FEATURE, "max_retries": 1,
        }))
        code, out, err, peak = run_measured(tmp_path, ["--config", config], messages(
            schema("f"), record("f", {"name": "big"}), state({"n": 1})))
        test_code, test_out, _, test_peak = run_measured(tmp_path, ["--config", config, "--test"])
    assert peak < 200, peak
    assert code == 1
    assert "AnswerTooLarge: the answer was longer than 16 MiB" in err
    assert "Traceback" not in err
    assert out.strip() == ""
    assert results(tmp_path) == []
    assert test_peak < 200, test_peak
    assert test_code == 1
    assert "FAIL  API key" in test_out
    assert "longer than 16 MiB" in test_out
