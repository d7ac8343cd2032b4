"""Crash-safe creates: SIGKILL at any point, answers that never arrive, two runs at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import EXECUTABLE, TOKEN, record, schema, state

N = 500


def write_input(path: Path, n: int) -> Path:
    lines = [schema("intake", key_properties=["id"]),
             *(record("intake", {"id": f"REQ-{i}", "name": f"request {i}"}) for i in range(n)),
             state({"done": n})]
    path.write_text("".join(json.dumps(m) + "\n" for m in lines))
    return path


def write_config(path: Path, sb: Sandbox, ledger: str, **extra: Any) -> Path:
    config = {
        "base_url": sb.base_url, "api_key": TOKEN, "ledger_path": ledger,
        "max_requests_per_second": 1000, "max_requests_per_minute": 100000,
        "streams": {"intake": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}},
        **extra,
    }
    path.write_text(json.dumps(config))
    return path


def start(config: Path, data: Path, results: Path) -> subprocess.Popen:
    cfg = json.loads(config.read_text())
    cfg["results_path"] = str(results)
    config.write_text(json.dumps(cfg))
    return subprocess.Popen(
        [EXECUTABLE, "--config", str(config)], stdin=data.open(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def posts_received(sb: Sandbox) -> int:
    """Creates the sandbox has received so far."""
    return sum(r["method"] == "POST" for r in sb.requests())


def wait_for(condition: Any, seconds: float = 60) -> None:
    """Poll `condition` until it holds (the test fails after `seconds`)."""
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def one_per_key(sb: Sandbox, n: int) -> None:
    counts = Counter(o["name"] for o in sb.objects("feature"))
    assert counts == Counter({f"request {i}": 1 for i in range(n)})


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.configure(latency_ms=60, latency_jitter_ms=40)
    data = write_input(tmp_path / "in.jsonl", N)
    config = write_config(tmp_path / "c.json", sandbox, str(tmp_path / "ledger.sqlite"))
    kills = 0
    # Kill points by how far the load got (POSTs the sandbox received since the start), not
    # by the clock, so a slow start-up on a busy machine cannot move them past the end; the
    # last kill comes during start-up.
    for posts in (5, 40, 90, 0):
        before = len(sandbox.objects("feature"))
        seen = posts_received(sandbox)
        proc = start(config, data, tmp_path / f"results-{kills}.jsonl")
        if posts:
            wait_for(lambda target=seen + posts, running=proc:
                     posts_received(sandbox) >= target or running.poll() is not None)
        else:
            time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        assert len(sandbox.objects("feature")) >= before
    assert kills >= 3
    created = len(sandbox.objects("feature"))
    assert 0 < created < N  # the kills really interrupted the load

    proc = start(config, data, tmp_path / "results-final.jsonl")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [{"done": N}]
    one_per_key(sandbox, N)
    results = [json.loads(x) for x in (tmp_path / "results-final.jsonl").read_text().splitlines()]
    assert len(results) == N
    assert {r["status"] for r in results} == {"succeeded"}


@pytest.mark.slow
def test_commit_then_timeout_faults_create_each_key_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.configure(commit_timeout_rate=0.1, commit_timeout_seconds=1.0)
    data = write_input(tmp_path / "in.jsonl", 150)
    config = write_config(tmp_path / "c.json", sandbox, str(tmp_path / "ledger.sqlite"),
                          request_timeout=0.5)
    proc = start(config, data, tmp_path / "results.jsonl")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert sandbox.stats()["commit_timeouts"] > 0
    one_per_key(sandbox, 150)
    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert Counter(r["status"] for r in results) == {"succeeded": 150}
    by_key = {r["key"]: r["aha_id"] for r in results}
    assert set(by_key.values()) == {o["id"] for o in sandbox.objects("feature")}


@pytest.mark.slow
def test_two_runs_at_once_share_a_postgres_ledger(
    sandbox: Sandbox, tmp_path: Path, postgres_url: str
) -> None:
    sandbox.configure(latency_ms=20, latency_jitter_ms=20)
    data = write_input(tmp_path / "in.jsonl", 120)
    procs = [
        start(write_config(tmp_path / f"c{i}.json", sandbox, postgres_url,
                           streams={"intake": {"endpoint": "create_feature",
                                               "release_id": "PRJ1-R-1"}}),
              data, tmp_path / f"results-{i}.jsonl")
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    one_per_key(sandbox, 120)
    ops = Counter()
    for i in range(2):
        for line in (tmp_path / f"results-{i}.jsonl").read_text().splitlines():
            ops[json.loads(line)["operation"]] += 1
    assert ops == {"create": 120, "unchanged": 120}


@pytest.mark.slow
def test_commit_then_5xx_creates_each_key_once(sandbox: Sandbox, tmp_path: Path) -> None:
    # A gateway answering 502 after Aha! committed: a blind retry would create a duplicate.
    sandbox.configure(commit_error_rate=0.15, error_status=502)
    data = write_input(tmp_path / "in.jsonl", 120)
    config = write_config(tmp_path / "c.json", sandbox, str(tmp_path / "ledger.sqlite"))
    proc = start(config, data, tmp_path / "results.jsonl")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert sandbox.stats()["commit_errors"] > 0
    one_per_key(sandbox, 120)
