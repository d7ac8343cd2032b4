"""Re-runs that never duplicate: the key ledger, upsert, change detection, the ledger as a store."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from target_aha.ledger import Scope, body_hash
from target_aha.ledger_sqlite import SQLiteLedger
from target_aha.sandbox import Sandbox
from tests.conftest import TOKEN, record, schema, state

# template, entry params, object kind, update path prefix (before the id)
CREATES = [
    ("create_feature", {"release_id": "PRJ1-R-1"}, "feature", "/api/v1/features/"),
    ("create_epic", {"release_id": "PRJ1-R-1"}, "epic", "/api/v1/epics/"),
    ("create_epic_in_default_release", {"product_id": "PRJ1"}, "epic", "/api/v1/epics/"),
    ("create_goal", {"product_id": "PRJ1"}, "goal", "/api/v1/products/PRJ1/goals/"),
    ("create_initiative", {"product_id": "PRJ1"}, "initiative",
     "/api/v1/products/PRJ1/initiatives/"),
    ("create_custom_table_record", {"product_id": "PRJ1", "custom_table_key": "vendors",
                                    "exclude_attributes": ["id"]},
     "custom_object_record", "/api/v1/custom_object_records/"),
    ("create_team", {}, "team", "/api/v1/teams/"),
]


GOAL_FIELDS = {"success_metric": {"name": "ARR", "description": "+20%"},
               "workflow_status": "In progress"}


def writes(sb: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sb.requests() if r["method"] != "GET"]


def config(tmp_path: Path, endpoint: str = "create_feature", **params: Any) -> dict[str, Any]:
    if endpoint == "create_feature" and not params:
        params = {"release_id": "PRJ1-R-1"}
    return {
        "ledger_path": str(tmp_path / "ledger.sqlite"),
        "streams": {"s": {"endpoint": endpoint, **params}},
    }


def keyed(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [schema("s", key_properties=["id"]),
            *(record("s", {"id": f"K{i}", "name": f"thing {i}", **extra}) for i in range(n)),
            state({"n": n})]


@pytest.mark.parametrize(("endpoint", "params", "kind", "update_prefix"), CREATES,
                         ids=[c[0] for c in CREATES])
def test_upsert_every_create_template(
    sandbox: Sandbox, run_target, tmp_path, endpoint, params, kind, update_prefix
) -> None:
    cfg = config(tmp_path, endpoint, **params)
    # A goal needs what Aha! marks required beyond its name.
    extra = GOAL_FIELDS if endpoint == "create_goal" else {}
    first = run_target(cfg, keyed(3, **extra), sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    assert [r["operation"] for r in first.results] == ["create"] * 3
    assert len(sandbox.objects(kind)) == 3 + (kind == "epic")  # the seed epic
    ids = {r["key"]: r["aha_id"] for r in first.results}

    sandbox.clear_requests()
    second = run_target(cfg, keyed(3, **extra), sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    assert writes(sandbox) == []
    assert [(r["operation"], r["status"]) for r in second.results] == [
        ("unchanged", "succeeded")] * 3
    assert {r["key"]: r["aha_id"] for r in second.results} == ids
    assert second.states == [{"n": 3}]

    changed = keyed(3, **extra)
    changed[2]["record"]["name"] = "thing 1, renamed"
    third = run_target(cfg, changed, sandbox=sandbox)
    assert third.returncode == 0, third.stderr
    [put] = writes(sandbox)
    assert put["method"] == "PUT"
    assert put["path"] == update_prefix + ids["K1"]
    assert Counter(r["operation"] for r in third.results) == {"unchanged": 2, "update": 1}
    renamed = next(o for o in sandbox.objects(kind) if o["id"] == ids["K1"])
    if kind == "custom_object_record":
        assert {"key": "name", "value": "thing 1, renamed"}.items() <= next(
            f for f in renamed["custom_fields"] if f["key"] == "name").items()
    else:
        assert renamed["name"] == "thing 1, renamed"
    assert len(sandbox.objects(kind)) == 3 + (kind == "epic")


def test_key_property_setting_overrides_schema(sandbox: Sandbox, run_target, tmp_path) -> None:
    cfg = config(tmp_path)
    cfg["streams"]["s"]["key_property"] = "ext"
    messages = [schema("s"), record("s", {"ext": "A", "name": "one"}),
                record("s", {"ext": "B", "name": "two"})]
    assert run_target(cfg, messages, sandbox=sandbox).returncode == 0
    again = run_target(cfg, messages, sandbox=sandbox)
    assert [(r["key"], r["operation"]) for r in again.results] == [
        ("A", "unchanged"), ("B", "unchanged")]


def test_deleted_in_aha_is_created_again(sandbox: Sandbox, run_target, tmp_path) -> None:
    cfg = config(tmp_path)
    first = run_target(cfg, keyed(2), sandbox=sandbox)
    old_id = next(r["aha_id"] for r in first.results if r["key"] == "K0")
    sandbox.delete_object("feature", old_id)
    sandbox.clear_requests()
    changed = keyed(2)
    changed[1]["record"]["name"] = "thing 0 again"
    run = run_target(cfg, changed, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert [(r["method"], r["status"]) for r in writes(sandbox)] == [("PUT", 404), ("POST", 200)]
    line = next(r for r in run.results if r["key"] == "K0")
    assert line["operation"] == "create"
    assert line["aha_id"] != old_id
    # the ledger now points at the new object: an unchanged re-run sends nothing
    sandbox.clear_requests()
    run_target(cfg, changed, sandbox=sandbox)
    assert writes(sandbox) == []


def test_new_schema_field_updates_once(sandbox: Sandbox, run_target, tmp_path) -> None:
    cfg = config(tmp_path)
    run_target(cfg, keyed(2), sandbox=sandbox)
    sandbox.clear_requests()
    run = run_target(cfg, keyed(2, description="<p>new field</p>"), sandbox=sandbox)
    assert [r["method"] for r in writes(sandbox)] == ["PUT", "PUT"]
    assert {r["operation"] for r in run.results} == {"update"}
    sandbox.clear_requests()
    run_target(cfg, keyed(2, description="<p>new field</p>"), sandbox=sandbox)
    assert writes(sandbox) == []


def test_write_mode_create_turns_upsert_off(sandbox: Sandbox, run_target, tmp_path) -> None:
    cfg = config(tmp_path)
    cfg["streams"]["s"]["write_mode"] = "create"
    for _ in range(2):
        assert run_target(cfg, keyed(2), sandbox=sandbox).returncode == 0
    assert len(sandbox.objects("feature")) == 4
    assert not SQLiteLedger(cfg["ledger_path"])._run(  # the ledger was left untouched
        "SELECT * FROM target_aha_ledger", {}, fetch=True)


def test_unkeyed_records_are_create_only(sandbox: Sandbox, run_target, tmp_path) -> None:
    cfg = config(tmp_path)
    messages = [schema("s"), record("s", {"name": "no key"})]
    for _ in range(2):
        assert run_target(cfg, messages, sandbox=sandbox).returncode == 0
    assert len(sandbox.objects("feature")) == 2


def test_delete_epic_removes_its_ledger_entry(sandbox: Sandbox, run_target, tmp_path) -> None:
    ledger = str(tmp_path / "ledger.sqlite")
    create = {"ledger_path": ledger,
              "streams": {"s": {"endpoint": "create_epic", "release_id": "PRJ1-R-1"}}}
    first = run_target(create, keyed(2), sandbox=sandbox)
    doomed = next(r for r in first.results if r["key"] == "K0")
    run = run_target(
        {"ledger_path": ledger, "streams": {"gone": {"endpoint": "delete_epic"}}},
        [schema("gone"), record("gone", {"epic_id": doomed["reference_num"]})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    sandbox.clear_requests()
    again = run_target(create, keyed(2), sandbox=sandbox)
    assert sorted((r["key"], r["operation"]) for r in again.results) == [
        ("K0", "create"), ("K1", "unchanged")]
    assert len(writes(sandbox)) == 1


def test_dry_run_reads_the_ledger_and_never_writes_it(
    sandbox: Sandbox, run_target, tmp_path
) -> None:
    cfg = config(tmp_path)
    run_target(cfg, keyed(2), sandbox=sandbox)
    before = Path(cfg["ledger_path"]).read_bytes()
    sandbox.clear_requests()
    messages = keyed(3)
    messages[1]["record"]["name"] = "changed"
    run = run_target({**cfg, "dry_run": True}, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert sandbox.requests() == []
    assert [(r["operation"], r["status"]) for r in run.results] == [
        ("update", "dry_run"), ("unchanged", "dry_run"), ("create", "dry_run")]
    assert [p["method"] for p in run.dry_run_lines] == ["PUT", "POST"]
    assert Path(cfg["ledger_path"]).read_bytes() == before
    assert run.states == []


def test_unusable_ledger_is_fatal_before_sending(sandbox: Sandbox, run_target, tmp_path) -> None:
    (tmp_path / "afile").write_text("")
    run = run_target({**config(tmp_path), "ledger_path": str(tmp_path / "afile" / "l.sqlite")},
                     keyed(1), sandbox=sandbox)
    assert run.returncode == 1
    assert "Cannot use the key ledger" in run.stderr
    assert sandbox.requests() == []


def test_not_a_database_is_fatal(sandbox: Sandbox, run_target, tmp_path) -> None:
    bad = tmp_path / "ledger.sqlite"
    bad.write_text("this is not sqlite " * 100)
    run = run_target({**config(tmp_path), "ledger_path": str(bad)}, keyed(1), sandbox=sandbox)
    assert run.returncode == 1
    assert "Cannot use the key ledger" in run.stderr
    assert sandbox.requests() == []


def test_empty_ledger_path_warns(sandbox: Sandbox, run_target, tmp_path) -> None:
    run = run_target({**config(tmp_path), "ledger_path": ""}, keyed(1), sandbox=sandbox)
    assert run.returncode == 0
    assert "re-runs and retries after a failure will duplicate" in run.stderr


def pending(sb: Sandbox, ledger_path: str, key: str, name: str) -> float:
    """Leave a pending create in the ledger, as a run killed mid-request would."""
    ledger = SQLiteLedger(ledger_path)
    body = {"feature": {"id": key, "name": name}}
    scope = Scope("s", sb.base_url + "/releases/PRJ1-R-1/features", key)
    since = ledger.mark_pending(scope, body_hash(body)).pending_since
    assert since is not None
    ledger.close()
    return since


def create_in_aha(sb: Sandbox, name: str) -> dict[str, Any]:
    resp = requests.post(sb.base_url + "/releases/PRJ1-R-1/features",
                         json={"feature": {"name": name}},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    return resp.json()["feature"]


def test_pending_create_adopts_its_single_match(sandbox: Sandbox, run_target, tmp_path) -> None:
    cfg = config(tmp_path)
    pending(sandbox, cfg["ledger_path"], "K0", "thing 0")
    made = create_in_aha(sandbox, "thing 0")  # the create whose answer never arrived
    create_in_aha(sandbox, "something else")
    sandbox.clear_requests()
    run = run_target(cfg, keyed(1), sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert writes(sandbox) == []
    assert [r["method"] for r in sandbox.requests()] == ["GET"]
    assert run.results[0]["aha_id"] == made["id"]
    assert run.results[0]["operation"] == "create"
    assert len(sandbox.objects("feature")) == 2


def test_pending_create_with_no_match_creates(sandbox: Sandbox, run_target, tmp_path) -> None:
    cfg = config(tmp_path)
    pending(sandbox, cfg["ledger_path"], "K0", "thing 0")
    run = run_target(cfg, keyed(1), sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert [r["method"] for r in sandbox.requests()] == ["GET", "POST"]
    assert len(sandbox.objects("feature")) == 1


def test_pending_create_with_two_matches_does_not_guess(
    sandbox: Sandbox, run_target, tmp_path
) -> None:
    cfg = {**config(tmp_path), "on_record_error": "skip"}
    pending(sandbox, cfg["ledger_path"], "K0", "thing 0")
    a, b = create_in_aha(sandbox, "thing 0"), create_in_aha(sandbox, "thing 0")
    run = run_target(cfg, keyed(2), sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    line = next(r for r in run.results if r["key"] == "K0")
    assert line["status"] == "rejected"
    assert a["reference_num"] in line["error"] and b["reference_num"] in line["error"]
    assert "will not guess" in line["error"]
    assert next(r for r in run.results if r["key"] == "K1")["status"] == "succeeded"
    assert len(sandbox.objects("feature")) == 3  # nothing more for K0


def test_postgres_ledger_same_semantics(
    sandbox: Sandbox, run_target, tmp_path, postgres_url
) -> None:
    cfg = {**config(tmp_path), "ledger_path": postgres_url}
    cfg["streams"]["pg_same"] = cfg["streams"].pop("s")
    messages = [{**m, "stream": "pg_same"} if "stream" in m else m for m in keyed(3)]
    assert run_target(cfg, messages, sandbox=sandbox).returncode == 0
    sandbox.clear_requests()
    again = run_target(cfg, messages, sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    assert writes(sandbox) == []
    assert {r["operation"] for r in again.results} == {"unchanged"}


def test_one_ledger_keeps_accounts_apart(sandbox: Sandbox, run_target, tmp_path) -> None:
    cfg = config(tmp_path)
    assert run_target(cfg, keyed(2), sandbox=sandbox).returncode == 0
    with Sandbox(token=TOKEN) as other_account:  # say, staging beside production
        run = run_target(cfg, keyed(2), sandbox=other_account)
        assert run.returncode == 0, run.stderr
        assert {r["operation"] for r in run.results} == {"create"}
        assert len(other_account.objects("feature")) == 2


def test_custom_delete_of_a_literal_url_forgets_the_object(
    sandbox: Sandbox, run_target, tmp_path
) -> None:
    ledger = str(tmp_path / "ledger.sqlite")
    create = {"ledger_path": ledger,
              "streams": {"s": {"endpoint": "create_epic", "release_id": "PRJ1-R-1"}}}
    first = run_target(create, keyed(1), sandbox=sandbox)
    ref = first.results[0]["reference_num"]
    run = run_target(
        {"ledger_path": ledger,
         "streams": {"gone": {"endpoint": "custom", "method": "DELETE", "url": f"/epics/{ref}"}}},
        [schema("gone"), record("gone", {})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    again = run_target(create, keyed(1), sandbox=sandbox)
    assert [r["operation"] for r in again.results] == ["create"]
