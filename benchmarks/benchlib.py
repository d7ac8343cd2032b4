"""Shared pieces of the benchmarks: a sandbox process, Singer input, measured target runs, and
the figures each benchmark returns with its target.

Every benchmark runs the real `target-aha` executable as a child process and measures it from
outside: wall time, CPU (user + sys) and peak RSS come from `os.wait4` on that one child, so
the sandbox (another child, still running) never mixes into the figures.

Each benchmark module has `run(quick=..., ...) -> list[Figure]`, which prints its detail lines
and returns its figures, and a `main()` built with `cli()`: `--check` makes a missed target
exit 1 (naming it), so CI can hold the targets without a timed assertion in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXECUTABLE = shutil.which("target-aha", path=str(BIN)) or "target-aha"
TOKEN = "sandbox-token"
STREAM = "features"
RELEASE = "PRJ1-R-1"
HIGH_RATE = 1_000_000
"""A client-side limit that never binds (the sandbox is the only brake)."""

SCHEMA_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "description": {"type": ["string", "null"]},
    "start_date": {"type": ["string", "null"], "format": "date"},
    "due_date": {"type": ["string", "null"], "format": "date"},
    "score": {"type": ["number", "null"]},
    "tags": {"type": ["array", "null"], "items": {"type": "string"}},
}


def feature(i: int) -> dict[str, Any]:
    """One realistic feature record (~250 bytes of JSON): text, dates, a number, a list."""
    return {
        "id": i,
        "name": f"Feature {i}: import intake request {i * 7919 % 100000}",
        "description": f"<p>Requested by customer {i % 97}; see ticket INT-{i}.</p>",
        "start_date": f"2025-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
        "due_date": f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
        "score": (i % 1000) / 10,
        "tags": ["intake", f"team-{i % 5}"],
    }


def write_input(path: Path, n: int, *, keyed: bool = False, stream: str = STREAM) -> Path:
    """SCHEMA, `n` feature RECORDs and a final STATE, one JSON message per line."""
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({
            "type": "SCHEMA", "stream": stream,
            "schema": {"type": "object", "properties": SCHEMA_PROPERTIES},
            "key_properties": ["id"] if keyed else [],
        }) + "\n")
        for i in range(n):
            out.write(json.dumps({"type": "RECORD", "stream": stream, "record": feature(i)}) + "\n")
        out.write(json.dumps({"type": "STATE", "value": {"bookmark": n}}) + "\n")
    return path


def feature_config(base_url: str | None = None, **settings: Any) -> dict[str, Any]:
    """A config sending the features stream to create_feature in PRJ1-R-1."""
    config: dict[str, Any] = {
        "streams": {STREAM: {"endpoint": "create_feature", "release_id": RELEASE}},
        "ledger_path": "",
    }
    if base_url is not None:
        config.update(base_url=base_url, api_key=TOKEN)
    else:
        config.update(subdomain="benchmark")
    config.update(settings)
    return config


class BenchmarkFailed(Exception):
    """A run that a benchmark's figures depend on failed, so there are no figures."""


@dataclass(frozen=True)
class Figure:
    """One measured figure of a benchmark and the target it is held to (`value op bound`)."""

    benchmark: str
    what: str
    value: float
    op: str  # ">=" or "<="
    bound: float

    @property
    def ok(self) -> bool:
        """Whether the figure meets its target."""
        return self.value >= self.bound if self.op == ">=" else self.value <= self.bound

    def __str__(self) -> str:
        return (f"{self.benchmark}: {self.what} = {self.value:.3g} (target {self.op} "
                f"{self.bound:g}: {verdict(self.ok)})")


def missed(figures: list[Figure]) -> list[Figure]:
    """The figures that miss their targets."""
    return [figure for figure in figures if not figure.ok]


def cli(parser: argparse.ArgumentParser, run: Callable[..., list[Figure]]) -> None:
    """A benchmark's `main`: parse the options into `run`'s keywords, run it, and with
    `--check` exit 1 naming each missed target (exit 1 with the reason if a run failed)."""
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a figure misses its target")
    options = vars(parser.parse_args())
    check = options.pop("check")
    try:
        figures = run(**options)
    except BenchmarkFailed as failed:
        sys.exit(f"{parser.prog}: FAILED: {failed}")
    if check and missed(figures):
        sys.exit("missed: " + "; ".join(map(str, missed(figures))))


@dataclass
class Measured:
    """One child process's outcome as seen from outside."""

    returncode: int
    wall: float
    user: float
    system: float
    max_rss_kib: int
    stderr_tail: str

    @property
    def cpu(self) -> float:
        """User + system CPU seconds of the child."""
        return self.user + self.system

    def check(self, what: str) -> Measured:
        """Stop the benchmark if the run failed: a figure from a failed run means nothing."""
        if self.returncode != 0:
            raise BenchmarkFailed(f"{what} exited {self.returncode}:\n{self.stderr_tail}")
        return self


