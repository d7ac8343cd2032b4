"""The local Aha! sandbox behaves like Aha! as docs/aha-api.md describes it, over real HTTP."""

from __future__ import annotations

import json
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import requests

from target_aha.sandbox import Sandbox
from target_aha.sandbox.forms import decode_form

TOKEN = "sandbox-token"
ROOT = Path(__file__).resolve().parent.parent
# No proxies: a proxy from the environment must not stand between the tests and 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TIMESTAMP = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
GOAL = {"name": "G", "success_metric": {"name": "Revenue", "description": "ARR in EUR"},
        "workflow_status": {"name": "In progress"}}
"""A goal body Aha!'s reference accepts (its examples send success_metric as an object)."""


@dataclass
class Reply:
    """One HTTP answer: status, headers and decoded JSON body (None when empty)."""

    status: int
    headers: Message
    body: Any


def call(
    sb: Sandbox,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = TOKEN,
    raw: bytes | None = None,
    content_type: str = "application/json",
    timeout: float = 5.0,
) -> Reply:
    """Send one request to the sandbox (`path` relative to /api/v1 unless it is a full URL)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if data is not None:
        headers["Content-Type"] = content_type
    url = path if path.startswith("http") else sb.base_url + path
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, _json(response.read()))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, _json(error.read()))


def _json(data: bytes) -> Any:
    return json.loads(data) if data else None


def create_feature(sb: Sandbox, name: str = "A feature", **fields: Any) -> dict[str, Any]:
    reply = call(sb, "POST", "/releases/PRJ1-R-1/features", {"feature": {"name": name, **fields}})
    assert reply.status == 200, reply.body
    return reply.body["feature"]


def is_aha_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 19 and value.isdigit()


# -- seed data and reads ---------------------------------------------------------------------


def test_seed_data_and_me(sandbox: Sandbox) -> None:
    me = call(sandbox, "GET", "/me")
    assert me.status == 200
    assert me.body["user"]["name"] == "Sandbox User"
    assert me.body["user"]["email"] == "sandbox@example.com"
    assert is_aha_id(me.body["user"]["id"])

    products = {p["reference_prefix"]: p for p in sandbox.objects("product")}
    assert products["PRJ1"]["name"] == "Sandbox Product"
    assert products["PRJ2"]["name"] == "Second Product"
    assert all(is_aha_id(p["id"]) for p in products.values())
    assert [r["reference_num"] for r in sandbox.objects("release")] == [
        "PRJ1-R-1", "PRJ1-R-2", "PRJ2-R-1",
    ]
    [epic] = sandbox.objects("epic")
    assert (epic["reference_num"], epic["name"]) == ("PRJ1-E-1", "Seed epic")
    assert epic["release"]["reference_num"] == "PRJ1-R-1"
    for kind in ("feature", "goal", "initiative", "team", "custom_object_record", "idea"):
        assert sandbox.objects(kind) == []

    by_ref = call(sandbox, "GET", "/products/PRJ1")
    by_id = call(sandbox, "GET", f"/products/{products['PRJ1']['id']}")
    assert by_ref.status == by_id.status == 200
    assert by_ref.body == by_id.body == {"product": products["PRJ1"]}
    release = call(sandbox, "GET", "/releases/PRJ1-R-1").body["release"]
    assert release["name"] == "Release 1"
    assert release["product_id"] == products["PRJ1"]["id"]
    releases = call(sandbox, "GET", "/products/PRJ1/releases").body
    assert [r["reference_num"] for r in releases["releases"]] == ["PRJ1-R-1", "PRJ1-R-2"]


def test_unknown_kind_is_rejected(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        sandbox.objects("widget")


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_bad_or_missing_token_is_401_first(sandbox: Sandbox, token: str | None) -> None:
    reply = call(sandbox, "POST", "/releases/NOPE/features", {"nothing": 1}, token=token)
    assert reply.status == 401
    assert reply.body == {"error": "Unauthorized: API key is invalid or missing"}
    [entry] = sandbox.requests()
    assert entry["status"] == 401
    assert sandbox.objects("feature") == []


def test_basic_auth_is_not_accepted(sandbox: Sandbox) -> None:
    request = urllib.request.Request(
        sandbox.base_url + "/me", headers={"Authorization": f"Basic {TOKEN}"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        OPENER.open(request, timeout=5)
    assert caught.value.code == 401


# -- writes ----------------------------------------------------------------------------------


def test_create_feature_answers_like_aha(sandbox: Sandbox) -> None:
    reply = call(
        sandbox, "POST", "/releases/PRJ1-R-1/features?disable_mailers=true",
        {"feature": {"name": "First", "description": "<p>x</p>", "tags": "a, b"}},
    )
    assert reply.status == 200
    feature = reply.body["feature"]
    assert is_aha_id(feature["id"])
    assert feature["reference_num"] == "PRJ1-1"
    assert feature["name"] == "First"
    # Aha! answers a description as a note object and gives a new feature a workflow status.
    assert feature["description"]["body"] == "<p>x</p>"
    assert is_aha_id(feature["description"]["id"])
    assert feature["workflow_status"]["name"] == "New"
    assert is_aha_id(feature["workflow_status"]["id"])
    assert feature["tags"] == "a, b"
    assert feature["release"]["reference_num"] == "PRJ1-R-1"
    assert is_aha_id(feature["release"]["id"])
    assert feature["url"] == f"{sandbox.url}/features/PRJ1-1"
    assert feature["resource"] == f"{sandbox.base_url}/features/PRJ1-1"
    assert TIMESTAMP.match(feature["created_at"])
    assert TIMESTAMP.match(feature["updated_at"])
    assert create_feature(sandbox, "Second")["reference_num"] == "PRJ1-2"
    # Ids are JSON strings, never numbers.
    assert f'"id": "{feature["id"]}"' in json.dumps(call(sandbox, "GET", "/features/PRJ1-1").body)
    assert sandbox.requests()[0]["query"] == {"disable_mailers": "true"}


def test_id_and_reference_number_both_resolve(sandbox: Sandbox) -> None:
    feature = create_feature(sandbox)
    by_id = call(sandbox, "GET", f"/features/{feature['id']}")
    by_ref = call(sandbox, "GET", f"/features/{feature['reference_num']}")
    by_lower_ref = call(sandbox, "GET", "/features/prj1-1")
    assert by_id.body == by_ref.body == by_lower_ref.body == {"feature": feature}
    # The release container can be named by its id too.
    release_id = feature["release"]["id"]
    reply = call(sandbox, "POST", f"/releases/{release_id}/features", {"feature": {"name": "B"}})
    assert reply.body["feature"]["reference_num"] == "PRJ1-2"


def test_every_create_endpoint(sandbox: Sandbox) -> None:
    prj1 = call(sandbox, "GET", "/products/PRJ1").body["product"]["id"]
    epic = call(sandbox, "POST", "/releases/PRJ1-R-2/epics", {"epic": {"name": "E"}}).body["epic"]
    assert epic["reference_num"] == "PRJ1-E-2"
    assert epic["release"]["reference_num"] == "PRJ1-R-2"
    default = call(sandbox, "POST", "/products/PRJ1/epics", {"epic": {"name": "D"}}).body["epic"]
    assert default["reference_num"] == "PRJ1-E-3"
    assert default["release"]["reference_num"] == "PRJ1-R-1"
    other = call(sandbox, "POST", "/products/PRJ2/epics", {"epic": {"name": "O"}}).body["epic"]
    assert (other["reference_num"], other["release"]["reference_num"]) == ("PRJ2-E-1", "PRJ2-R-1")

    goal = call(sandbox, "POST", "/products/PRJ1/goals", {"goal": GOAL}).body["goal"]
    assert (goal["reference_num"], goal["product_id"]) == ("PRJ1-G-1", prj1)
    # Goals are "strategic imperatives" in Aha!'s web app, products "projects".
    assert goal["url"] == f"{sandbox.url}/strategic_imperatives/PRJ1-G-1"
    product = call(sandbox, "GET", "/products/PRJ1").body["product"]
    assert product["url"] == f"{sandbox.url}/projects/PRJ1"
    initiative = call(
        sandbox, "POST", "/products/PRJ1/initiatives", {"initiative": {"name": "I"}}
    ).body["initiative"]
    assert (initiative["reference_num"], initiative["product_id"]) == ("PRJ1-S-1", prj1)
    idea = call(sandbox, "POST", "/products/PRJ1/ideas", {"idea": {"name": "Idea"}}).body["idea"]
    assert idea["reference_num"] == "PRJ1-I-1"

    team = call(sandbox, "POST", "/teams", {"team": {"name": "T", "capacity": 5}}).body["team"]
    assert is_aha_id(team["id"])
    assert team["capacity"] == 5
    # A team has no reference number, page or timestamps in Aha!'s answers.
    assert not {"reference_num", "url", "resource", "created_at", "updated_at"} & set(team)
    assert call(sandbox, "GET", f"/teams/{team['id']}").body == {"team": team}

    all_ids = [
        obj["id"]
        for kind in ("product", "release", "epic", "goal", "initiative", "idea", "team")
        for obj in sandbox.objects(kind)
    ]
    assert len(set(all_ids)) == len(all_ids)
    assert all(is_aha_id(i) for i in all_ids)


def test_goal_create_needs_what_aha_marks_required(sandbox: Sandbox) -> None:
    path = "/products/PRJ1/goals"
    bare = call(sandbox, "POST", path, {"goal": {"name": "Grow"}})
    assert bare.status == 422
    message = bare.body["errors"]["message"]
    for field in ("Success metric name", "Success metric description", "Workflow status"):
        assert f"{field} can't be blank" in message
    flat = {"name": "Grow", "success_metric_name": "ARR", "success_metric_description": "EUR",
            "workflow_status": "Active"}
    goal = call(sandbox, "POST", path, {"goal": flat}).body["goal"]
    assert goal["workflow_status"]["name"] == "Active"
    assert call(sandbox, "POST", path, {"goal": {**GOAL, "workflow_status": ""}}).status == 422
    assert call(sandbox, "POST", path, {"goal": GOAL}).status == 200
    assert len(sandbox.objects("goal")) == 2
    sandbox.configure(relax_goal_validation=True)
    assert call(sandbox, "POST", path, {"goal": {"name": "Grow"}}).status == 200
    # An update needs none of them (omitted fields stay as they are).
    assert call(sandbox, "PUT", f"{path}/PRJ1-G-1", {"goal": {"name": "x"}}).status == 200


def test_updates_merge_and_keep_system_fields(sandbox: Sandbox) -> None:
    feature = create_feature(sandbox, "Keep", description="old", custom_fields={"a": 1})
    reply = call(
        sandbox, "PUT", "/features/PRJ1-1",
        {"feature": {"description": "new", "custom_fields": [{"key": "b", "value": "x"}],
                     "id": "1", "reference_num": "X-1"}},
    )
    assert reply.status == 200
    updated = reply.body["feature"]
    assert updated["name"] == "Keep"
    assert updated["description"] == {"id": feature["description"]["id"], "body": "new"}
    assert (updated["id"], updated["reference_num"]) == (feature["id"], "PRJ1-1")
    assert [(f["key"], f["value"]) for f in updated["custom_fields"]] == [("a", 1), ("b", "x")]
    assert updated["created_at"] == feature["created_at"]
    assert updated["updated_at"] >= feature["updated_at"]

    epic = call(sandbox, "PUT", "/epics/PRJ1-E-1", {"epic": {"progress": 50}}).body["epic"]
    assert (epic["name"], epic["progress"]) == ("Seed epic", 50)

    call(sandbox, "POST", "/products/PRJ1/goals", {"goal": {**GOAL, "color": "red"}})
    scoped = call(sandbox, "PUT", "/products/PRJ1/goals/PRJ1-G-1", {"goal": {"name": "G2"}})
    assert (scoped.body["goal"]["name"], scoped.body["goal"]["color"]) == ("G2", "red")
    # Aha! documents updates of goals and initiatives only through their product.
    assert call(sandbox, "PUT", "/goals/PRJ1-G-1", {"goal": {"color": "blue"}}).status == 404
    assert call(sandbox, "GET", "/goals/PRJ1-G-1").body["goal"]["color"] == "red"
    # A goal addressed through another product's path does not exist there.
    assert call(sandbox, "PUT", "/products/PRJ2/goals/PRJ1-G-1", {"goal": {}}).status == 404

    call(sandbox, "POST", "/products/PRJ1/initiatives", {"initiative": {"name": "I"}})
    scoped = call(
        sandbox, "PUT", "/products/PRJ1/initiatives/PRJ1-S-1", {"initiative": {"status": "x"}}
    )
    assert scoped.body["initiative"]["status"] == "x"
    short = call(sandbox, "PUT", "/initiatives/PRJ1-S-1", {"initiative": {"name": "I2"}})
    assert short.status == 404

    team = call(sandbox, "POST", "/teams", {"team": {"name": "T"}}).body["team"]
    renamed = call(sandbox, "PUT", f"/teams/{team['id']}", {"team": {"name": "T2"}})
    assert renamed.body["team"]["name"] == "T2"
    # A blank name is refused on update too, and changes nothing.
    assert call(sandbox, "PUT", "/features/PRJ1-1", {"feature": {"name": " "}}).status == 422
    assert call(sandbox, "GET", "/features/PRJ1-1").body["feature"]["name"] == "Keep"


def test_delete_epic_then_it_is_gone(sandbox: Sandbox) -> None:
    reply = call(sandbox, "DELETE", "/epics/PRJ1-E-1")
    assert reply.status == 204
    assert reply.body is None
    assert call(sandbox, "GET", "/epics/PRJ1-E-1").status == 404
    assert call(sandbox, "DELETE", "/epics/PRJ1-E-1").status == 404
    assert sandbox.objects("epic") == []


def test_patch_updates_like_put(sandbox: Sandbox) -> None:
    feature = create_feature(sandbox, "Before")
    reply = call(sandbox, "PATCH", f"/features/{feature['reference_num']}",
                 {"feature": {"name": "After"}})
    assert reply.status == 200
    assert reply.body["feature"]["name"] == "After"
    assert [f["name"] for f in sandbox.objects("feature")] == ["After"]


def test_echo_answers_any_method_with_what_it_received(sandbox: Sandbox) -> None:
    body = {"source": "crm", "records": [{"name": "a"}, {"name": "b"}]}
    reply = call(sandbox, "PATCH", "/echo/bulk/ideas?mode=fast", body)
    assert reply.status == 200
    assert reply.body == {"echo": {"method": "PATCH", "path": "echo/bulk/ideas",
                                   "query": {"mode": "fast"}, "body": body}}
    form = call(sandbox, "DELETE", "/echo/x", raw=b"a[b]=1&tags[]=x&tags[]=y",
                content_type="application/x-www-form-urlencoded")
    assert form.body["echo"]["body"] == {"a": {"b": "1"}, "tags": ["x", "y"]}
    hooked = call(sandbox, "POST", "/echo/x", {"records": [{"name": "FAIL-422"}]})
    assert hooked.status == 422
    assert call(sandbox, "POST", "/echo/x", raw=b"{nope").status == 400
    assert call(sandbox, "POST", "/echo/x", {"a": 1}, token=None).status == 401
    assert [entry["path"] for entry in sandbox.requests()][:2] == [
        "/api/v1/echo/bulk/ideas", "/api/v1/echo/x"]


def test_object_deleted_behind_the_apis_back(sandbox: Sandbox) -> None:
    feature = create_feature(sandbox)
    sandbox.delete_object("feature", feature["id"])
    reply = call(sandbox, "PUT", "/features/PRJ1-1", {"feature": {"name": "again"}})
    assert reply.status == 404
    assert reply.body == {"errors": {"message": "Record not found"}}
    with pytest.raises(KeyError):
        sandbox.delete_object("feature", "PRJ1-1")
    # Deleting a release deletes what it contains.
    sandbox.delete_object("release", "PRJ1-R-1")
    assert sandbox.objects("epic") == []
    # ... and a product whose default release is gone cannot take epics there.
    assert call(sandbox, "POST", "/products/PRJ1/epics", {"epic": {"name": "E"}}).status == 404


# -- validation ------------------------------------------------------------------------------


def test_unknown_container_object_or_route_is_404(sandbox: Sandbox) -> None:
    not_found = {"errors": {"message": "Record not found"}}
    for method, path, body in [
        ("POST", "/releases/PRJ9-R-1/features", {"feature": {"name": "x"}}),
        ("POST", "/products/NOPE/goals", {"goal": {"name": "x"}}),
        ("GET", "/features/PRJ1-99", None),
        ("GET", "/epics/1234567890123456789", None),
        ("POST", "/products/PRJ1/custom_objects/nope/records", {"custom_object_record": {}}),
        ("GET", "/no/such/route", None),
        ("PATCH", "/features/PRJ1-1", {"feature": {}}),
    ]:
        reply = call(sandbox, method, path, body)
        assert (reply.status, reply.body) == (404, not_found), path
    assert sandbox.objects("feature") == []


def test_path_segments_are_decoded_one_by_one(sandbox: Sandbox) -> None:
    reply = call(sandbox, "POST", "/releases/..%2Fx/features", {"feature": {"name": "x"}})
    assert reply.status == 404
    entry = sandbox.requests()[-1]
    assert entry["raw_path"] == "/api/v1/releases/..%2Fx/features"
    assert entry["path"] == "/api/v1/releases/../x/features"
    assert entry["segments"] == ["releases", "../x", "features"]

    assert call(sandbox, "GET", "/epics/PRJ1-E-1%3Fx=1").status == 404
    entry = sandbox.requests()[-1]
    assert entry["segments"] == ["epics", "PRJ1-E-1?x=1"]
    assert entry["query"] == {}
    # An encoded character that is harmless decodes to the same reference.
    assert call(sandbox, "GET", "/epics/PRJ1%2DE%2D1").status == 200


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (None, "application/json"),
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"name": "no wrapper"}', "application/json"),
        (b'{"feature": "not an object"}', "application/json"),
        (b'{"feature": {"name": "x", "tags": ["FAIL-400"]}}', "application/json"),
        (b"feature=1&feature[name]=x", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_bodies_are_400(sandbox: Sandbox, raw: bytes | None, content_type: str) -> None:
    reply = call(
        sandbox, "POST", "/releases/PRJ1-R-1/features", raw=raw, content_type=content_type
    )
    assert reply.status == 400
    assert isinstance(reply.body["errors"]["message"], str)
    assert sandbox.objects("feature") == []


@pytest.mark.parametrize(
    ("path", "wrapper", "fields"),
    [
        ("/releases/PRJ1-R-1/features", "feature", {}),
        ("/releases/PRJ1-R-1/features", "feature", {"name": "  "}),
        ("/releases/PRJ1-R-1/epics", "epic", {"name": None}),
        ("/products/PRJ1/goals", "goal", {"description": "no name"}),
        ("/products/PRJ1/initiatives", "initiative", {"name": ""}),
        ("/teams", "team", {}),
        ("/products/PRJ1/ideas", "idea", {}),
    ],
)
def test_blank_name_is_422(sandbox: Sandbox, path: str, wrapper: str, fields: dict) -> None:
    reply = call(sandbox, "POST", path, {wrapper: fields})
    assert reply.status == 422
    assert reply.body == {"errors": {"message": "Validation failed: Name can't be blank"}}


def test_fail_422_hook(sandbox: Sandbox) -> None:
    reply = call(sandbox, "POST", "/releases/PRJ1-R-1/features", {"feature": {"name": "FAIL-422"}})
    assert reply.status == 422
    assert sandbox.objects("feature") == []


def test_forbidden_product_is_403(sandbox: Sandbox) -> None:
    sandbox.configure(forbidden_products=["PRJ2"])
    forbidden = {"errors": {"message": "You do not have permission to access this product"}}
    for method, path, body in [
        ("POST", "/releases/PRJ2-R-1/features", {"feature": {"name": "x"}}),
        ("POST", "/products/PRJ2/goals", {"goal": {"name": "x"}}),
        ("GET", "/products/PRJ2", None),
        ("GET", "/releases/PRJ2-R-1/epics", None),
    ]:
        reply = call(sandbox, method, path, body)
        assert (reply.status, reply.body) == (403, forbidden), path
    assert call(sandbox, "POST", "/products/PRJ1/goals", {"goal": GOAL}).status == 200

    prj1 = call(sandbox, "GET", "/products/PRJ1").body["product"]["id"]
    sandbox.configure(forbidden_products=[prj1])
    assert call(sandbox, "GET", "/epics/PRJ1-E-1").status == 403
    assert call(sandbox, "GET", "/teams").status == 200


# -- custom table records --------------------------------------------------------------------


def test_custom_table_records(sandbox: Sandbox) -> None:
    path = "/products/PRJ1/custom_objects/vendors/records"
    prj1 = call(sandbox, "GET", "/products/PRJ1").body["product"]["id"]
    reply = call(
        sandbox, "POST", path,
        {"custom_object_record": {"custom_fields": {"tier": "gold", "name": "Acme"}}},
    )
    assert reply.status == 200
    record = reply.body["custom_object_record"]
    assert is_aha_id(record["id"])
    assert (record["product_id"], record["key"]) == (prj1, "vendors")
    assert "reference_num" not in record
    assert record["custom_fields"] == [
        {"key": "name", "name": "Name", "value": "Acme", "type": "string"},
        {"key": "tier", "name": "Tier", "value": "gold", "type": "string"},
    ]
    listed = call(
        sandbox, "POST", path,
        {"custom_object_record": {"custom_fields": [{"key": "name", "value": "Globex"},
                                                    {"key": "since", "value": "2020-01-01"}]}},
    )
    assert [f["value"] for f in listed.body["custom_object_record"]["custom_fields"]] == [
        "Globex", "2020-01-01",
    ]

    unknown = call(sandbox, "POST", path, {"custom_object_record": {"custom_fields": {"bad": 1}}})
    assert unknown.status == 422
    assert call(sandbox, "POST", path, {"custom_object_record": {}}).status == 422
    assert call(
        sandbox, "POST", path, {"custom_object_record": {"custom_fields": "nope"}}
    ).status == 422
    assert len(sandbox.objects("custom_object_record")) == 2

    updated = call(
        sandbox, "PUT", f"/custom_object_records/{record['id']}",
        {"custom_object_record": {"custom_fields": {"tier": "silver"}}},
    ).body["custom_object_record"]
    assert {f["key"]: f["value"] for f in updated["custom_fields"]} == {
        "name": "Acme", "tier": "silver",
    }
    assert call(sandbox, "GET", f"/custom_object_records/{record['id']}").body == {
        "custom_object_record": updated
    }
    assert "url" not in record and "url" not in updated
    # Aha! documents no name search (q) for record lists: it answers every record.
    found = call(sandbox, "GET", path + "?q=SILV").body
    assert [r["id"] for r in found["custom_object_records"]] == [
        record["id"], listed.body["custom_object_record"]["id"]
    ]
    assert found["custom_object_records"][0]["custom_fields"] == updated["custom_fields"]


# -- lists -----------------------------------------------------------------------------------


def test_lists_filter_and_paginate(sandbox: Sandbox) -> None:
    for name in ("Alpha one", "alpha two", "Beta", "ALPHA three"):
        create_feature(sandbox, name)
    everything = call(sandbox, "GET", "/releases/PRJ1-R-1/features").body
    assert everything["pagination"] == {"total_records": 4, "total_pages": 1, "current_page": 1}
    assert [f["name"] for f in everything["features"]][:2] == ["Alpha one", "alpha two"]

    page = call(sandbox, "GET", "/releases/PRJ1-R-1/features?q=alpha&per_page=2&page=2").body
    assert [f["name"] for f in page["features"]] == ["ALPHA three"]
    assert page["pagination"] == {"total_records": 3, "total_pages": 2, "current_page": 2}

    past = call(sandbox, "GET", "/releases/PRJ1-R-1/features?updated_since=2000-01-01T00:00:00Z")
    assert past.body["pagination"]["total_records"] == 4
    future = call(sandbox, "GET", "/releases/PRJ1-R-1/features?updated_since=2999-01-01")
    assert future.body["features"] == []
    assert call(sandbox, "GET", "/releases/PRJ1-R-1/features?updated_since=soon").status == 400

    assert call(sandbox, "GET", "/releases/PRJ1-R-2/features").body["features"] == []
    epics = call(sandbox, "GET", "/products/PRJ1/epics?q=seed").body["epics"]
    assert [e["reference_num"] for e in epics] == ["PRJ1-E-1"]
    assert call(sandbox, "GET", "/releases/PRJ1-R-1/epics").body["pagination"]["total_records"] == 1
    call(sandbox, "POST", "/products/PRJ1/goals", {"goal": {**GOAL, "name": "Grow"}})
    call(sandbox, "POST", "/products/PRJ1/initiatives", {"initiative": {"name": "Push"}})
    call(sandbox, "POST", "/teams", {"team": {"name": "Core"}})
    call(sandbox, "POST", "/teams", {"team": {"name": "Platform"}})
    assert [g["name"] for g in call(sandbox, "GET", "/products/PRJ1/goals").body["goals"]] == [
        "Grow"
    ]
    initiatives = call(sandbox, "GET", "/products/PRJ1/initiatives").body["initiatives"]
    assert [i["name"] for i in initiatives] == ["Push"]
    # Aha! documents neither q nor updated_since for teams and goals: they answer everything.
    for query in ("?q=co", "?updated_since=2999-01-01"):
        teams = call(sandbox, "GET", "/teams" + query).body["teams"]
        assert [t["name"] for t in teams] == ["Core", "Platform"]
        goals = call(sandbox, "GET", "/products/PRJ1/goals" + query).body["goals"]
        assert [g["name"] for g in goals] == ["Grow"]
    assert call(sandbox, "GET", "/products/PRJ2/goals").body["goals"] == []
    # List items are short: id, reference_num, name, created_at, url, resource.
    item = call(sandbox, "GET", "/releases/PRJ1-R-1/epics").body["epics"][0]
    assert set(item) == {"id", "reference_num", "name", "created_at", "url", "resource"}
    assert set(teams[0]) == {"id", "name"}


def test_per_page_is_capped_at_200(sandbox: Sandbox) -> None:
    reply = call(sandbox, "GET", "/products/PRJ1/releases?per_page=5000")
    assert reply.status == 200
    assert reply.body["pagination"]["total_pages"] == 1


# -- request log and form bodies -------------------------------------------------------------


def test_request_log_entries(sandbox: Sandbox) -> None:
    before = time.time()
    create_feature(sandbox, "Logged")
    call(sandbox, "GET", "/me", token="nope")
    first, second = sandbox.requests()
    assert first["method"] == "POST"
    assert first["path"] == first["raw_path"] == "/api/v1/releases/PRJ1-R-1/features"
    assert first["segments"] == ["releases", "PRJ1-R-1", "features"]
    assert first["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert first["content_type"] == "application/json"
    assert first["body"] == {"feature": {"name": "Logged"}}
    assert json.loads(first["raw_body"]) == first["body"]
    assert (first["status"], first["fault"]) == (200, None)
    assert before <= first["at"] <= second["at"] <= time.time()
    assert (second["status"], second["body"], second["raw_body"]) == (401, None, "")
    sandbox.clear_requests()
    assert sandbox.requests() == []
    assert sandbox.stats()["requests"] == 2


def test_form_encoded_bodies_are_decoded_rails_style(sandbox: Sandbox) -> None:
    form = (
        "feature[name]=Form+feature&feature[tags][]=a&feature[tags][]=b"
        "&feature[custom_fields][priority]=P1&feature[description]=%3Cp%3Ehi%3C%2Fp%3E"
    )
    reply = call(
        sandbox, "POST", "/releases/PRJ1-R-1/features", raw=form.encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert reply.status == 200
    feature = reply.body["feature"]
    assert (feature["name"], feature["tags"], feature["description"]["body"]) == (
        "Form feature", ["a", "b"], "<p>hi</p>",
    )
    assert feature["custom_fields"][0]["value"] == "P1"
    entry = sandbox.requests()[-1]
    assert entry["content_type"] == "application/x-www-form-urlencoded"
    assert entry["raw_body"] == form
    assert entry["body"] == {
        "feature": {
            "name": "Form feature",
            "tags": ["a", "b"],
            "custom_fields": {"priority": "P1"},
            "description": "<p>hi</p>",
        }
    }


def test_form_decoder_handles_lists_of_objects() -> None:
    assert decode_form("a[][x]=1&a[][y]=2&a[][x]=3&b[c][d]=4&e=") == {
        "a": [{"x": "1", "y": "2"}, {"x": "3"}],
        "b": {"c": {"d": "4"}},
        "e": "",
    }


# -- rate limit ------------------------------------------------------------------------------


def test_no_limit_means_no_rate_limit_headers(sandbox: Sandbox) -> None:
    reply = call(sandbox, "GET", "/me")
    assert reply.headers.get("X-Ratelimit-Limit") is None


def test_rate_limit_per_second_429_then_window_frees(sandbox: Sandbox) -> None:
    sandbox.configure(rate_per_second=3)
    start = time.time()
    replies = [call(sandbox, "GET", "/me") for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 200]
    assert [r.headers["X-Ratelimit-Remaining"] for r in replies] == ["2", "1", "0"]
    assert all(r.headers["X-Ratelimit-Limit"] == "3" for r in replies)
    blocked = [call(sandbox, "GET", "/me") for _ in range(3)]
    assert time.time() - start < 1, "too slow to test a 1 s window"
    assert [r.status for r in blocked] == [429, 429, 429]
    assert blocked[0].body == {"errors": {"message": "Rate limit exceeded"}}
    assert blocked[0].headers["X-Ratelimit-Remaining"] == "0"
    reset = int(blocked[0].headers["X-Ratelimit-Reset"])
    assert start <= reset <= start + 2
    assert blocked[0].headers.get("Retry-After") is None
    assert [e["fault"] for e in sandbox.requests()[3:]] == ["rate_limit"] * 3

    # The 429s used no budget: once the first arrivals leave the window, 3 fit again.
    time.sleep(max(0.0, start + 1.05 - time.time()))
    assert [call(sandbox, "GET", "/me").status for _ in range(3)] == [200, 200, 200]
    assert sandbox.stats()["throttled"] == 3


def test_rate_limit_per_minute_and_retry_after(sandbox: Sandbox) -> None:
    sandbox.configure(rate_per_second=5, rate_per_minute=2, send_retry_after=True)
    first = call(sandbox, "GET", "/me")
    # The minute window is the more constraining one: its numbers are reported.
    assert (first.headers["X-Ratelimit-Limit"], first.headers["X-Ratelimit-Remaining"]) == (
        "2", "1",
    )
    assert call(sandbox, "GET", "/me").status == 200
    blocked = call(sandbox, "GET", "/me")
    assert blocked.status == 429
    assert blocked.headers["X-Ratelimit-Limit"] == "2"
    assert 55 <= int(blocked.headers["Retry-After"]) <= 60
    assert int(blocked.headers["X-Ratelimit-Reset"]) >= time.time() + 55
    # Unauthorized requests neither use budget nor escape the headers.
    unauthorized = call(sandbox, "GET", "/me", token="bad")
    assert unauthorized.status == 401
    assert unauthorized.headers["X-Ratelimit-Remaining"] == "0"


def test_throttle_rate(sandbox: Sandbox) -> None:
    sandbox.configure(throttle_rate=1.0, send_retry_after=True)
    reply = call(sandbox, "POST", "/releases/PRJ1-R-1/features", {"feature": {"name": "x"}})
    assert reply.status == 429
    assert reply.headers["X-Ratelimit-Remaining"] == "0"
    assert reply.headers["Retry-After"] == "1"
    assert abs(int(reply.headers["X-Ratelimit-Reset"]) - (time.time() + 1)) <= 1.5
    assert sandbox.objects("feature") == []
    assert sandbox.requests()[-1]["fault"] == "throttle"

    sandbox.configure(throttle_rate=0.5)
    sandbox.reset()
    first_run = [call(sandbox, "GET", "/me").status for _ in range(30)]
    assert 0 < first_run.count(429) < 30
    sandbox.reset()
    # Same seed, same sequence of requests: the same requests are throttled.
    assert [call(sandbox, "GET", "/me").status for _ in range(30)] == first_run
    assert sandbox.stats()["throttled"] == first_run.count(429)


# -- faults ----------------------------------------------------------------------------------


def test_error_rate_answers_5xx_and_writes_nothing(sandbox: Sandbox) -> None:
    sandbox.configure(error_rate=1.0, error_status=503)
    reply = call(sandbox, "POST", "/releases/PRJ1-R-1/features", {"feature": {"name": "x"}})
    assert reply.status == 503
    assert "errors" in reply.body
    assert sandbox.objects("feature") == []
    assert sandbox.requests()[-1]["fault"] == "error"
    assert sandbox.stats()["errors_injected"] == 1
    with pytest.raises(ValueError, match="error_status"):
        sandbox.configure(error_status=418)


def test_drop_rate_closes_the_connection_and_writes_nothing(sandbox: Sandbox) -> None:
    sandbox.configure(drop_rate=1.0)
    start = time.time()
    with pytest.raises(OSError) as caught:
        call(sandbox, "POST", "/releases/PRJ1-R-1/features", {"feature": {"name": "x"}},
             timeout=3)
    assert not isinstance(caught.value, TimeoutError)
    assert time.time() - start < 1
    assert sandbox.objects("feature") == []
    [entry] = sandbox.requests()
    assert (entry["status"], entry["fault"]) == (None, "drop")
    assert sandbox.stats()["dropped"] == 1


def test_commit_timeout_writes_then_never_answers(sandbox: Sandbox) -> None:
    sandbox.configure(commit_timeout_rate=1.0, commit_timeout_seconds=0.4)
    with pytest.raises(TimeoutError):
        call(sandbox, "POST", "/releases/PRJ1-R-1/features", {"feature": {"name": "x"}},
             timeout=0.15)
    assert [f["name"] for f in sandbox.objects("feature")] == ["x"]
    deadline = time.time() + 3
    while sandbox.stats()["commit_timeouts"] == 0 and time.time() < deadline:
        time.sleep(0.02)
    [entry] = sandbox.requests()
    assert (entry["status"], entry["fault"]) == (None, "commit_timeout")


def test_latency_overlaps_between_concurrent_clients(sandbox: Sandbox) -> None:
    sandbox.configure(latency_ms=300)
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(call(sandbox, "GET", "/me").status))
        for _ in range(5)
    ]
    start = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.time() - start
    assert statuses == [200] * 5
    assert 0.3 <= elapsed < 1.0
    assert {e["fault"] for e in sandbox.requests()} == {"latency"}


def test_stats_count_busiest_windows(sandbox: Sandbox) -> None:
    for _ in range(4):
        call(sandbox, "GET", "/me")
    call(sandbox, "GET", "/me", token="bad")
    stats = sandbox.stats()
    assert (stats["requests"], stats["max_per_second"], stats["max_per_minute"]) == (5, 5, 5)
    time.sleep(1.05)
    call(sandbox, "GET", "/me")
    call(sandbox, "GET", "/me")
    stats = sandbox.stats()
    assert (stats["requests"], stats["max_per_second"], stats["max_per_minute"]) == (7, 5, 7)
    assert stats["throttled"] == stats["errors_injected"] == stats["dropped"] == 0


def test_configure_rejects_unknown_or_bad_settings(sandbox: Sandbox) -> None:
    with pytest.raises(TypeError):
        sandbox.configure(speed=11)
    with pytest.raises(ValueError, match="must not exceed 1"):
        sandbox.configure(error_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError, match="rate_per_second"):
        sandbox.configure(rate_per_second=0)
    assert sandbox.config()["error_rate"] == 0.0


def test_reset_reseeds_and_keeps_configuration(sandbox: Sandbox) -> None:
    first = create_feature(sandbox)
    sandbox.configure(rate_per_minute=100)
    sandbox.reset()
    assert sandbox.objects("feature") == []
    assert len(sandbox.objects("epic")) == 1
    assert sandbox.requests() == []
    assert sandbox.stats()["requests"] == 0
    assert sandbox.config()["rate_per_minute"] == 100
    again = create_feature(sandbox)
    assert again["reference_num"] == "PRJ1-1"
    assert again["id"] != first["id"]  # ids never repeat, so a stale id cannot hit a new object
    assert call(sandbox, "GET", f"/features/{first['id']}").status == 404


# -- admin HTTP endpoints and CLI ------------------------------------------------------------


def admin(sb: Sandbox, method: str, path: str, body: Any = None) -> Reply:
    return call(sb, method, f"{sb.url}/__sandbox{path}", body, token=None)


def test_admin_http_endpoints(sandbox: Sandbox) -> None:
    create_feature(sandbox, "Via API")
    logged = admin(sandbox, "GET", "/requests")
    assert logged.status == 200
    assert [e["path"] for e in logged.body] == ["/api/v1/releases/PRJ1-R-1/features"]
    assert admin(sandbox, "DELETE", "/requests").status == 204
    assert admin(sandbox, "GET", "/requests").body == []

    config = admin(sandbox, "POST", "/config", {"latency_ms": 5, "forbidden_products": ["PRJ2"]})
    assert config.status == 200
    assert (config.body["latency_ms"], config.body["forbidden_products"]) == (5, ["PRJ2"])
    assert sandbox.config()["latency_ms"] == 5
    assert admin(sandbox, "POST", "/config", {"bogus": 1}).status == 400
    assert admin(sandbox, "POST", "/config", {"error_rate": 2}).status == 400
    assert admin(sandbox, "GET", "/config").body["forbidden_products"] == ["PRJ2"]

    features = admin(sandbox, "GET", "/objects/feature")
    assert [f["name"] for f in features.body] == ["Via API"]
    assert admin(sandbox, "GET", "/objects/widget").status == 404
    assert admin(sandbox, "DELETE", "/objects/epic/PRJ1-E-1").status == 204
    assert admin(sandbox, "DELETE", "/objects/epic/PRJ1-E-1").status == 404
    assert call(sandbox, "GET", "/epics/PRJ1-E-1").status == 404

    stats = admin(sandbox, "GET", "/stats").body
    assert stats["requests"] == 2  # admin calls are neither logged nor counted
    assert admin(sandbox, "POST", "/reset").status == 204
    assert admin(sandbox, "GET", "/objects/feature").body == []
    assert admin(sandbox, "GET", "/nope").status == 404
    assert call(sandbox, "GET", f"{sandbox.url}/elsewhere").status == 404


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "url.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "target_aha.sandbox", "--port", "0", "--token", "cli-token",
         "--rate-per-second", "50", "--port-file", str(port_file)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=10), "the sandbox printed nothing"
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"target-aha sandbox listening on (http://127\.0\.0\.1:\d+/sandbox-[0-9a-f]{8}/api/v1) "
            r"\(token: cli-token\)\n",
            line,
        )
        assert match, line
        base_url = match.group(1)
        assert port_file.read_text().strip() == base_url
        request = urllib.request.Request(
            base_url + "/me", headers={"Authorization": "Bearer cli-token"}
        )
        with OPENER.open(request, timeout=5) as response:
            assert response.status == 200
            assert response.headers["X-Ratelimit-Limit"] == "50"
            assert json.loads(response.read())["user"]["name"] == "Sandbox User"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_commit_error_stores_the_object_and_answers_5xx() -> None:
    with Sandbox(token="t") as sb:
        sb.configure(commit_error_rate=1.0, error_status=502)
        resp = requests.post(sb.base_url + "/teams", json={"team": {"name": "x"}},
                             headers={"Authorization": "Bearer t"}, timeout=5)
        assert resp.status_code == 502
        assert [t["name"] for t in sb.objects("team")] == ["x"]
        assert sb.stats()["commit_errors"] == 1
