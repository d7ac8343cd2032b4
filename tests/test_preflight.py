"""`target-aha --config c.json --test`: one line per check, exit 0 only if all pass, and
nothing written to Aha!."""

from __future__ import annotations

from typing import Any

import pytest

from target_aha.sandbox import Sandbox
from tests.receiver import Receiver

STREAMS = {
    "intake": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"},
    "vendors": {"endpoint": "create_custom_table_record", "product_id": "PRJ1",
                "custom_table_key": "vendors"},
    "renames": {"endpoint": "update_epic", "epic_id": "PRJ1-E-1"},
    "okrs": {"endpoint": "update_goal", "product_id": "PRJ1", "goal_id": "{aha_goal}"},
    "bets": {"endpoint": "update_initiative", "product_id": "PRJ2", "initiative_id": "PRJ2-S-1"},
    "teams": {"endpoint": "create_team"},
    "ideas": {"endpoint": "custom", "method": "PUT", "url": "/ideas/{idea_id}"},
}


def lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.strip()]


def test_everything_passes_and_nothing_is_written(sandbox: Sandbox, run_target) -> None:
    run = run_target({"streams": STREAMS}, [], sandbox=sandbox, extra_args=("--test",))
    assert run.returncode == 0, run.stdout + run.stderr
    out = lines(run.stdout)
    assert out[0].startswith("PASS  API key for 127.0.0.1:")
    assert "GET /me answered 200 (user sandbox@example.com)" in out[0]
    expected = [
        "PASS  stream 'intake' (create_feature) release_id: release 'PRJ1-R-1' exists",
        "PASS  stream 'vendors' (create_custom_table_record) product_id: product 'PRJ1' exists",
        "PASS  stream 'vendors' (create_custom_table_record) custom_table_key: "
        "custom table 'vendors' exists",
        "PASS  stream 'renames' (update_epic) epic_id: epic 'PRJ1-E-1' exists",
        "PASS  stream 'okrs' (update_goal) product_id: product 'PRJ1' exists",
        "SKIP  stream 'okrs' (update_goal) goal_id: not checkable (read from each record: "
        "field aha_goal)",
        "PASS  stream 'bets' (update_initiative) product_id: product 'PRJ2' exists",
        "SKIP  stream 'bets' (update_initiative) initiative_id: not checked (Aha! documents "
        "no read for it)",
        "SKIP  stream 'teams' (create_team): nothing to check",
        "PASS  stream 'ideas' (custom) url: " + sandbox.base_url + "/ideas/{idea_id}: on the "
        "Aha! account's host",
        "SKIP  stream 'ideas' (custom) url: placeholders idea_id: not checkable (read from "
        "each record)",
        "SKIP  stream 'ideas' (custom) endpoint: not called by --test",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in out), want
    assert out[-1].startswith("target-aha --test: 8 passed, 0 failed, 5 not checkable.")
    requests = sandbox.requests()
    assert {r["method"] for r in requests} == {"GET"}
    paths = [r["path"] for r in requests]
    assert "/api/v1/products/PRJ1/custom_objects/vendors/records" in paths
    assert paths.count("/api/v1/products/PRJ1") == 1  # each container is read once
    assert [r["query"] for r in requests if "custom_objects" in r["path"]] == [{"per_page": "1"}]
    assert run.results == []


