"""Bounds a server cannot break, and runs that end early: trickled and endless answers,
batch expressions that eat memory or time, signals, and fatal errors with requests in flight.

Hostile servers are a few lines of socket code on 127.0.0.1: they send whatever bytes a test
asks for, as slowly as it asks.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from target_aha import expressions
from target_aha.errors import ConfigError
from target_aha.expressions import BatchExpression, ExpressionError
from target_aha.sandbox import Sandbox
from tests.conftest import EXECUTABLE, TOKEN, record, schema, state

FEATURE = {"f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}}


class Hostile:
    """A TCP server on 127.0.0.1 that answers each connection with `answer(conn, request)`."""

    def __init__(self, answer: Callable[[socket.socket, bytes], None]) -> None:
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
        with conn, contextlib.suppress(OSError):  # the client hung up: as these tests want
            self.answer(conn, _read_request(conn))

    def __enter__(self) -> Hostile:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()


def _read_request(conn: socket.socket) -> bytes:
    """The whole request: TCP may deliver the headers and the body in separate reads."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := conn.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def trickle(data: bytes) -> Callable[[socket.socket, bytes], None]:
    """Send `data` one byte every 0.25 s (each read gets a byte well within any timeout)."""

    def answer(conn: socket.socket, _request: bytes) -> None:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(0.25)

    return answer


def huge(conn: socket.socket, _request: bytes) -> None:
    """A 200 with a 300 MB JSON body, sent as fast as the client reads."""
    chunk = b'"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",' * 20000  # 1 MB
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n[" % (300 * len(chunk) + 3))
    for _ in range(300):
        conn.sendall(chunk)
    conn.sendall(b"1]\n")


PEAK_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "sys.stderr.write(f'\\nPEAK_KIB={peak}\\n')\n"
    "sys.exit(code)\n"
)
"""Runs the target as the child of a small fresh process. Linux counts the RSS a child has when
it is forked in its `ru_maxrss`, so measured straight from pytest (which may hold hundreds of
MiB after other tests) the figure would be pytest's, not the target's."""


def run_measured(tmp_path: Path, args: list[str], stdin: str = "") -> tuple[int, str, str, float]:
    """Run the target; exit code, stdout, stderr and the target's own peak RSS in MiB."""
    (tmp_path / "in").write_text(stdin)
    with (tmp_path / "in").open() as i, (tmp_path / "out").open("w") as o, \
            (tmp_path / "err").open("w") as e:
        code = subprocess.call([sys.executable, "-c", PEAK_WRAPPER, EXECUTABLE, *args],
                               stdin=i, stdout=o, stderr=e)
    err, _, peak = (tmp_path / "err").read_text().rpartition("\nPEAK_KIB=")
    return code, (tmp_path / "out").read_text(), err, int(peak) / 1024


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


@pytest.mark.slow
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


@pytest.mark.slow
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


