"""The response webhook as a receiver sees it: one post per settling answer, never the token,
and a webhook that fails never fails the load."""

from __future__ import annotations

from typing import Any

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import TOKEN, record, schema, state
from tests.receiver import Receiver

FEATURES = {"f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1", "key_property": "id"}}


def features(*names: str) -> list[dict[str, Any]]:
    return [record("f", {"id": f"K{i}", "name": n}) for i, n in enumerate(names)]


def test_one_post_per_settling_answer_with_the_new_object(
    sandbox: Sandbox, run_target
) -> None:
    sandbox.configure(error_rate=0.4)  # retries happen; they are not posted
    with Receiver() as hook:
        run = run_target(
            {"streams": FEATURES, "response_webhook_url": hook.url + "/aha?secret=s1",
             "on_record_error": "skip", "max_retries": 20},
            [schema("f"), *features("a", "b", "FAIL-422", "d", "e", "f"), state({"n": 1})],
            sandbox=sandbox,
        )
        assert run.returncode == 0, run.stderr
        posts = [r.json() for r in hook.received]
        assert all(r.path == "/aha?secret=s1" for r in hook.received)
        assert all(r.headers["Content-Type"] == "application/json" for r in hook.received)
        assert TOKEN.encode() not in hook.all_raw()
        assert b"authorization" not in hook.all_raw().lower()
    assert len(sandbox.requests()) > 6  # some answers were 500s and retried
    assert sorted(p["key"] for p in posts) == [f"K{i}" for i in range(6)]
    results = {line["key"]: line for line in run.results}
    for post in posts:
        assert set(post) == {"stream", "key", "request", "status", "response"}
        assert post["stream"] == "f"
        assert post["request"] == {
            "method": "POST",
            "url": sandbox.base_url + "/releases/PRJ1-R-1/features?disable_mailers=true",
        }
        line = results[post["key"]]
        if post["key"] == "K2":
            assert post["status"] == 422
            assert "FAIL-422" in str(post["response"])
        else:
            assert post["status"] == 200
            assert post["response"]["feature"]["id"] == line["aha_id"]
            assert post["response"]["feature"]["url"] == line["url"]
    assert run.states == [{"n": 1}]


def test_batch_posts_once_with_its_list_of_keys(sandbox: Sandbox, run_target) -> None:
    with Receiver() as hook:
        run = run_target(
            {"response_webhook_url": hook.url, "max_concurrency": 1, "streams": {"c": {
                "endpoint": "custom", "url": "/echo/bulk", "key_property": "k",
                "batch": {"size": 2}}}},
            [schema("c"), *[record("c", {"k": f"K{i}"}) for i in range(3)]],
            sandbox=sandbox,
        )
        assert run.returncode == 0, run.stderr
        # The webhook posts from several threads: the order of arrival is not the contract.
        posts = sorted((r.json() for r in hook.received), key=lambda p: p["key"])
    assert [p["key"] for p in posts] == [["K0", "K1"], ["K2"]]
    assert posts[0]["response"]["echo"]["body"] == {"records": [{"k": "K0"}, {"k": "K1"}]}
    assert posts[0]["request"]["method"] == "POST"


def test_stream_webhook_overrides_the_top_level_one(sandbox: Sandbox, run_target) -> None:
    with Receiver() as top, Receiver() as own:
        run = run_target(
            {"response_webhook_url": top.url,
             "streams": {**FEATURES, "t": {"endpoint": "create_team",
                                           "response_webhook_url": own.url + "/teams"}}},
            [schema("f"), *features("a"), schema("t"), record("t", {"name": "Team"})],
            sandbox=sandbox,
        )
        assert run.returncode == 0, run.stderr
        assert [r.json()["stream"] for r in top.received] == ["f"]
        assert [(r.path, r.json()["stream"]) for r in own.received] == [("/teams", "t")]


@pytest.mark.slow
def test_failing_webhook_is_retried_logged_and_never_fails_the_load(
    sandbox: Sandbox, run_target
) -> None:
    with Receiver(status=500) as hook:
        run = run_target(
            {"streams": FEATURES, "response_webhook_url": hook.url},
            [schema("f"), *features("a", "b"), state({"n": 1})],
            sandbox=sandbox,
        )
        attempts = hook.attempts
        assert TOKEN.encode() not in hook.all_raw()
    assert run.returncode == 0, run.stderr
    assert attempts == 2 * 4  # each answer: one post and three retries
    assert "did not take the answer for stream 'f'" in run.stderr
    assert "HTTP 500 after 4 attempt(s)" in run.stderr
    assert "2 could not be delivered" in run.stderr
    assert "secret" not in run.stderr
    assert [line["status"] for line in run.results] == ["succeeded", "succeeded"]
    assert len(sandbox.objects("feature")) == 2
    assert run.states == [{"n": 1}]


@pytest.mark.slow
def test_webhook_that_is_down_never_fails_the_load(sandbox: Sandbox, run_target) -> None:
    with Receiver() as gone:
        url = gone.url
    run = run_target(
        {"streams": FEATURES, "response_webhook_url": url},
        [schema("f"), *features("a", "b", "c", "d", "e"), state({"n": 1})],
        sandbox=sandbox,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "ConnectionError" in run.stderr
    assert "5 could not be delivered" in run.stderr
    assert [line["status"] for line in run.results] == ["succeeded"] * 5
    assert run.states == [{"n": 1}]


def test_dry_run_posts_nothing(run_target) -> None:
    with Receiver() as hook:
        run = run_target(
            {"subdomain": "mycompany", "dry_run": True, "streams": FEATURES,
             "response_webhook_url": hook.url},
            [schema("f"), *features("a")],
        )
        assert run.returncode == 0, run.stderr
        assert hook.attempts == 0


def test_bad_webhook_url_is_a_config_error(sandbox: Sandbox, run_target) -> None:
    run = run_target(
        {"streams": FEATURES, "response_webhook_url": "http://hooks.example.com/x"},
        [schema("f"), *features("a")],
        sandbox=sandbox,
    )
    assert run.returncode == 1
    assert "response_webhook_url 'http://hooks.example.com/x' uses plain http" in run.stderr
    assert sandbox.requests() == []
