"""Concurrency with per-object order, the shared limiter under load, progress, 429 pressure."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import record, schema, state


def test_updates_to_one_object_keep_input_order(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(latency_ms=5, latency_jitter_ms=60)
    epic = sandbox.objects("epic")[0]["reference_num"]
    messages = [schema("renames")]
    for i in range(12):
        messages.append(record("renames", {"epic_id": epic, "name": f"v{i}"}))
        messages.append(record("renames", {"epic_id": "PRJ1-E-404", "name": f"other {i}"}))
    run = run_target(
        {"on_record_error": "skip", "max_concurrency": 8,
         "streams": {"renames": {"endpoint": "update_epic"}}},
        messages, sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    seen = [r["body"]["epic"]["name"] for r in sandbox.requests()
            if r["path"] == f"/api/v1/epics/{epic}"]
    assert seen == [f"v{i}" for i in range(12)]
    assert sandbox.objects("epic")[0]["name"] == "v11"


def test_unrelated_records_are_sent_concurrently(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(latency_ms=200)
    run = run_target(
        {"max_concurrency": 8, "streams": {"t": {"endpoint": "create_team"}}},
        [schema("t"), *(record("t", {"name": f"team {i}"}) for i in range(16))],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    arrivals = sorted(r["at"] for r in sandbox.requests())
    overlapping = max(sum(1 for t in arrivals if a <= t < a + 0.15) for a in arrivals)
    assert overlapping >= 4  # several requests were in flight within one latency period


@pytest.mark.slow
def test_shared_limiter_holds_under_concurrency(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(latency_ms=10, latency_jitter_ms=20)
    streams = {f"s{i}": {"endpoint": "create_team"} for i in range(3)}
    messages = []
    for i in range(3):
        messages += [schema(f"s{i}"), *(record(f"s{i}", {"name": f"{i}-{j}"}) for j in range(15))]
    run = run_target(
        {"max_concurrency": 16, "max_requests_per_second": 12, "streams": streams},
        messages, sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    stats = sandbox.stats()
    assert stats["requests"] == 45
    assert stats["max_per_second"] <= 12


@pytest.mark.slow
def test_progress_lines_on_a_long_run(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(latency_ms=50)
    run = run_target(
        {"progress_interval_seconds": 0.25, "max_concurrency": 2,
         "streams": {"t": {"endpoint": "create_team"}}},
        [schema("t"), *(record("t", {"name": f"team {i}"}) for i in range(40))],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    lines = re.findall(
        r"progress: (\d+) records read, (\d+) requests sent \(([\d.]+)/s\), (\d+) unchanged, "
        r"(\d+) rejected, (\d+) x 429", run.stderr)
    assert len(lines) >= 2
    sent = [int(line[1]) for line in lines]
    assert sent == sorted(sent) and 0 < sent[-1] <= 40
    assert any(float(line[2]) > 0 for line in lines)


def test_state_interval_settles_and_emits_during_the_run(sandbox: Sandbox, run_target) -> None:
    # More records than the dispatcher's window, so reading waits on sending for ~1 s.
    sandbox.configure(latency_ms=30)
    messages = [schema("t")]
    for i in range(240):
        messages += [record("t", {"name": f"team {i}"}), state({"i": i})]
    run = run_target(
        {"state_interval_seconds": 0.2, "max_requests_per_second": 1000,
         "streams": {"t": {"endpoint": "create_team"}}},
        messages, sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    values = [s["i"] for s in run.states]
    assert len(values) >= 3  # intermediate STATEs, not only the last one
    assert values == sorted(values) and values[-1] == 239


@pytest.mark.slow
def test_under_pressure_every_record_lands_once(sandbox: Sandbox, run_target) -> None:
    # Aha!'s real default budget on the target's side, and a sandbox that answers 429 to one
    # request in three.
    sandbox.configure(throttle_rate=1 / 3)
    run = run_target(
        {"streams": {"t": {"endpoint": "create_team", "key_property": "id"}}},
        [schema("t"), *(record("t", {"id": i, "name": f"team {i}"}) for i in range(24)),
         state({"done": True})],
        sandbox=sandbox, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert sandbox.stats()["throttled"] > 0
    assert Counter(o["name"] for o in sandbox.objects("team")) == Counter(
        {f"team {i}": 1 for i in range(24)})
    assert "answered 429 (rate limit): all senders wait" in run.stderr
    assert run.states == [{"done": True}]


@pytest.mark.slow
def test_minute_window_holds(sandbox: Sandbox, run_target) -> None:
    # The one slow test (about a minute): the 21st request must wait for the minute window.
    sandbox.configure(rate_per_minute=20)
    run = run_target(
        {"max_requests_per_minute": 20, "max_requests_per_second": 100,
         "streams": {"t": {"endpoint": "create_team"}}},
        [schema("t"), *(record("t", {"name": f"team {i}"}) for i in range(23))],
        sandbox=sandbox, timeout=180,
    )
    assert run.returncode == 0, run.stderr
    stats = sandbox.stats()
    assert stats["requests"] == 23
    assert stats["throttled"] == 0
    assert stats["max_per_minute"] <= 20
    arrivals = sorted(r["at"] for r in sandbox.requests())
    assert arrivals[20] - arrivals[0] >= 60
