"""`--send-test` (spec §13) through the real executable: one real record per stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from target_aha.sandbox import Sandbox
from tests.conftest import TOKEN, record, schema, state


def config(tmp_path: Path, *streams: str) -> dict[str, Any]:
    return {"ledger_path": str(tmp_path / "ledger.sqlite"),
            "streams": {s: {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}
                        for s in streams or ("s",)}}


def keyed(stream: str, n: int) -> list[dict[str, Any]]:
    return [record(stream, {"id": f"{stream}{i}", "name": f"{stream} thing {i}"})
            for i in range(n)]


def exchanges(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_send_test_sends_the_first_record_then_a_full_load_makes_one_object_per_key(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    messages = [schema("s", key_properties=["id"]), *keyed("s", 3), state({"n": 3})]
    tried = run_target(config(tmp_path), messages, sandbox=sandbox, extra_args=("--send-test",))
    assert tried.returncode == 0, tried.stderr
    assert TOKEN not in tried.stdout and TOKEN not in tried.stderr
    shown = exchanges(tried.stdout)  # no STATE line: every line is an exchange
    assert [(e["request"]["method"], e["answer"]["status"]) for e in shown] == [("POST", 200)]
    assert shown[0]["request"]["headers"]["Authorization"] == "Bearer ***"
    assert shown[0]["request"]["body"] == {"feature": {"id": "s0", "name": "s thing 0"}}
    assert shown[0]["answer"]["body"]["feature"]["name"] == "s thing 0"  # the whole answer
    assert [o["name"] for o in sandbox.objects("feature")] == ["s thing 0"]
    assert [(r["key"], r["operation"]) for r in tried.results] == [("s0", "create")]

    full = run_target(config(tmp_path), messages, sandbox=sandbox)
    assert full.returncode == 0, full.stderr
    assert sorted((r["key"], r["operation"]) for r in full.results) == [
        ("s0", "unchanged"), ("s1", "create"), ("s2", "create")]
    assert sorted(o["name"] for o in sandbox.objects("feature")) == [
        "s thing 0", "s thing 1", "s thing 2"]
    assert full.states == [{"n": 3}]


def test_send_test_stops_reading_once_every_configured_stream_had_a_record(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    a, b = keyed("a", 3), keyed("b", 3)
    messages: list[dict[str, Any] | str] = [
        schema("a", key_properties=["id"]), schema("b", key_properties=["id"]),
        a[0], a[1], state({"n": 1}), b[0], a[2], "this line is never read", b[1]]
    tried = run_target(config(tmp_path, "a", "b"), messages, sandbox=sandbox,
                       extra_args=("--send-test",))
    assert tried.returncode == 0, tried.stderr
    assert sorted(r["key"] for r in tried.results) == ["a0", "b0"]
    assert [e["request"]["method"] for e in exchanges(tried.stdout)] == ["POST", "POST"]
    assert sorted(o["name"] for o in sandbox.objects("feature")) == ["a thing 0", "b thing 0"]
