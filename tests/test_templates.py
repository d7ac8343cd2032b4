"""Every template end to end: the real executable, the sandbox over HTTP, the request Aha! saw."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from target_aha.sandbox import Sandbox
from tests.conftest import TOKEN, record, schema, state

VERSION_UA = "target-aha/0.1.0"


def api(sb: Sandbox, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the sandbox's API as a user would (to prepare objects to update)."""
    resp = requests.request(
        method, sb.base_url + path, json=body,
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
    )
    resp.raise_for_status()
    return resp.json()


def writes(sb: Sandbox) -> list[dict[str, Any]]:
    """Requests the sandbox received, excluding reads."""
    return [r for r in sb.requests() if r["method"] != "GET"]


# name, stream entry (besides endpoint), record, method, path, expected body, object kind
CASES = [
    (
        "create_feature", {"release_id": "PRJ1-R-1"},
        {"name": "Dark mode", "description": "<p>Please</p>"},
        "POST", "/api/v1/releases/PRJ1-R-1/features",
        {"feature": {"name": "Dark mode", "description": "<p>Please</p>"}}, "feature",
    ),
    (
        "create_epic", {"release_id": "{rel}"},
        {"rel": "PRJ1-R-2", "name": "Billing revamp"},
        "POST", "/api/v1/releases/PRJ1-R-2/epics",
        {"epic": {"name": "Billing revamp"}}, "epic",
    ),
    (
        "create_epic_in_default_release", {"product_id": "PRJ1"},
        {"name": "Onboarding"},
        "POST", "/api/v1/products/PRJ1/epics", {"epic": {"name": "Onboarding"}}, "epic",
    ),
    (
        "update_epic", {"epic_id": "{aha_epic_key}"},
        {"aha_epic_key": "PRJ1-E-1", "name": "Renamed epic"},
        "PUT", "/api/v1/epics/PRJ1-E-1", {"epic": {"name": "Renamed epic"}}, "epic",
    ),
    (
        "create_goal", {"product_id": "PRJ1"},
        {"name": "Grow revenue", "success_metric": {"name": "ARR", "description": "+20%"},
         "workflow_status": "In progress"},
        "POST", "/api/v1/products/PRJ1/goals",
        {"goal": {"name": "Grow revenue",
                  "success_metric": {"name": "ARR", "description": "+20%"},
                  "workflow_status": "In progress"}},
        "goal",
    ),
    (
        "create_initiative", {"product_id": "PRJ1"},
        {"name": "Enterprise ready", "workflow_status": "Active"},
        "POST", "/api/v1/products/PRJ1/initiatives",
        {"initiative": {"name": "Enterprise ready", "workflow_status": "Active"}}, "initiative",
    ),
    (
        "create_custom_table_record", {"product_id": "PRJ1", "custom_table_key": "vendors"},
        {"name": "Acme", "tier": "gold"},
        "POST", "/api/v1/products/PRJ1/custom_objects/vendors/records",
        {"custom_object_record": {"custom_fields": {"name": "Acme", "tier": "gold"}}},
        "custom_object_record",
    ),
    (
        "create_team", {}, {"name": "Platform team"},
        "POST", "/api/v1/teams", {"team": {"name": "Platform team"}}, "team",
    ),
]


def check_headers(req: dict[str, Any], with_body: bool = True) -> None:
    headers = req["headers"]
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["user-agent"] == VERSION_UA
    if with_body:
        assert headers["content-type"] == "application/json"
    assert req["query"] == {"disable_mailers": "true"}


