"""The zygote stands in for the executable: the same run gives the same answer either way.

`run_target` forks tests/zygote.py instead of starting `target-aha`; these compare the two on
runs whose output is deterministic, and check what a stand-in must also do (time out and kill,
fall back to the real executable for a start-up variable, refuse to fork beside a thread).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import EXECUTABLE, TOKEN, record, schema, state
from tests.hostile import Hostile, Reply, Seen
from tests.zygote import Zygote

FEATURES = {"streams": {"f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1",
                              "key_property": "id"}}}
LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[.,]\d+\S*\s*", re.M)
DURATION = re.compile(r"\d+(\.\d+)? ?(ms|s)\b")


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_AHA_")}
    started = Zygote(EXECUTABLE, env, tmp_path_factory.mktemp("zygote") / "log")
    try:
        yield started
    finally:
        started.close()


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TARGET_AHA_")}


def real(args: list[str], stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXECUTABLE, *args], input=stdin, capture_output=True, text=True,
                          env=user_env(), cwd=cwd, timeout=60, check=False)


def forked(zygote: Zygote, args: list[str], stdin: str, cwd: Path,
           ) -> subprocess.CompletedProcess[str]:
    return zygote.run([EXECUTABLE, *args], input=stdin, env=user_env(), cwd=str(cwd),
                      timeout=60)


def comparable(stderr: str) -> str:
    """stderr without what differs between any two runs: times, durations, metric values,
    process and run ids."""
    text = DURATION.sub("<t>", LOG_TIME.sub("", stderr))
    text = re.sub(r'"(value|pid)":\s*[0-9.e-]+', r'"\1":<n>', text)
    return re.sub(r"\b[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", "<id>", text)


def test_version_and_about_are_the_executables(zygote: Zygote, tmp_path: Path) -> None:
    for args in (["--version"], ["--about", "--format=json"]):
        ours, theirs = forked(zygote, args, "", tmp_path), real(args, "", tmp_path)
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode, theirs.stdout, theirs.stderr), args


def test_a_load_ends_the_same_way(zygote: Zygote, sandbox: Sandbox, tmp_path: Path) -> None:
    # One record lands, STATE follows it, the next is refused with 422: exit 1, one STATE line.
    messages = [schema("f"), record("f", {"id": "K1", "name": "one"}), state({"n": 1}),
                record("f", {"id": "BAD", "name": "FAIL-422"}), state({"n": 2})]
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({
        **FEATURES, "base_url": sandbox.base_url, "api_key": TOKEN, "ledger_path": "",
        "results_path": "results.jsonl", "state_interval_seconds": 1e-9, "max_concurrency": 1}))
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = forked(zygote, ["--config", str(config)], stdin, tmp_path / "ours")
    sandbox.reset()
    theirs = real(["--config", str(config)], stdin, tmp_path / "theirs")
    assert ours.returncode == theirs.returncode == 1
    assert ours.stdout == theirs.stdout == json.dumps({"n": 1}) + "\n"
    assert comparable(ours.stderr) == comparable(theirs.stderr)
    rows = [[{k: v for k, v in json.loads(line).items() if k not in ("run_id", "at", "aha_id")}
             for line in (tmp_path / side / "results.jsonl").read_text().splitlines()]
            for side in ("ours", "theirs")]
    assert rows[0] == rows[1]
    assert len(rows[0]) == 2


def test_a_run_past_its_timeout_is_killed(zygote: Zygote, tmp_path: Path) -> None:
    released = threading.Event()

    def stall(seen: Seen) -> Reply:
        released.wait(30)
        return 200, {}, b"{}"

    with Hostile(stall) as aha:
        config = tmp_path / "c.json"
        config.write_text(json.dumps({**FEATURES, "base_url": aha.url + "/api/v1",
                                      "api_key": TOKEN, "ledger_path": "",
                                      "results_path": str(tmp_path / "r.jsonl")}))
        stdin = json.dumps(schema("f")) + "\n" + json.dumps(record("f", {"id": "1"})) + "\n"
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            zygote.run([EXECUTABLE, "--config", str(config)], input=stdin, env=user_env(),
                       cwd=str(tmp_path), timeout=2)
        assert time.monotonic() - started < 10
        released.set()


def test_a_start_up_variable_goes_to_the_real_executable(zygote: Zygote) -> None:
    env = dict(os.environ)
    assert zygote.stands_in_for({k: v for k, v in env.items() if not k.startswith("TARGET_")})
    assert not zygote.stands_in_for({**env, "PYTHONWARNINGS": "default"})
    assert not zygote.stands_in_for({**env, "PYTHONPATH": "/elsewhere"})