def measure(
    command: list[str], input_path: Path, *, cwd: Path, stderr_path: Path | None = None
) -> Measured:
    """Run `command` with `input_path` on stdin; stdout discarded, stderr to a file or nowhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_AHA_")}
    with input_path.open("rb") as stdin, _sink(stderr_path) as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    tail = ""
    if stderr_path is not None and stderr_path.exists():
        with stderr_path.open("rb") as f:
            f.seek(max(0, stderr_path.stat().st_size - 3000))
            tail = f.read().decode(errors="replace")
    return Measured(proc.returncode, wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, tail)


@contextmanager
def _sink(path: Path | None) -> Iterator[IO[bytes] | int]:
    if path is None:
        yield subprocess.DEVNULL
        return
    with path.open("wb") as f:
        yield f


def run_target(
    config: dict[str, Any], input_path: Path, workdir: Path, name: str, *,
    keep_stderr: bool = True, program: list[str] | None = None,
) -> Measured:
    """`target-aha --config <name>.json < input`; stderr kept in <name>.stderr unless told.

    `program` replaces the executable (a wrapper that patches target-aha for a what-if)."""
    config_path = workdir / f"{name}.json"
    config_path.write_text(json.dumps(config))
    return measure(
        [*(program or [EXECUTABLE]), "--config", str(config_path)], input_path, cwd=workdir,
        stderr_path=workdir / f"{name}.stderr" if keep_stderr else None,
    )


class SandboxProcess:
    """`python -m target_aha.sandbox` in its own process, driven over its admin HTTP API."""

    def __init__(self, workdir: Path, *, per_second: int | None = None,
                 per_minute: int | None = None, latency_ms: float = 0) -> None:
        port_file = workdir / "sandbox.url"
        port_file.unlink(missing_ok=True)  # a stale file would name a stopped sandbox
        command = [sys.executable, "-m", "target_aha.sandbox", "--port", "0",
                   "--port-file", str(port_file), "--latency-ms", str(latency_ms)]
        if per_second is not None:
            command += ["--rate-per-second", str(per_second)]
        if per_minute is not None:
            command += ["--rate-per-minute", str(per_minute)]
        self._log = (workdir / "sandbox.log").open("wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=self._log, cwd=ROOT)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchmarkFailed(f"the sandbox did not start; see {workdir / 'sandbox.log'}")
            time.sleep(0.05)
        self.base_url = port_file.read_text().strip()
        self.site = self.base_url.removesuffix("/api/v1")

    def admin(self, method: str, op: str, body: dict[str, Any] | None = None) -> Any:
        """Call /__sandbox/<op>; returns the parsed JSON answer (None for 204)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.site}/__sandbox/{op}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def stats(self) -> dict[str, int]:
        """Request count, 429s (`throttled`), busiest 1 s and 60 s windows."""
        return self.admin("GET", "stats")

    def arrivals(self) -> list[float]:
        """Arrival times of the logged /api/v1 requests, in order."""
        return [entry["at"] for entry in self.admin("GET", "requests")]

    def configure(self, **changes: Any) -> None:
        """POST /__sandbox/config."""
        self.admin("POST", "config", changes)

    def reset(self) -> None:
        """Seed data again; no requests, statistics or used budget."""
        self.admin("POST", "reset")

    def stop(self) -> None:
        """Terminate the process (it stops cleanly on SIGTERM)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextmanager
def workdir(name: str) -> Iterator[Path]:
    """A temporary directory for one benchmark (kept if BENCH_KEEP=1, for a post-mortem)."""
    path = Path(tempfile.mkdtemp(prefix=f"target-aha-bench-{name}-"))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"  (files kept in {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


def rate_of(arrivals: list[float]) -> tuple[float, float]:
    """(requests per second from first to last arrival, that span in seconds)."""
    if len(arrivals) < 2:
        return 0.0, 0.0
    span = arrivals[-1] - arrivals[0]
    return (len(arrivals) - 1) / span, span


def load_note() -> str:
    """The machine's load, printed with the figures: other work skews CPU and wall times."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def verdict(ok: bool) -> str:
    """How a figure compares with its target, for the summary line."""
    return "ok" if ok else "MISSED"


def peak_ratio(peak: Callable[[int, str], Measured], small: int, large: int, kind: str,
               unit: str = "records") -> float:
    """Run `peak(n, name)` at both sizes, print both runs, and return the ratio of their peaks
    (peak RSS of the large run / the small run): flat memory is a ratio near 1."""
    runs = [peak(n, f"{kind.replace(' ', '-')}-{n}") for n in (small, large)]
    for n, run in zip((small, large), runs, strict=True):
        print(f"  {kind} {n:>7} {unit}: peak RSS {run.max_rss_kib / 1024:6.1f} MiB, "
              f"wall {run.wall:6.2f} s, CPU {run.cpu:6.2f} s", flush=True)
    ratio = runs[1].max_rss_kib / runs[0].max_rss_kib
    growth = (runs[1].max_rss_kib - runs[0].max_rss_kib) / 1024
    print(f"  {kind}: {growth:+.1f} MiB for {large - small} more {unit} "
          f"({growth * 1024 * 1024 / (large - small):+.0f} bytes each); ratio {ratio:.3f}")
    return ratio
