"""Changed fields only, and update streams that remember (spec §13), through the executable."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import requests

from target_aha.ledger import field_digests
from target_aha.sandbox import Sandbox
from target_aha.shaping import changed_only
from tests.conftest import TOKEN, record, schema, state


def writes(sb: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sb.requests() if r["method"] != "GET"]


def epics(tmp_path: Path, **entry: Any) -> dict[str, Any]:
    return {"ledger_path": str(tmp_path / "ledger.sqlite"),
            "streams": {"s": {"endpoint": "create_epic", "release_id": "PRJ1-R-1", **entry}}}


def epic_records(**fields: Any) -> list[dict[str, Any]]:
    base = {"ext": "K1", "name": "Login", "description": "upstream text",
            "workflow_status": "New"}
    return [schema("s", key_properties=["ext"]), record("s", {**base, **fields}),
            state({"n": 1})]


def edit_in_aha(sb: Sandbox, path: str, body: dict[str, Any]) -> None:
    """What a product manager does by hand between two nightly runs."""
    resp = requests.put(sb.base_url + path, json=body,
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert resp.status_code == 200, resp.text


def test_an_edit_made_in_aha_survives_an_upstream_change_to_another_field(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    cfg = epics(tmp_path)
    first = run_target(cfg, epic_records(), sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    [created] = first.results
    edit_in_aha(sandbox, f"/epics/{created['aha_id']}", {"epic": {"description": "PM's text"}})

    sandbox.clear_requests()
    second = run_target(cfg, epic_records(workflow_status="In progress"), sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    [put] = writes(sandbox)
    assert put["method"] == "PUT"
    assert put["body"] == {"epic": {"workflow_status": "In progress"}}
    assert [r["operation"] for r in second.results] == ["update"]
    epic = next(o for o in sandbox.objects("epic") if o["id"] == created["aha_id"])
    assert epic["description"]["body"] == "PM's text"
    assert epic["workflow_status"]["name"] == "In progress"

    sandbox.clear_requests()
    third = run_target(cfg, epic_records(workflow_status="In progress"), sandbox=sandbox)
    assert writes(sandbox) == []
    assert [r["operation"] for r in third.results] == ["unchanged"]


def test_update_fields_all_sends_the_whole_body(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    cfg = epics(tmp_path, update_fields="all")
    assert run_target(cfg, epic_records(), sandbox=sandbox).returncode == 0
    sandbox.clear_requests()
    run = run_target(cfg, epic_records(workflow_status="Done"), sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    [put] = writes(sandbox)
    assert put["body"] == {"epic": {"ext": "K1", "name": "Login", "description": "upstream text",
                                    "workflow_status": "Done"}}


def test_a_new_schema_field_sends_only_that_field(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    cfg = epics(tmp_path)
    assert run_target(cfg, epic_records(), sandbox=sandbox).returncode == 0
    sandbox.clear_requests()
    run = run_target(cfg, epic_records(progress=40), sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    [put] = writes(sandbox)
    assert put["body"] == {"epic": {"progress": 40}}


def test_a_ledger_without_field_digests_sends_the_whole_body_once(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    cfg = epics(tmp_path)
    assert run_target(cfg, epic_records(), sandbox=sandbox).returncode == 0
    # The ledger as target-aha wrote it before §13: no field_hashes column.
    with sqlite3.connect(cfg["ledger_path"]) as db:
        db.execute("ALTER TABLE target_aha_ledger DROP COLUMN field_hashes")
    db.close()
    # A dry run reads the old ledger as it is (it does not migrate it).
    dry = run_target({**cfg, "dry_run": True}, epic_records(name="Log in"), sandbox=sandbox)
    assert dry.returncode == 0, dry.stderr
    assert [r["operation"] for r in dry.results] == ["update"]
    with sqlite3.connect(cfg["ledger_path"]) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(target_aha_ledger)")}
    db.close()
    assert "field_hashes" not in columns

    sandbox.clear_requests()
    unchanged = run_target(cfg, epic_records(), sandbox=sandbox)
    assert unchanged.returncode == 0, unchanged.stderr
    assert writes(sandbox) == []
    assert [r["operation"] for r in unchanged.results] == ["unchanged"]

    changed = run_target(cfg, epic_records(name="Log in"), sandbox=sandbox)
    assert changed.returncode == 0, changed.stderr
    [whole] = writes(sandbox)
    assert set(whole["body"]["epic"]) == {"ext", "name", "description", "workflow_status"}
    sandbox.clear_requests()
    again = run_target(cfg, epic_records(name="Sign in"), sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    [partial] = writes(sandbox)
    assert partial["body"] == {"epic": {"name": "Sign in"}}


def test_unchanged_update_streams_send_nothing_on_re_run(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    cfg = {"ledger_path": str(tmp_path / "ledger.sqlite"),
           "streams": {"u": {"endpoint": "update_epic", "epic_id": "{eid}"}}}
    messages = [schema("u", key_properties=["eid"]),
                record("u", {"eid": "PRJ1-E-1", "name": "Renamed", "progress": 10}),
                state({"n": 1})]
    first = run_target(cfg, messages, sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    assert [r["operation"] for r in first.results] == ["update"]
    sandbox.clear_requests()
    second = run_target(cfg, messages, sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    assert writes(sandbox) == []
    assert [(r["operation"], r["status"]) for r in second.results] == [
        ("unchanged", "succeeded")]
    assert second.results[0]["reference_num"] == "PRJ1-E-1"
    assert second.states == [{"n": 1}]

    messages[2 - 1]["record"]["progress"] = 20
    third = run_target(cfg, messages, sandbox=sandbox)
    assert third.returncode == 0, third.stderr
    [put] = writes(sandbox)
    assert put["body"] == {"epic": {"progress": 20}}


def test_two_streams_updating_one_object_do_not_hide_each_others_changes(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    cfg = {"ledger_path": str(tmp_path / "ledger.sqlite"),
           "streams": {"a": {"endpoint": "update_epic", "epic_id": "PRJ1-E-1"},
                       "b": {"endpoint": "update_epic", "epic_id": "PRJ1-E-1"}}}

    def both(a_name: str, b_name: str) -> list[dict[str, Any]]:
        return [schema("a"), record("a", {"name": a_name, "progress": 5}),
                schema("b"), record("b", {"name": b_name, "workflow_status": "Done"})]

    first = run_target(cfg, both("from A", "from B"), sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    assert [r["operation"] for r in first.results] == ["update", "update"]
    sandbox.clear_requests()
    # B set the name after A: A's name differs from what the object was last sent, so A
    # sends it again (a row per stream would have said "unchanged" and left B's name).
    second = run_target(cfg, both("from A", "from B"), sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    assert [json.dumps(r["body"], sort_keys=True) for r in writes(sandbox)] == [
        json.dumps({"epic": {"name": "from A"}}), json.dumps({"epic": {"name": "from B"}})]

    # Streams that update other fields of the object settle into sending nothing.
    sandbox.clear_requests()
    cfg["streams"]["b"]["exclude_attributes"] = ["name"]
    assert run_target(cfg, both("from A", "from B"), sandbox=sandbox).returncode == 0
    sandbox.clear_requests()
    quiet = run_target(cfg, both("from A", "from B"), sandbox=sandbox)
    assert quiet.returncode == 0, quiet.stderr
    assert writes(sandbox) == []
    assert [r["operation"] for r in quiet.results] == ["unchanged", "unchanged"]
    [epic] = [o for o in sandbox.objects("epic") if o["reference_num"] == "PRJ1-E-1"]
    assert epic["name"] == "from A"
    assert epic["workflow_status"]["name"] == "Done"


def test_only_changed_custom_fields_keys_are_sent() -> None:
    before = {"name": "x", "custom_fields": {"tier": "gold", "region": "EU"}}
    now = {"name": "x", "custom_fields": {"tier": "gold", "region": "US"}, "size": 3}
    assert changed_only(now, field_digests(now), field_digests(before)) == {
        "custom_fields": {"region": "US"}, "size": 3}


def test_a_custom_put_to_one_object_is_remembered_per_object(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    cfg = {"ledger_path": str(tmp_path / "ledger.sqlite"),
           "streams": {"c": {"endpoint": "custom", "method": "PUT", "url": "/epics/{eid}",
                             "wrap_key": "epic"},
                       "u": {"endpoint": "update_epic", "epic_id": "{eid}"}}}

    def messages(name: str) -> list[dict[str, Any]]:
        return [schema("c"), record("c", {"eid": "PRJ1-E-1", "name": name, "progress": 3}),
                state({"n": 1})]

    first = run_target(cfg, messages("Custom name"), sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    assert [r["operation"] for r in first.results] == ["custom"]
    sandbox.clear_requests()
    again = run_target(cfg, messages("Custom name"), sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    assert writes(sandbox) == []
    assert [r["operation"] for r in again.results] == ["unchanged"]
    # An update_epic stream shares the object's row: what the custom PUT sent is known.
    shared = run_target(cfg, [schema("u"), record("u", {"eid": "PRJ1-E-1", "progress": 3,
                                                        "name": "Renamed"})],
                        sandbox=sandbox)
    assert shared.returncode == 0, shared.stderr
    [put] = writes(sandbox)
    assert put["path"] == "/api/v1/epics/PRJ1-E-1"
    assert put["body"] == {"epic": {"name": "Renamed"}}
