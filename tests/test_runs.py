"""A run as a user sees it: STATE lines, results, record errors, dry run, bad input and config."""

from __future__ import annotations

import re

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import record, schema, state

FEATURES = {"streams": {"f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1",
                              "key_property": "id"}}}


def features(*names: str) -> list[dict]:
    return [record("f", {"id": f"K{i}", "name": n}) for i, n in enumerate(names)]


def test_state_follows_acknowledged_records(sandbox: Sandbox, run_target) -> None:
    # A tiny state interval makes the SDK drain (settle everything, then emit STATE)
    # after every record, so each STATE appears only once the records before it landed.
    messages = [
        schema("f"), *features("a"), state({"n": 1}), *features("b", "c"),
        state({"n": 2}), *features("d"), state({"n": 3}),
    ]
    run = run_target({**FEATURES, "state_interval_seconds": 1e-9}, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert run.states == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert len(sandbox.objects("feature")) == 4


def test_state_at_end_of_input(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        FEATURES, [schema("f"), *features("a", "b"), state({"n": 1}), *features("c"),
                   state({"n": 2})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    assert run.states == [{"n": 2}]


def test_422_under_fail_stops_with_a_clear_message(sandbox: Sandbox, run_target) -> None:
    messages = [schema("f"), *features("ok"), state({"n": 1}),
                record("f", {"id": "BAD-1", "name": "FAIL-422"}), state({"n": 2}),
                record("f", {"id": "Z", "name": "never"})]
    run = run_target({**FEATURES, "state_interval_seconds": 1e-9, "max_concurrency": 1},
                     messages, sandbox=sandbox)
    assert run.returncode == 1
    err = run.stderr
    assert "stream 'f'" in err
    assert "'BAD-1'" in err
    assert "POST /releases/PRJ1-R-1/features answered 422" in err
    assert "Name" in err or "FAIL-422" in err or "Validation" in err
    assert "on_record_error: skip" in err
    assert "Traceback" not in err
    assert {"n": 2} not in run.states
    assert "never" not in [o["name"] for o in sandbox.objects("feature")]


def test_422_under_skip_records_rejected_and_goes_on(sandbox: Sandbox, run_target) -> None:
    messages = [schema("f"), *features("ok", "FAIL-422", "also ok"), state({"n": 1})]
    run = run_target({**FEATURES, "on_record_error": "skip"}, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    by_key = {line["key"]: line for line in run.results}
    assert by_key["K1"]["status"] == "rejected"
    assert by_key["K1"]["http_status"] == 422
    assert "422" in by_key["K1"]["error"]
    assert by_key["K0"]["status"] == by_key["K2"]["status"] == "succeeded"
    assert run.states == [{"n": 1}]
    assert sorted(o["name"] for o in sandbox.objects("feature")) == ["also ok", "ok"]


def test_results_lines_add_up_to_records_read(sandbox: Sandbox, run_target) -> None:
    names = [f"n{i}" for i in range(25)] + ["FAIL-422", "FAIL-400"]
    run = run_target(
        {**FEATURES, "on_record_error": "skip"},
        [schema("f"), *features(*names), record("f", {"id": "x", "name": ""})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    lines = run.results
    assert len(lines) == 28
    assert sum(line["status"] == "succeeded" for line in lines) == 25
    assert sum(line["status"] == "rejected" for line in lines) == 3
    fields = {"run_id", "stream", "key", "endpoint", "operation", "status", "http_status",
              "aha_id", "reference_num", "url", "error", "at"}
    for line in lines:
        assert set(line) == fields
    ok = [line for line in lines if line["status"] == "succeeded"]
    assert all(line["reference_num"].startswith("PRJ1-") for line in ok)
    assert all(line["url"].endswith(line["reference_num"]) for line in ok)
    assert "sandbox-token" not in run.results_path.read_text()


def test_results_file_is_appended_to(sandbox: Sandbox, run_target, tmp_path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    for _ in range(2):
        run = run_target({**FEATURES, "results_path": str(path)},
                         [schema("f"), *features("a")], sandbox=sandbox)
        assert run.returncode == 0, run.stderr
    assert len(path.read_text().splitlines()) == 2


def test_unwritable_results_path_stops_before_sending(
    sandbox: Sandbox, run_target, tmp_path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = run_target({**FEATURES, "results_path": str(blocker / "results.jsonl")},
                     [schema("f"), *features("a")], sandbox=sandbox)
    assert run.returncode == 1
    assert "results_path" in run.stderr
    assert sandbox.requests() == []


def test_dry_run_prints_requests_and_sends_nothing(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {**FEATURES, "dry_run": True, "api_key": "real-secret-key"},
        [schema("f"), *features("a", "b"), state({"n": 1})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    assert sandbox.requests() == []
    assert run.states == []
    printed = run.dry_run_lines
    assert [p["body"] for p in printed] == [
        {"feature": {"id": "K0", "name": "a"}}, {"feature": {"id": "K1", "name": "b"}}
    ]
    assert printed[0]["method"] == "POST"
    url = sandbox.base_url + "/releases/PRJ1-R-1/features?disable_mailers=true"
    assert printed[0]["url"] == url
    assert printed[0]["headers"]["Authorization"] == "Bearer ***"
    assert "real-secret-key" not in run.stderr + run.stdout
    assert [line["status"] for line in run.results] == ["dry_run", "dry_run"]


def test_dry_run_needs_no_api_key(run_target) -> None:
    run = run_target({**FEATURES, "subdomain": "mycompany", "dry_run": True},
                     [schema("f"), *features("a")])
    assert run.returncode == 0, run.stderr
    assert run.dry_run_lines[0]["url"].startswith("https://mycompany.aha.io/api/v1/releases/")


def test_bad_token_stops_at_once(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {**FEATURES, "api_key": "wrong-token", "state_interval_seconds": 1e-9},
        [schema("f"), *features(*[f"n{i}" for i in range(40)]), state({"n": 1})],
        sandbox=sandbox,
    )
    assert run.returncode == 1
    assert "401" in run.stderr
    assert "127.0.0.1" in run.stderr  # the account (host) that refused the key
    assert "api_key" in run.stderr
    assert "wrong-token" not in run.stderr
    assert "Traceback" not in run.stderr
    assert len(sandbox.requests()) <= 8  # no more than what was already in flight
    assert run.states == []


def test_forbidden_product_stops_with_403(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(forbidden_products=["PRJ1"])
    run = run_target(FEATURES, [schema("f"), *features("a")], sandbox=sandbox)
    assert run.returncode == 1
    assert "403" in run.stderr
    assert "permission" in run.stderr
    assert run.states == []


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"type": "SCHEMA", "stream": "f", "schema": {"properties": {}}}', "{not json"],
         "Input line 2 is not valid JSON"),
        (['{"type": "RECORD", "stream": "f", "record": {"name": "x"}}'],
         "Input line 1 cannot be loaded"),
        (['{"type": "SCHEMA", "stream": "f", "schema": {"properties": {"n": {"type": "integer"}}}}',
          '{"type": "RECORD", "stream": "f", "record": {"n": "not a number"}}'],
         "Input line 2 cannot be loaded"),
    ],
    ids=["invalid-json", "record-before-schema", "record-fails-schema"],
)
def test_malformed_input_gets_a_message(sandbox: Sandbox, run_target, lines, expected) -> None:
    run = run_target(FEATURES, lines, sandbox=sandbox)
    assert run.returncode == 1
    assert expected in run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.requests() == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_requests_per_second": 0}, "max_requests_per_second"),
        ({"request_timeout": -1}, "request_timeout"),
        ({"streams": {"f": {"endpoint": "create_thing"}}}, "must be one of: create_feature"),
        ({"streams": {"f": {"endpoint": "create_feature", "release": "X"}}},
         "unknown setting(s) release"),
        ({"base_url": "http://aha.example.com/api/v1"}, "plain http"),
        ({"api_key": ""}, "Set api_key"),
    ],
)
def test_config_errors_before_any_record(sandbox: Sandbox, run_target, config, expected) -> None:
    run = run_target({**FEATURES, **config}, [schema("f"), *features("a")], sandbox=sandbox)
    assert run.returncode != 0
    assert expected in run.stderr
    assert sandbox.requests() == []


@pytest.mark.slow
def test_logs_are_a_handful_of_lines_and_debug_shows_each_request(
    sandbox: Sandbox, run_target
) -> None:
    messages = [schema("f"), *features(*[f"n{i}" for i in range(30)]), state({"n": 1})]
    run = run_target(FEATURES, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) <= 10, run.stderr  # no per-record lines at INFO
    assert "succeeded 30 (create 30)" in run.stderr

    sandbox.clear_requests()
    debug = run_target(FEATURES, messages, sandbox=sandbox,
                       env={"TARGET_AHA_LOGLEVEL": "debug"})
    assert debug.returncode == 0, debug.stderr
    requests_logged = re.findall(
        r"POST /releases/PRJ1-R-1/features -> 200 in \d+ ms", debug.stderr)
    assert len(requests_logged) == 30
    assert "sandbox-token" not in debug.stderr


def test_settings_from_environment_variables(sandbox: Sandbox, run_target) -> None:
    # Numbers from TARGET_AHA_* are read by target-aha (the SDK's int(text) would end in a
    # traceback): whole ones for every numeric setting, a fraction of a second for the seconds
    # settings. A rate with a fraction is refused with how to say it per minute.
    run = run_target(
        FEATURES, [schema("f"), *features("a")], sandbox=sandbox,
        extra_args=("--config", "ENV"),
        env={"TARGET_AHA_REQUEST_TIMEOUT": "2.5", "TARGET_AHA_MAX_REQUESTS_PER_SECOND": "7",
             "TARGET_AHA_DRY_RUN": "true"},
    )
    assert run.returncode == 0, run.stderr
    assert sandbox.requests() == []
    assert len(run.dry_run_lines) == 1

    refused = run_target(
        FEATURES, [schema("f"), *features("a")], sandbox=sandbox,
        extra_args=("--config", "ENV"),
        env={"TARGET_AHA_MAX_REQUESTS_PER_SECOND": "7.5",
             "TARGET_AHA_DRY_RUN": "true"},
    )
    assert refused.returncode == 1
    assert ("max_requests_per_second must be a whole number of requests (7.5 was given). "
            "For a rate with a fraction, give max_requests_per_minute instead: 450 a minute "
            "is 7.5 a second.") in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_run_that_stops_early_closes_its_files(sandbox: Sandbox, run_target, tmp_path) -> None:
    # Python shows ResourceWarning when warnings are on (as under Meltano): a run stopped at a
    # SCHEMA without a destination must have closed its results file and ledger lock.
    run = run_target(
        {"results_path": str(tmp_path / "r.jsonl"), "ledger_path": str(tmp_path / "l.sqlite")},
        [schema("backlog"), *features("a")], sandbox=sandbox,
        env={"PYTHONWARNINGS": "default"},
    )
    assert run.returncode == 1
    assert "Stream 'backlog' has no destination" in run.stderr
    assert "ResourceWarning" not in run.stderr, run.stderr


def test_missing_api_key_with_the_variable_exported_says_how_it_is_read(
    sandbox: Sandbox, run_target,
) -> None:
    # Not "set TARGET_AHA_API_KEY" to someone who has: a --config file alone reads no variables.
    run = run_target({**FEATURES, "api_key": ""}, [schema("f")], sandbox=sandbox,
                     env={"TARGET_AHA_API_KEY": "sandbox-token"})
    assert run.returncode == 1
    assert ("api_key is not set. TARGET_AHA_API_KEY is set in the environment, but target-aha "
            "reads environment variables only with --config=ENV") in run.stderr, run.stderr
    assert sandbox.requests() == []
