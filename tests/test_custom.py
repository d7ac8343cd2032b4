"""The custom endpoint and batching end to end: what Aha! (or another host) received, the
results lines, and the errors a user sees for a configuration that cannot work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from target_aha.forms import encode_form
from target_aha.sandbox import Sandbox
from tests.conftest import TOKEN, record, schema, state
from tests.receiver import Receiver


def writes(sb: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sb.requests() if r["method"] != "GET"]


def custom(**entry: Any) -> dict[str, Any]:
    """A config with one custom stream `c`."""
    return {"streams": {"c": {"endpoint": "custom", **entry}}}


# -- one record, one call ----------------------------------------------------------------------


def test_custom_post_wraps_the_record_and_reports_the_new_object(
    sandbox: Sandbox, run_target
) -> None:
    run = run_target(
        custom(url="/products/PRJ1/ideas", wrap_key="idea", key_property="ext",
               exclude_attributes=["secret"]),
        [schema("c"), record("c", {"ext": "X-1", "name": "Dark mode", "secret": "s"}),
         state({"b": 1})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    assert (req["method"], req["path"]) == ("POST", "/api/v1/products/PRJ1/ideas")
    assert req["body"] == {"idea": {"ext": "X-1", "name": "Dark mode"}}
    assert req["query"] == {"disable_mailers": "true"}
    assert req["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["content-type"] == "application/json"
    [idea] = sandbox.objects("idea")
    [line] = run.results
    assert (line["endpoint"], line["operation"], line["status"], line["key"]) == (
        "custom", "custom", "succeeded", "X-1")
    assert (line["aha_id"], line["reference_num"], line["url"]) == (
        idea["id"], idea["reference_num"], idea["url"])
    assert run.states == [{"b": 1}]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_custom_update_methods_fill_placeholders_as_one_segment(
    sandbox: Sandbox, run_target, method: str
) -> None:
    run = run_target(
        {"on_record_error": "skip", "max_concurrency": 1,
         **custom(method=method, url="/epics/{eid}", wrap_key="epic", key_property="n")},
        [schema("c"), record("c", {"eid": "PRJ1-E-1", "n": "1", "name": "renamed"}),
         record("c", {"eid": "../x", "n": "2", "name": "sneaky"}),
         record("c", {"n": "3", "name": "no id"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    first, second = writes(sandbox)
    assert (first["method"], first["path"], first["body"]) == (
        method, "/api/v1/epics/PRJ1-E-1", {"epic": {"n": "1", "name": "renamed"}})
    assert second["raw_path"] == "/api/v1/epics/..%2Fx"
    assert [e["name"] for e in sandbox.objects("epic")] == ["renamed"]
    by_key = {line["key"]: line for line in run.results}
    assert (by_key["1"]["status"], by_key["1"]["http_status"]) == ("succeeded", 200)
    assert (by_key["2"]["status"], by_key["2"]["http_status"]) == ("rejected", 404)
    assert (by_key["3"]["status"], by_key["3"]["http_status"]) == ("rejected", None)
    assert "'eid'" in by_key["3"]["error"]
    assert {line["operation"] for line in run.results} == {"custom"}


def test_custom_patch_updates_an_existing_object(sandbox: Sandbox, run_target) -> None:
    run_target({"streams": {"f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}}},
               [schema("f"), record("f", {"name": "Before"})], sandbox=sandbox)
    [feature] = sandbox.objects("feature")
    run = run_target(
        custom(method="patch", url=sandbox.base_url + "/features/{ref}", wrap_key="feature"),
        [schema("c"), record("c", {"ref": feature["reference_num"], "name": "After"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    assert writes(sandbox)[-1]["method"] == "PATCH"
    assert [f["name"] for f in sandbox.objects("feature")] == ["After"]
    assert run.results[0]["aha_id"] == feature["id"]


def test_custom_delete_sends_no_body_when_nothing_is_left(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {"streams": {
            "c": {"endpoint": "custom", "method": "DELETE", "url": "/epics/{epic}"},
            "d": {"endpoint": "custom", "method": "DELETE", "url": "/echo/archive/{id}"},
        }},
        [schema("c"), record("c", {"epic": "PRJ1-E-1"}),
         schema("d"), record("d", {"id": "7", "reason": "duplicate"})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    echo, epic = sorted(writes(sandbox), key=lambda r: r["path"])
    assert (epic["method"], epic["body"], epic["raw_body"]) == ("DELETE", None, "")
    assert "content-type" not in epic["headers"]
    assert sandbox.objects("epic") == []
    assert (echo["path"], echo["body"]) == ("/api/v1/echo/archive/7", {"reason": "duplicate"})
    assert [line["status"] for line in run.results] == ["succeeded", "succeeded"]


def test_form_body_decodes_to_the_intended_structure(sandbox: Sandbox, run_target) -> None:
    fields = {
        "name": "Form idea & more",
        "description": "<p>50% off</p>",
        "tags": ["a b", "c"],
        "custom_fields": {"priority": "P1", "team": "platform"},
        "links": [{"title": "t1", "url": "https://x/1"}, {"title": "t2", "url": "https://x/2"}],
    }
    run = run_target(
        custom(url="/products/PRJ1/ideas?source=crm", wrap_key="idea", content_format="form"),
        [schema("c"), record("c", fields)],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    [req] = writes(sandbox)
    assert req["content_type"] == "application/x-www-form-urlencoded"
    assert req["body"] == {"idea": fields}
    assert "idea[tags][]=a%20b&idea[tags][]=c" in req["raw_body"]
    assert "idea[custom_fields][priority]=P1" in req["raw_body"]
    assert req["query"] == {"source": "crm", "disable_mailers": "true"}
    [idea] = sandbox.objects("idea")
    assert idea["name"] == "Form idea & more"


def test_other_host_never_receives_the_api_key(sandbox: Sandbox, run_target) -> None:
    with Receiver() as other:
        run = run_target(
            {"streams": {
                "out": {"endpoint": "custom", "url": other.url + "/hooks/{team}/ideas",
                        "allow_other_hosts": True, "method": "PUT",
                        "request_headers": {"X-Source": "target-aha"}},
                "f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"},
            }},
            [schema("out"), record("out", {"team": "a/b", "name": "x"}),
             schema("f"), record("f", {"name": "to Aha!"})],
            sandbox=sandbox,
        )
        assert run.returncode == 0, run.stderr
        [got] = other.received
        assert (got.method, got.path) == ("PUT", "/hooks/a%2Fb/ideas")  # no disable_mailers
        assert got.json() == {"name": "x"}
        assert got.headers["X-Source"] == "target-aha"
        assert "Authorization" not in got.headers
        assert TOKEN.encode() not in other.all_raw()
    # The Aha! stream of the same run still sends the key to Aha!.
    [aha] = writes(sandbox)
    assert aha["headers"]["authorization"] == f"Bearer {TOKEN}"
    out_line = next(line for line in run.results if line["stream"] == "out")
    assert (out_line["status"], out_line["operation"], out_line["http_status"]) == (
        "succeeded", "custom", 200)
    assert out_line["aha_id"] == "ext-1"  # the receiver's answer carries an object id


def test_dry_run_shows_no_authorization_for_other_hosts(run_target) -> None:
    run = run_target(
        {"base_url": "https://mycompany.aha.io/api/v1", "api_key": "real-secret", "dry_run": True,
         "streams": {
             "out": {"endpoint": "custom", "url": "https://hooks.example.com/x",
                     "allow_other_hosts": True},
             "in": {"endpoint": "custom", "url": "https://mycompany.aha.io/api/v1/ideas/{id}",
                    "method": "PUT"},
         }},
        [schema("out"), record("out", {"a": 1}), schema("in"), record("in", {"id": "I-1"})],
    )
    assert run.returncode == 0, run.stderr
    out, inside = run.dry_run_lines
    assert "Authorization" not in out["headers"]
    assert out["url"] == "https://hooks.example.com/x"
    assert inside["headers"]["Authorization"] == "Bearer ***"
    assert inside["url"] == "https://mycompany.aha.io/api/v1/ideas/I-1?disable_mailers=true"
    assert inside["body"] == {}  # only a DELETE with nothing left sends no body
    assert "real-secret" not in run.stderr + run.stdout


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"url": "https://elsewhere.example.com/x"}, "allow_other_hosts: true"),
        ({"url": "/x", "method": "GET"}, "method is 'GET'; it must be one of POST, PUT, PATCH"),
        ({"url": "ftp://example.com/x"}, "is not an http(s) URL"),
        ({"url": "//example.com/x"}, "is not an http(s) URL"),
        ({"url": "/ideas/{id"}, "is malformed"),
        ({"url": "https://{host}/x", "allow_other_hosts": True}, "placeholder outside the path"),
        ({"url": "/x?q={name}"}, "placeholder outside the path"),
        ({"url": "http://example.com/x", "allow_other_hosts": True}, "uses plain http"),
        ({}, "url is required"),
        ({"url": "/x", "content_format": "xml"}, "content_format is 'xml'"),
        ({"url": "/x", "wrapkey": "idea"}, "unknown setting(s) wrapkey"),
        ({"url": "/x", "write_mode": "upsert"}, "unknown setting(s) write_mode"),
        ({"url": "/x/{id}", "batch": {"size": 2}}, "reads record fields"),
        ({"url": "/x", "wrap_key": "idea", "batch": {}}, "wrap_key does not apply to batches"),
        ({"url": "/x", "batch": {"size": 0}}, "batch.size must be"),
        ({"url": "/x", "batch": {"algorithm": "zip"}}, "algorithm is 'zip'"),
        ({"url": "/x", "batch": {"other_props": {"records": 1}}}, "other_props has the key"),
        ({"url": "/x", "batch": {"algorithm": "code", "code": "import os"}},
         "not a valid expression"),
        ({"url": "/x", "batch": {"algorithm": "code", "code": "records; records"}},
         "not a valid expression"),
        ({"url": "/x", "batch": {"algorithm": "code"}}, "batch.code must be an expression"),
        ({"url": "/x", "response_webhook_url": "ftp://x"}, "is not an http(s) URL"),
    ],
)
def test_custom_config_errors_before_any_record(
    sandbox: Sandbox, run_target, entry: dict[str, Any], expected: str
) -> None:
    run = run_target(custom(**entry), [schema("c"), record("c", {"name": "x"})], sandbox=sandbox)
    assert run.returncode == 1
    assert expected in run.stderr
    assert "streams.c" in run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.requests() == []
    assert run.results == []


# -- batches -------------------------------------------------------------------------------------


def batched(**batch: Any) -> dict[str, Any]:
    return custom(url="/echo/bulk/ideas", key_property="k", exclude_attributes=["internal"],
                  batch=batch)


def rows(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [record("c", {"k": f"K{i}", "title": f"t{i}", "internal": "x", **extra})
            for i in range(n)]


def test_property_batches_with_a_final_partial_batch(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {**batched(size=3, property_name="ideas", other_props={"source": "crm", "v": 2}),
         "max_concurrency": 1},
        [schema("c"), *rows(7), state({"n": 7})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    reqs = writes(sandbox)
    assert [len(r["body"]["ideas"]) for r in reqs] == [3, 3, 1]
    assert reqs[0]["body"] == {
        "source": "crm", "v": 2,
        "ideas": [{"k": f"K{i}", "title": f"t{i}"} for i in range(3)],
    }
    assert all(r["query"] == {"disable_mailers": "true"} for r in reqs)
    lines = run.results
    assert [line["key"] for line in lines] == [f"K{i}" for i in range(7)]
    assert {(line["status"], line["operation"], line["http_status"]) for line in lines} == {
        ("succeeded", "custom", 200)}
    assert run.states == [{"n": 7}]


def test_default_batch_is_100_records_under_records(sandbox: Sandbox, run_target) -> None:
    run = run_target(batched(), [schema("c"), *rows(150)], sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    # The two batches go out concurrently: their arrival order is not part of the contract.
    assert sorted((len(r["body"]["records"]) for r in writes(sandbox)), reverse=True) == [100, 50]


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_partial_batch_settles_before_state(
    sandbox: Sandbox, run_target, on_error: str
) -> None:
    # The batch is not full when the input ends: it is sent at the drain, and STATE waits
    # for its answer. Aha! rejects it, so STATE only comes out if rejects are skipped.
    run = run_target(
        {**batched(size=10), "on_record_error": on_error},
        [schema("c"), *rows(2), record("c", {"k": "K9", "title": "FAIL-422"}), state({"n": 3})],
        sandbox=sandbox,
    )
    [req] = writes(sandbox)
    assert len(req["body"]["records"]) == 3
    assert [(line["key"], line["status"], line["http_status"]) for line in run.results] == [
        ("K0", "rejected", 422), ("K1", "rejected", 422), ("K9", "rejected", 422)]
    if on_error == "fail":
        assert run.returncode == 1
        assert run.states == []
        assert "Batch rejected (stream 'c', batch of 3 records #1-#3 (keys 'K0'" in run.stderr
        assert "POST /echo/bulk/ideas answered 422" in run.stderr
        assert "on_record_error: skip" in run.stderr
    else:
        assert run.returncode == 0, run.stderr
        assert run.states == [{"n": 3}]


def test_drains_send_partial_batches(sandbox: Sandbox, run_target) -> None:
    # A tiny state interval makes the SDK drain after every message: each drain sends what
    # the batch holds, so no record waits past a STATE.
    run = run_target(
        {**batched(size=50), "state_interval_seconds": 1e-9},
        [schema("c"), *rows(2), state({"n": 2}), *rows(1), state({"n": 3})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    assert sum(len(r["body"]["records"]) for r in writes(sandbox)) == 3
    assert run.states == [{"n": 2}, {"n": 3}]


def test_code_batch_builds_the_body_from_records_and_stream(
    sandbox: Sandbox, run_target
) -> None:
    code = ("{'source': stream, 'count': len(records), "
            "'ideas': [{'name': r['title'].upper(), 'ref': md5(r['k'])[:6]} for r in records]}")
    run = run_target(batched(size=2, algorithm="code", code=code),
                     [schema("c"), *rows(3)], sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    # The two batches are sent concurrently: tell them apart by their size, not arrival order.
    first, second = sorted((r["body"] for r in writes(sandbox)), key=lambda b: -b["count"])
    assert first["source"] == "c"
    assert first["count"] == 2
    assert [i["name"] for i in first["ideas"]] == ["T0", "T1"]
    assert len(first["ideas"][0]["ref"]) == 6
    assert second["count"] == 1
    assert [line["status"] for line in run.results] == ["succeeded"] * 3


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("__import__('os').system('touch {marker}')", "'__import__' not defined"),
        ("open('{marker}', 'w').write('x')", "'open' not defined"),
        ("records.__class__.__mro__", "FeatureNotAvailable"),
        ("[c for c in ().__class__.__base__.__subclasses__()]", "FeatureNotAvailable"),
        ("'{{0.__class__}}'.format(records)", "FeatureNotAvailable"),
        ("{{'x': records[0]['missing']}}", "KeyError: 'missing'"),
        ("records[0]['title']", "must be an object or a list"),
        ("{{'m': json}}", "cannot be sent as JSON"),
    ],
    ids=["import", "open", "dunder", "subclasses", "format", "key-error", "scalar", "module"],
)
def test_failing_or_hostile_code_stops_the_run_and_sends_nothing(
    sandbox: Sandbox, run_target, tmp_path: Path, code: str, error: str
) -> None:
    marker = tmp_path / "pwned"
    run = run_target(
        {**batched(size=2, algorithm="code", code=code.format(marker=marker)),
         "on_record_error": "skip"},
        [schema("c"), *rows(3), state({"n": 3})],
        sandbox=sandbox,
    )
    assert run.returncode == 1
    assert error in run.stderr
    assert "Stream 'c', batch of 2 records #1-#2 (keys 'K0', 'K1')" in run.stderr
    assert "streams.c.batch.code failed" in run.stderr
    assert "Nothing was sent for this batch" in run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.requests() == []
    assert not marker.exists()
    assert run.states == []
    assert [line["status"] for line in run.results] == ["rejected", "rejected"]


def test_form_code_batch_must_be_an_object(sandbox: Sandbox, run_target) -> None:
    entry = custom(url="/echo/x", content_format="form",
                   batch={"algorithm": "code", "code": "[r['title'] for r in records]"})
    run = run_target(entry, [schema("c"), *rows(1)], sandbox=sandbox)
    assert run.returncode == 1
    assert "content_format 'form' needs an object" in run.stderr
    assert sandbox.requests() == []


def test_dry_run_prints_batch_and_form_bodies_as_sent(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {"dry_run": True, "streams": {
            "c": {"endpoint": "custom", "url": "/echo/bulk", "batch": {
                "size": 2, "property_name": "items", "other_props": {"mode": "upsert"}}},
            "f": {"endpoint": "custom", "url": "/products/PRJ1/ideas", "wrap_key": "idea",
                  "content_format": "form"},
        }},
        [schema("c"), *rows(3), schema("f"), record("f", {"name": "N", "tags": ["a", "b"]})],
        sandbox=sandbox,
    )
    assert run.returncode == 0, run.stderr
    assert sandbox.requests() == []
    printed = run.dry_run_lines
    batches = [p["body"] for p in printed if p["url"].endswith("/echo/bulk?disable_mailers=true")]
    assert batches == [
        {"mode": "upsert", "items": [
            {"k": f"K{i}", "title": f"t{i}", "internal": "x"} for i in range(2)]},
        {"mode": "upsert", "items": [{"k": "K2", "title": "t2", "internal": "x"}]},
    ]
    [form] = [p for p in printed if "/ideas" in p["url"]]
    assert form["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert form["body"] == "idea[name]=N&idea[tags][]=a&idea[tags][]=b"
    assert form["body"] == encode_form({"idea": {"name": "N", "tags": ["a", "b"]}})
    assert [line["status"] for line in run.results] == ["dry_run"] * 4


def test_other_host_refusing_stops_with_its_own_message(sandbox: Sandbox, run_target) -> None:
    with Receiver(status=401) as other:
        run = run_target(
            custom(url=other.url + "/hooks", allow_other_hosts=True),
            [schema("c"), record("c", {"name": "x"})],
            sandbox=sandbox,
        )
    assert run.returncode == 1
    assert f"POST {other.url}/hooks (stream 'c', record #1) was refused with 401" in run.stderr
    assert "never gets the Aha! API key" in run.stderr
    assert "request_headers" in run.stderr
    assert TOKEN not in run.stderr