def test_missing_containers_fail_with_what_to_fix(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(forbidden_products=["PRJ2"])
    streams: dict[str, Any] = {
        "intake": {"endpoint": "create_feature", "release_id": "PRJ1-R-99"},
        "vendors": {"endpoint": "create_custom_table_record", "product_id": "PRJ1",
                    "custom_table_key": "suppliers"},
        "goals": {"endpoint": "create_goal", "product_id": "PRJ2"},
        "ok": {"endpoint": "create_epic_in_default_release", "product_id": "PRJ1"},
    }
    run = run_target({"streams": streams}, [], sandbox=sandbox, extra_args=("--test",))
    assert run.returncode == 1
    out = "\n".join(lines(run.stdout))
    assert (
        "FAIL  stream 'intake' (create_feature) release_id: release 'PRJ1-R-99': "
        "GET /releases/PRJ1-R-99 answered 404"
    ) in out
    assert "To fix: set streams.intake.release_id to an existing release" in out
    assert "FAIL  stream 'vendors' (create_custom_table_record) custom_table_key: " in out
    assert "set streams.vendors.custom_table_key to an existing custom table" in out
    assert "FAIL  stream 'goals' (create_goal) product_id: product 'PRJ2': GET /products/PRJ2 " \
           "answered 403" in out
    assert "give that user permission on the product" in out
    assert "PASS  stream 'ok' (create_epic_in_default_release) product_id" in out
    assert "3 passed, 3 failed, 0 not checkable. Fix the FAIL lines" in out
    assert {r["method"] for r in sandbox.requests()} == {"GET"}


def test_bad_token_fails_and_skips_the_rest(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {"api_key": "wrong-key", "streams": {"intake": STREAMS["intake"]}},
        [], sandbox=sandbox, extra_args=("--test",),
    )
    assert run.returncode == 1
    out = lines(run.stdout)
    assert out[0].startswith("FAIL  API key for")
    assert "GET /me answered 401" in out[0]
    assert "Check api_key (TARGET_AHA_API_KEY)" in out[0]
    assert out[1] == (
        "SKIP  stream 'intake' (create_feature) release_id: not checked: the API key was not "
        "accepted"
    )
    assert "wrong-key" not in run.stdout + run.stderr
    assert [r["path"] for r in sandbox.requests()] == ["/api/v1/me"]


@pytest.mark.slow
def test_unreachable_aha_fails(run_target) -> None:
    with Receiver() as gone:
        url = gone.url
    run = run_target({"base_url": url + "/api/v1", "api_key": "k", "streams": {}}, [],
                     extra_args=("--test",))
    assert run.returncode == 1
    assert "FAIL  API key for 127.0.0.1" in run.stdout
    assert "got no usable answer" in run.stdout
    assert "Check subdomain/base_url" in run.stdout


def test_other_host_custom_endpoint_is_reported_not_called(
    sandbox: Sandbox, run_target
) -> None:
    with Receiver() as other:
        run = run_target(
            {"streams": {"out": {"endpoint": "custom", "url": other.url + "/x",
                                 "allow_other_hosts": True}}},
            [], sandbox=sandbox, extra_args=("--test",),
        )
        assert other.attempts == 0
    assert run.returncode == 0, run.stdout + run.stderr
    assert "allowed by allow_other_hosts; the API key is never sent to it" in run.stdout


def test_config_errors_still_come_first(sandbox: Sandbox, run_target) -> None:
    run = run_target({"streams": {"x": {"endpoint": "custom", "url": "https://evil.example"}}},
                     [], sandbox=sandbox, extra_args=("--test",))
    assert run.returncode == 1
    assert "allow_other_hosts" in run.stderr
    assert sandbox.requests() == []


def test_test_writes_no_local_file_and_runs_beside_a_load(
    sandbox: Sandbox, run_target, tmp_path
) -> None:
    # --test promises to write nothing: no results file, no ledger (and so no ledger lock,
    # which would refuse --test while a nightly load holds the ledger).
    import fcntl  # noqa: PLC0415 - only this test holds a lock

    ledger, results = tmp_path / "held" / "ledger.sqlite", tmp_path / "r" / "out.jsonl"
    ledger.parent.mkdir()
    with (ledger.parent / "ledger.sqlite.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running load holds it
        run = run_target(
            {"streams": {"teams": {"endpoint": "create_team"}}, "ledger_path": str(ledger),
             "results_path": str(results)},
            [], sandbox=sandbox, extra_args=("--test",),
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert not ledger.exists() and not results.parent.exists()
