"""Meltano end to end: the repository's meltano.yml, `meltano run` and `meltano invoke`.

These run the real Meltano (from .venv-meltano, which `make install` creates, or
$MELTANO_EXECUTABLE) with the plugins `meltano install` put under .meltano/, against a
sandbox per test. Each test has its own Meltano system database (so its own state), its own
key ledger and results file, so runs never see each other's or a developer's.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from target_aha.sandbox import Sandbox
from target_aha.target import TargetAha
from tests.conftest import TOKEN, find_meltano

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "demo" / "data"
# Settings of spec §2 (target-aha's own; the SDK adds its own beside them).
SPEC_SETTINGS = {
    "subdomain", "base_url", "api_key", "streams", "user_agent", "disable_mailers",
    "max_requests_per_second", "max_requests_per_minute", "max_concurrency", "request_timeout",
    "max_retries", "on_record_error", "results_path", "ledger_path", "response_webhook_url",
    "dry_run", "state_interval_seconds",
}


MELTANO = find_meltano()
pytestmark = pytest.mark.skipif(
    MELTANO is None,
    reason="Meltano is not installed: `make install` puts it in .venv-meltano "
    "(or set MELTANO_EXECUTABLE)",
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def meltano(args: list[str], env: dict[str, str], timeout: float = 300,
            ) -> subprocess.CompletedProcess[str]:
    assert MELTANO is not None
    return subprocess.run(
        [MELTANO, *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL, check=False,
    )


@pytest.fixture
def meltano_env(tmp_path: Path) -> dict[str, str]:
    """The environment of one Meltano invocation: isolated state, ledger and results."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TARGET_AHA_", "TAP_JSONL", "MELTANO_"))}
    env.update({
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_ENVIRONMENT": "dev",
        "TARGET_AHA_API_KEY": TOKEN,
        "TARGET_AHA_RESULTS_PATH": str(tmp_path / "aha-results.jsonl"),
        "TARGET_AHA_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
    })
    return env


