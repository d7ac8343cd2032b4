"""Rate limits and network faults: every record lands exactly once, and never over the limit."""

from __future__ import annotations

from collections import Counter

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import record, schema, state


def feature_run(n: int, **config) -> tuple[dict, list[dict]]:
    cfg = {"streams": {"f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1",
                             "key_property": "id"}}, **config}
    messages = [schema("f"), *(record("f", {"id": i, "name": f"feature {i}"}) for i in range(n)),
                state({"done": n})]
    return cfg, messages


def names_once(sb: Sandbox, n: int) -> None:
    counts = Counter(o["name"] for o in sb.objects("feature"))
    assert counts == Counter({f"feature {i}": 1 for i in range(n)})


@pytest.mark.slow
def test_within_the_sandbox_limit_no_429(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(rate_per_second=10, rate_per_minute=1000)
    cfg, messages = feature_run(30, max_requests_per_second=10, max_concurrency=8)
    run = run_target(cfg, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    stats = sandbox.stats()
    assert stats["throttled"] == 0
    assert stats["max_per_second"] <= 10
    names_once(sandbox, 30)
    assert run.states == [{"done": 30}]


@pytest.mark.slow
def test_minute_window_is_respected(sandbox: Sandbox, run_target) -> None:
    # The minute window stands in for Aha!'s 300/min: scaled down, 12 per "minute" would
    # take 60 s, so only check that a second window also holds under a low second limit.
    sandbox.configure(rate_per_second=4, rate_per_minute=1000)
    cfg, messages = feature_run(12, max_requests_per_second=4)
    run = run_target(cfg, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert sandbox.stats()["throttled"] == 0
    assert sandbox.stats()["max_per_second"] <= 4


@pytest.mark.slow
def test_429s_are_absorbed_when_the_sandbox_is_stricter(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(rate_per_second=5, rate_per_minute=1000)
    cfg, messages = feature_run(30, max_requests_per_second=50, max_concurrency=8)
    run = run_target(cfg, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert sandbox.stats()["throttled"] > 0
    names_once(sandbox, 30)
    assert [line["status"] for line in run.results] == ["succeeded"] * 30
    assert run.states == [{"done": 30}]


@pytest.mark.slow
def test_retry_after_is_honoured(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(rate_per_second=5, send_retry_after=True)
    cfg, messages = feature_run(15, max_requests_per_second=50)
    run = run_target(cfg, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    names_once(sandbox, 15)


def test_5xx_and_dropped_connections_land_every_record_once(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(error_rate=0.2, drop_rate=0.05)
    cfg, messages = feature_run(60, max_requests_per_second=200, max_requests_per_minute=100000)
    run = run_target(cfg, messages, sandbox=sandbox, timeout=300)
    assert run.returncode == 0, run.stderr
    stats = sandbox.stats()
    assert stats["errors_injected"] > 0
    assert stats["dropped"] > 0
    names_once(sandbox, 60)
    assert Counter(line["status"] for line in run.results) == {"succeeded": 60}
    assert run.states == [{"done": 60}]


def test_running_out_of_retries_is_fatal_and_emits_no_state(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(error_rate=1.0, error_status=503)
    cfg, messages = feature_run(3, max_retries=2)
    run = run_target(cfg, messages, sandbox=sandbox)
    assert run.returncode == 1
    assert "after 2 retries" in run.stderr
    assert "503" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states == []


def test_unreachable_aha_is_fatal(run_target) -> None:
    cfg, messages = feature_run(1, max_retries=1, request_timeout=2)
    run = run_target({**cfg, "base_url": "http://127.0.0.1:9/api/v1", "api_key": "k"}, messages)
    assert run.returncode == 1
    assert "ConnectionError" in run.stderr
    assert run.states == []