def answer_unless_stuck(conn: socket.socket, request: bytes) -> None:
    """Create a feature at once, unless the record's name says `stuck`: then never answer."""
    if b"stuck" in request:
        time.sleep(120)
        return
    body = json.dumps({"feature": {"id": "100", "reference_num": "PRJ1-1"}}).encode()
    conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nConnection: close"
                 b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def start_target(tmp_path: Path, config: dict, lines: str) -> subprocess.Popen[str]:
    """The target with `lines` written to its stdin, which stays open (a tap still running)."""
    proc = subprocess.Popen(
        [EXECUTABLE, "--config", str(write_config(tmp_path, config))], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(lines)
    proc.stdin.flush()
    return proc


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_ends_a_run_stuck_on_a_request(tmp_path: Path) -> None:
    # The first record settles (and its STATE is emitted); the second hangs on a server that
    # never answers, and the drain before STATE {"n": 2} waits for it. SIGTERM must end the
    # run within seconds, non-zero, with no STATE and no results line for the stuck record.
    with Hostile(answer_unless_stuck) as server:
        proc = start_target(tmp_path, {
            "base_url": server.url, "api_key": TOKEN, "streams": FEATURE,
            "state_interval_seconds": 1e-9,
        }, messages(schema("f"), record("f", {"name": "fine"}), state({"n": 1}),
                    record("f", {"name": "stuck"}), state({"n": 2})))
        wait_for(lambda: server.connections == 2)
        time.sleep(0.3)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert took < 6, took
    assert [json.loads(x) for x in out.splitlines()] == [{"n": 1}]
    assert [(r["status"], r["aha_id"]) for r in results(tmp_path)] == [("succeeded", "100")]
    assert "Stopped by SIGTERM before the end of the input: 1 records settled" in err
    assert "1 requests in flight were cut short" in err
    assert "Traceback" not in err


def test_sigint_with_everything_settled_emits_state_and_exits_non_zero(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    proc = start_target(tmp_path, {
        "base_url": sandbox.base_url, "api_key": TOKEN, "streams": FEATURE,
    }, messages(schema("f"), record("f", {"name": "a"}), record("f", {"name": "b"}),
                state({"n": 2})))
    wait_for(lambda: len(sandbox.objects("feature")) == 2)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert [json.loads(x) for x in out.splitlines()] == [{"n": 2}]
    assert [r["status"] for r in results(tmp_path)] == ["succeeded", "succeeded"]
    assert "every record read so far was settled" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_bad_line_waits_for_the_requests_in_flight(sandbox: Sandbox, run_target) -> None:
    # 10 creates in flight on a slow Aha! when an invalid line arrives: each object Aha!
    # created has its results line, so nothing created is unaccounted for.
    sandbox.configure(latency_ms=800)
    run = run_target(
        {"streams": FEATURE},
        [schema("f"), *(record("f", {"name": f"n{i}"}) for i in range(10)), "{not json"],
        sandbox=sandbox,
    )
    assert run.returncode == 1
    assert "Input line 12 is not valid JSON" in run.stderr
    created = {o["id"] for o in sandbox.objects("feature")}
    assert created
    assert {r["aha_id"] for r in run.results if r["status"] == "succeeded"} == created
    assert len(run.results) == len(created)
    assert run.states == []


# -- batch expressions: memory, time, size and nesting are bounded ----------------------------

RECORDS = [{"title": f"t{i}"} for i in range(3)]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("{'x': 'a'.ljust(3000000000)}", "it needed more than 512 MiB of memory"),
        ("{'x': ''.ljust(20000000, 'a')}", "its result is larger than 16 MiB"),
        ("{'x': json.loads(''.ljust(100000, '['))}", "nested too deeply"),
        ("[sha256(''.ljust(100000000, 'a')) for r in records * 1000]", "ran longer than 1 s"),
    ],
    ids=["memory", "size", "nesting", "spin"],
)
def test_a_batch_expression_cannot_exhaust_memory_or_time(
    monkeypatch: pytest.MonkeyPatch, code: str, error: str
) -> None:
    monkeypatch.setattr(expressions, "EVAL_SECONDS", 1.0)  # the spin would take minutes
    started = time.monotonic()
    with pytest.raises(ExpressionError, match="w failed") as caught:
        BatchExpression(code, "w").evaluate(RECORDS, "s")
    assert error in str(caught.value)
    assert time.monotonic() - started < 5


def test_a_deeply_nested_expression_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"not a valid expression \(it is nested too deeply\)"):
        BatchExpression("-" * 100000 + "1", "w")


def test_a_memory_hungry_expression_stops_the_run_with_its_message(
    sandbox: Sandbox, run_target
) -> None:
    config = {"streams": {"c": {"endpoint": "custom", "url": "/echo/bulk/ideas",
                                "key_property": "k",
                                "batch": {"size": 2, "algorithm": "code",
                                          "code": "{'x': 'a'.ljust(3000000000)}"}}}}
    run = run_target(config, [schema("c"), record("c", {"k": "K0"}), record("c", {"k": "K1"}),
                              state({"n": 2})], sandbox=sandbox)
    assert run.returncode == 1
    assert "streams.c.batch.code failed: it needed more than 512 MiB of memory" in run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.requests() == []
    assert [line["status"] for line in run.results] == ["rejected", "rejected"]
    assert run.states == []


def test_a_rejected_record_under_fail_waits_for_the_others_in_flight(
    sandbox: Sandbox, run_target
) -> None:
    # One of 8 concurrent creates is refused (422, on_record_error: fail): the 7 others are
    # in flight on a slow Aha! and are created; each of them still gets its results line.
    sandbox.configure(latency_ms=800)
    names = ["FAIL-422", *(f"n{i}" for i in range(7))]
    run = run_target({"streams": FEATURE},
                     [schema("f"), *(record("f", {"name": n}) for n in names), state({"n": 8})],
                     sandbox=sandbox)
    assert run.returncode == 1
    assert "Record rejected" in run.stderr
    created = {o["id"] for o in sandbox.objects("feature")}
    assert len(created) == 7
    assert {r["aha_id"] for r in run.results if r["status"] == "succeeded"} == created
    assert [r["status"] for r in run.results].count("rejected") == 1
    assert run.states == []