def expected_description(row: dict[str, Any]) -> str:
    """The description meltano.yml's stream map builds from an intake request."""
    body = row["body"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (f"<p>{body}</p><p>Requested by {row['requester_email']} "
            f"(priority: {row['priority']})</p>")


def header(request: dict[str, Any], name: str) -> str | None:
    for key, value in (request.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def test_meltano_run_loads_the_sample_data(
    sandbox: Sandbox, meltano_env: dict[str, str], tmp_path: Path,
) -> None:
    env = {**meltano_env, "TARGET_AHA_BASE_URL": sandbox.base_url}
    intake = read_jsonl(DATA / "intake_requests.jsonl")
    vendors = read_jsonl(DATA / "vendors.jsonl")
    okrs = read_jsonl(DATA / "okrs.jsonl")

    # The job load-aha is `tap-jsonl target-aha tap-jsonl--vendors target-aha
    # tap-jsonl--okrs target-aha`: tap-jsonl reads one stream per extractor.
    run = meltano(["run", "load-aha"], env)
    assert run.returncode == 0, run.stderr[-6000:]

    # One feature per intake request, in release PRJ1-R-1, named and described by the stream map.
    features = sandbox.objects("feature")
    assert len(features) == len(intake), [f.get("name") for f in features]
    by_name = {f["name"]: f for f in features}
    assert set(by_name) == {row["title"] for row in intake}
    for row in intake:
        feature = by_name[row["title"]]
        assert feature["description"]["body"] == expected_description(row)  # a note object
        assert feature["release"]["reference_num"] == "PRJ1-R-1"
        assert feature["reference_num"].startswith("PRJ1-")
        for dropped in ("internal_notes", "title", "body", "_sdc_filename",
                        "_sdc_last_modified", "_sdc_stream"):
            assert dropped not in feature, (dropped, feature)

    # Vendors became records of the custom table `vendors`, OKRs became goals of PRJ1.
    records = sandbox.objects("custom_object_record")
    assert len(records) == len(vendors)
    stored = [{f["key"]: f["value"] for f in rec["custom_fields"]} for rec in records]
    assert {s["name"] for s in stored} == {v["name"] for v in vendors}
    assert all(set(s) == {"name", "contact_email", "tier", "since"} for s in stored), stored
    assert {rec["key"] for rec in records} == {"vendors"}
    goals = sandbox.objects("goal")
    assert sorted(g["name"] for g in goals) == sorted(o["objective"] for o in okrs)

    # What Aha! received: every write quiet (disable_mailers) and authenticated by the key.
    writes = [r for r in sandbox.requests() if r["method"] != "GET"]
    assert len(writes) == len(intake) + len(vendors) + len(okrs)
    for request in writes:
        assert request["query"].get("disable_mailers") == "true", request["path"]
        assert header(request, "Authorization") == f"Bearer {TOKEN}"
        assert "internal_notes" not in json.dumps(request["body"])
    # ... and nothing from the notes anywhere in the sandbox.
    everything = json.dumps([features, records, goals])
    for row in intake:
        assert row["internal_notes"] not in everything

    # The results file: one succeeded line per record, keyed by the upstream ids, no token.
    results_path = Path(env["TARGET_AHA_RESULTS_PATH"])
    results = read_jsonl(results_path)
    assert len(results) == len(intake) + len(vendors) + len(okrs)
    assert {r["status"] for r in results} == {"succeeded"}, results
    assert sorted(r["key"] for r in results if r["stream"] == "intake_requests") == sorted(
        row["request_id"] for row in intake)
    assert sorted(r["key"] for r in results if r["stream"] == "okrs") == sorted(
        row["okr_id"] for row in okrs)
    assert sorted(r["key"] for r in results if r["stream"] == "vendors") == sorted(
        row["name"] for row in vendors)
    assert all(r["aha_id"] for r in results)
    ref_of = {f["reference_num"] for f in features}
    assert {r["reference_num"] for r in results if r["stream"] == "intake_requests"} == ref_of
    assert TOKEN not in results_path.read_text()



def test_meltano_rerun_sends_nothing_new(sandbox: Sandbox, meltano_env: dict[str, str]) -> None:
    # tap-jsonl 0.3.1 reads every file again on every run (it never finds its own bookmark),
    # so what keeps a re-run from duplicating everything in Aha! is target-aha's key ledger:
    # the same records again are `unchanged`, and nothing is sent.
    env = {**meltano_env, "TARGET_AHA_BASE_URL": sandbox.base_url}
    first = meltano(["run", "load-aha"], env)
    assert first.returncode == 0, first.stderr[-6000:]
    created = {kind: len(sandbox.objects(kind))
               for kind in ("feature", "goal", "custom_object_record")}
    sandbox.clear_requests()
    again = meltano(["run", "--full-refresh", "load-aha"], env)
    assert again.returncode == 0, again.stderr[-6000:]
    assert [r for r in sandbox.requests() if r["method"] != "GET"] == []
    assert {kind: len(sandbox.objects(kind)) for kind in created} == created
    results = read_jsonl(Path(env["TARGET_AHA_RESULTS_PATH"]))
    second = results[len(results) // 2:]
    assert len(results) == 2 * sum(created.values())
    assert {(r["operation"], r["status"]) for r in second} == {("unchanged", "succeeded")}


def test_plain_tap_target_pair_loads_intake_requests(
    sandbox: Sandbox, meltano_env: dict[str, str],
) -> None:
    # The first thing a user types: one extractor, one loader.
    env = {**meltano_env, "TARGET_AHA_BASE_URL": sandbox.base_url}
    run = meltano(["run", "tap-jsonl", "target-aha"], env)
    assert run.returncode == 0, run.stderr[-6000:]
    titles = {row["title"] for row in read_jsonl(DATA / "intake_requests.jsonl")}
    assert {f["name"] for f in sandbox.objects("feature")} == titles
    assert sandbox.objects("goal") == []
    results = read_jsonl(Path(env["TARGET_AHA_RESULTS_PATH"]))
    assert len(results) == len(titles)
    assert {(r["stream"], r["endpoint"], r["status"]) for r in results} == {
        ("intake_requests", "create_feature", "succeeded")}


def test_meltano_invoke_about_lists_every_setting(meltano_env: dict[str, str]) -> None:
    run = meltano(["invoke", "target-aha", "--about", "--format=json"], meltano_env)
    assert run.returncode == 0, run.stderr[-6000:]
    about = json.loads(run.stdout)
    assert about["name"] == "target-aha"
    settings = about["settings"]["properties"]
    own = set(TargetAha.config_jsonschema["properties"])
    assert own >= SPEC_SETTINGS
    missing = own - set(settings)
    assert not missing, f"--about lacks {sorted(missing)}"
    assert settings["api_key"].get("secret") is True
    assert settings["on_record_error"]["enum"] == ["fail", "skip"]
    for sdk_setting in ("stream_maps", "batch_size_rows", "validate_records"):
        assert sdk_setting in settings
    assert set(about["capabilities"]) >= {
        "about", "stream-maps", "schema-flattening", "validate-records"}


def test_meltano_yml_declares_every_target_setting() -> None:
    # Meltano only shows (`meltano config target-aha list`) and reads from TARGET_AHA_* what
    # the loader entry declares: it must declare each of target-aha's own settings.
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-aha"]
    assert loader["namespace"] == "target_aha"
    assert loader["executable"] == "target-aha"
    declared = {s["name"]: s for s in loader["settings"]}
    own = TargetAha.config_jsonschema["properties"]
    assert set(own) - set(declared) == set()
    for name in own:
        assert declared[name].get("kind"), name
        assert declared[name].get("description"), name
    assert declared["api_key"]["sensitive"] is True
    assert declared["streams"]["kind"] == "object"
    assert declared["disable_mailers"]["kind"] == "boolean"
    assert [o["value"] for o in declared["on_record_error"]["options"]] == ["fail", "skip"]
    assert set(loader["capabilities"]) >= {
        "about", "stream-maps", "schema-flattening", "validate-records"}