@pytest.mark.parametrize(
    ("endpoint", "entry", "rec", "method", "path", "body", "kind"), CASES, ids=[c[0] for c in CASES]
)
def test_template_sends_exactly_its_request(
    sandbox: Sandbox, run_target, endpoint, entry, rec, method, path, body, kind
) -> None:
    run = run_target(
        {"streams": {"things": {"endpoint": endpoint, **entry}}},
        [schema("things"), record("things", rec), state({"bookmark": 1})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    assert req["method"] == method
    assert req["path"] == path
    assert req["body"] == body
    check_headers(req)
    [line] = run.results
    assert line["status"] == "succeeded"
    assert line["endpoint"] == endpoint
    assert line["http_status"] == req["status"]
    objects = {o["id"]: o for o in sandbox.objects(kind)}
    assert line["aha_id"] in objects
    assert objects[line["aha_id"]].get("reference_num") == line["reference_num"]
    assert run.states == [{"bookmark": 1}]


def test_update_goal_and_initiative(sandbox: Sandbox, run_target) -> None:
    goal = api(sandbox, "POST", "/products/PRJ1/goals", {"goal": {
        "name": "Old goal", "success_metric": {"name": "ARR", "description": "+20%"},
        "workflow_status": "In progress",
    }})["goal"]
    initiative = api(
        sandbox, "POST", "/products/PRJ1/initiatives", {"initiative": {"name": "Old initiative"}}
    )["initiative"]
    sandbox.clear_requests()
    run = run_target(
        {
            "streams": {
                "goals": {"endpoint": "update_goal", "product_id": "PRJ1", "goal_id": "{gid}"},
                "inits": {"endpoint": "update_initiative", "product_id": "PRJ1"},
            }
        },
        [
            schema("goals"), record("goals", {"gid": goal["reference_num"], "name": "New goal"}),
            schema("inits"),
            record("inits", {"initiative_id": initiative["id"], "name": "New initiative"}),
        ],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    by_path = {r["path"]: r for r in writes(sandbox)}
    goal_req = by_path[f"/api/v1/products/PRJ1/goals/{goal['reference_num']}"]
    assert goal_req["method"] == "PUT"
    assert goal_req["body"] == {"goal": {"name": "New goal"}}
    init_req = by_path[f"/api/v1/products/PRJ1/initiatives/{initiative['id']}"]
    assert init_req["body"] == {"initiative": {"name": "New initiative"}}
    check_headers(goal_req)
    assert [o["name"] for o in sandbox.objects("goal")] == ["New goal"]
    assert [o["name"] for o in sandbox.objects("initiative")] == ["New initiative"]
    assert {line["operation"] for line in run.results} == {"update"}


def test_delete_epic_sends_no_body(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {"streams": {"gone": {"endpoint": "delete_epic"}}},
        [schema("gone"), record("gone", {"epic_id": "PRJ1-E-1"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    assert (req["method"], req["path"], req["body"]) == ("DELETE", "/api/v1/epics/PRJ1-E-1", None)
    check_headers(req, with_body=False)
    assert "content-type" not in req["headers"]
    assert sandbox.objects("epic") == []
    assert run.results[0]["operation"] == "delete"
    assert run.results[0]["status"] == "succeeded"


def test_stream_named_after_template_reads_parameters_from_record(
    sandbox: Sandbox, run_target
) -> None:
    run = run_target(
        {},
        [
            schema("create_feature"),
            record("create_feature", {"release_id": "PRJ1-R-2", "name": "From a map"}),
        ],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    assert req["path"] == "/api/v1/releases/PRJ1-R-2/features"
    assert req["body"] == {"feature": {"name": "From a map"}}


def test_stream_map_alias_to_template_name(sandbox: Sandbox, run_target) -> None:
    sandbox.configure(relax_goal_validation=True)  # about aliasing, not about goal fields
    run = run_target(
        {"stream_maps": {"okrs": {"__alias__": "create_goal", "product_id": "'PRJ1'"}}},
        [schema("okrs", {"name": {"type": "string"}}), record("okrs", {"name": "Aliased goal"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    assert req["path"] == "/api/v1/products/PRJ1/goals"
    assert req["body"] == {"goal": {"name": "Aliased goal"}}


def test_unmapped_stream_is_rejected_at_schema(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {"streams": {"other": {"endpoint": "create_team"}}},
        [schema("mystery"), record("mystery", {"name": "x"})],
        sandbox=sandbox,
    )
    assert run.returncode != 0
    assert "Stream 'mystery' has no destination" in run.stderr
    for name in ("create_feature", "update_initiative", "create_custom_table_record",
                 "create_team"):
        assert name in run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.requests() == []
    assert run.states == []


@pytest.mark.parametrize(
    ("value", "raw"), [("../x", "..%2Fx"), ("a/b?c", "a%2Fb%3Fc"), ("50% off#1", "50%25%20off%231")]
)
def test_path_values_are_one_encoded_segment(sandbox: Sandbox, run_target, value, raw) -> None:
    run = run_target(
        {"on_record_error": "skip", "streams": {"f": {"endpoint": "create_feature"}}},
        [schema("f"), record("f", {"release_id": value, "name": "n"}), state({"s": 1})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = sandbox.requests()
    assert req["raw_path"] == f"/api/v1/releases/{raw}/features"
    assert req["segments"] == ["releases", value, "features"]
    assert req["status"] == 404
    [line] = run.results
    assert line["status"] == "rejected"
    assert line["http_status"] == 404
    assert "404" in line["error"]
    assert run.states == [{"s": 1}]


@pytest.mark.parametrize("bad", [".", "..", ""])
def test_dot_segments_and_missing_ids_reject_without_a_request(
    sandbox: Sandbox, run_target, bad
) -> None:
    run = run_target(
        {"on_record_error": "skip", "streams": {"e": {"endpoint": "update_epic"}}},
        [schema("e"), record("e", {"epic_id": bad, "name": "n"}),
         record("e", {"name": "no id at all"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    assert sandbox.requests() == []
    assert [line["status"] for line in run.results] == ["rejected", "rejected"]
    assert "epic_id" in run.results[0]["error"]
    assert "'epic_id'" in run.results[1]["error"]


def test_missing_id_under_fail_stops_the_run(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {"streams": {"e": {"endpoint": "update_epic", "key_property": "ext"}}},
        [schema("e"), record("e", {"ext": "K-7", "name": "n"}), state({"s": 1})],
        sandbox=sandbox,
    )
    assert run.returncode == 1
    assert "stream 'e'" in run.stderr
    assert "'K-7'" in run.stderr
    assert "epic_id" in run.stderr
    assert "on_record_error: skip" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states == []
    assert sandbox.requests() == []


def test_dates_and_numbers_are_serialized(sandbox: Sandbox, run_target) -> None:
    props = {
        "name": {"type": "string"},
        "due": {"type": "string", "format": "date"},
        "seen": {"type": "string", "format": "date-time"},
        "score": {"type": "number"},
        "count": {"type": "integer"},
        "nested": {"type": "object", "properties": {"at": {"type": "string", "format": "date"}}},
    }
    rec = {
        "name": "Dated", "due": "2026-03-01", "seen": "2026-03-01T10:20:30Z",
        "score": 1.25, "count": 3, "nested": {"at": "2026-04-05"},
    }
    run = run_target(
        {"streams": {"d": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}}},
        [schema("d", props), record("d", rec)],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    body = req["body"]["feature"]
    assert body["due"] == "2026-03-01"
    assert body["seen"] in ("2026-03-01T10:20:30+00:00", "2026-03-01T10:20:30Z")
    assert body["score"] == 1.25
    assert body["count"] == 3
    assert body["nested"] == {"at": "2026-04-05"}


@pytest.mark.parametrize(
    "headers", ["X-Source:intake, X-Team:platform", {"X-Source": "intake", "X-Team": "platform"}]
)
def test_request_headers_both_forms(sandbox: Sandbox, run_target, headers) -> None:
    run = run_target(
        {"streams": {"t": {"endpoint": "create_team", "request_headers": headers}}},
        [schema("t"), record("t", {"name": "Team"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    assert req["headers"]["x-source"] == "intake"
    assert req["headers"]["x-team"] == "platform"
    check_headers(req)


@pytest.mark.parametrize("header", ["Authorization", "content-type"])
def test_request_headers_cannot_replace_auth_or_content_type(
    sandbox: Sandbox, run_target, header
) -> None:
    run = run_target(
        {"streams": {"t": {"endpoint": "create_team", "request_headers": {header: "x"}}}},
        [schema("t"), record("t", {"name": "Team"})],
        sandbox=sandbox,
    )
    assert run.returncode == 1
    assert f"may not set {header}" in run.stderr
    assert sandbox.requests() == []


def test_exclude_attributes_and_key_fields(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {
            "streams": {
                "intake": {
                    "endpoint": "create_feature", "release_id": "PRJ1-R-1",
                    "key_property": "request_id", "exclude_attributes": ["internal_notes"],
                }
            }
        },
        [schema("intake"),
         record("intake", {"request_id": "R-1", "name": "N", "internal_notes": "secret"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    assert req["body"] == {"feature": {"request_id": "R-1", "name": "N"}}
    assert run.results[0]["key"] == "R-1"


def test_already_wrapped_records_are_sent_as_they_are(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {
            "streams": {
                "f": {"endpoint": "create_feature", "release_id": "{rel}"},
                "v": {"endpoint": "create_custom_table_record", "product_id": "PRJ1",
                      "custom_table_key": "vendors"},
                "w": {"endpoint": "create_custom_table_record", "product_id": "PRJ1",
                      "custom_table_key": "vendors"},
            }
        },
        [
            schema("f"), record("f", {"rel": "PRJ1-R-1", "feature": {"name": "Wrapped"}}),
            schema("v"), record("v", {"custom_fields": {"name": "Globex", "tier": "silver"}}),
            schema("w"),
            record("w", {"custom_object_record": {"custom_fields": {"name": "Initech"}}}),
        ],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    bodies = {r["path"].split("/")[4]: r["body"] for r in writes(sandbox)}
    assert bodies["PRJ1-R-1"] == {"feature": {"name": "Wrapped"}}
    records = [r["body"] for r in writes(sandbox) if "custom_objects" in r["path"]]
    globex = {"custom_object_record": {"custom_fields": {"name": "Globex", "tier": "silver"}}}
    assert globex in records
    assert {"custom_object_record": {"custom_fields": {"name": "Initech"}}} in records
    assert len(sandbox.objects("custom_object_record")) == 2


def test_disable_mailers_can_be_turned_off(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {"disable_mailers": False, "streams": {"t": {"endpoint": "create_team"}}},
        [schema("t"), record("t", {"name": "Team"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    assert writes(sandbox)[0]["query"] == {}
