"""Shared fixtures: a sandbox per test, and running `target-aha` as a user would.

`run_target` runs the console script's entry point in a fresh process: a fork of a warm zygote
(tests/zygote.py) unless the run changes a start-up variable or AHA_TESTS_REAL_EXECUTABLE=1 is
set, in which case (as for the tests that call EXECUTABLE directly) the real executable starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from target_aha.sandbox import Sandbox
from tests.zygote import Zygote

TOKEN = "sandbox-token"
REPO = Path(__file__).parent.parent
EXECUTABLE = shutil.which("target-aha", path=str(Path(sys.executable).parent)) or "target-aha"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh sandbox on a free port."""
    with Sandbox(token=TOKEN) as sb:
        yield sb


@dataclass
class Run:
    """What a user sees of one run: exit code, stdout (STATE lines), stderr, results file."""

    returncode: int
    stdout: str
    stderr: str
    results_path: Path

    @property
    def states(self) -> list[dict[str, Any]]:
        """STATE values the target emitted on stdout, in order."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def results(self) -> list[dict[str, Any]]:
        """The results file's lines."""
        if not self.results_path.exists():
            return []
        return [json.loads(line) for line in self.results_path.read_text().splitlines()]

    @property
    def dry_run_lines(self) -> list[dict[str, Any]]:
        """Requests a dry run printed on stderr (one JSON object per line)."""
        out = []
        for line in self.stderr.splitlines():
            if line.startswith('{"method"'):
                out.append(json.loads(line))
        return out


def schema(stream: str, properties: dict[str, Any] | None = None,
           key_properties: list[str] | None = None) -> dict[str, Any]:
    """A SCHEMA message; properties default to a permissive object."""
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": properties or {}},
        "key_properties": key_properties or [],
    }


def record(stream: str, rec: dict[str, Any]) -> dict[str, Any]:
    """A RECORD message."""
    return {"type": "RECORD", "stream": stream, "record": rec}


def state(value: dict[str, Any]) -> dict[str, Any]:
    """A STATE message."""
    return {"type": "STATE", "value": value}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `postgres` the tests that start the server, wherever they live."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def _user_env() -> dict[str, str]:
    """The environment a run starts from: the test session's, without target-aha settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TARGET_AHA_")}


@pytest.fixture(scope="session")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote | None]:
    """One warm `target-aha` per test session (per xdist worker), started on first use."""
    if os.environ.get("AHA_TESTS_REAL_EXECUTABLE") == "1":
        yield None
        return
    started = Zygote(EXECUTABLE, _user_env(), tmp_path_factory.mktemp("zygote") / "log")
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def run_target(tmp_path: Path, zygote: Zygote | None):
    """Run `target-aha --config <file>` with Singer messages on stdin."""
    counter = iter(range(1000))

    def run(
        config: dict[str, Any],
        messages: list[dict[str, Any] | str],
        *,
        sandbox: Sandbox | None = None,
        timeout: float = 120,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Run:
        n = next(counter)
        full = dict(config)
        if sandbox is not None:
            full.setdefault("base_url", sandbox.base_url)
            full.setdefault("api_key", TOKEN)
        results_path = tmp_path / f"results-{n}.jsonl"
        full.setdefault("results_path", str(results_path))
        full.setdefault("ledger_path", "")
        config_path = tmp_path / f"config-{n}.json"
        config_path.write_text(json.dumps(full))
        stdin = "".join(
            (m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages
        )
        env = _user_env() | (env or {})
        argv = [EXECUTABLE, "--config", str(config_path), *extra_args]
        if zygote is not None and zygote.stands_in_for(env):
            proc = zygote.run(argv, input=stdin, env=env, cwd=os.getcwd(), timeout=timeout)
        else:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=timeout, env=env, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr, Path(full["results_path"]))

    return run


def _pg_bin(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server (Debian's `postgresql` package) started for this test session.

    As root, the server runs as the `postgres` user (initdb refuses root). `.ci/run` installs
    the package when it is missing.
    """
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.fail("PostgreSQL server binaries not found: apt-get install postgresql")
    # Not under pytest's root-only tmp dir: the server user must be able to reach its files.
    base = Path(tempfile.mkdtemp(prefix="target-aha-pg-"))
    data = base / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*prefix, initdb, "-D", str(data), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"),
                    "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_meltano() -> str | None:
    """$MELTANO_EXECUTABLE, else the project's .venv-meltano, else meltano on PATH."""
    candidates = [os.environ.get("MELTANO_EXECUTABLE"),
                  str(REPO / ".venv-meltano" / "bin" / "meltano"),
                  shutil.which("meltano")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
