"""The sandbox's endpoints for the templates of contract section 11, over real HTTP: releases,
ideas, requirements, key results and comments validate and answer as Aha!'s pages show."""

from __future__ import annotations

import pytest

from target_aha.sandbox import Sandbox
from tests.test_sandbox import GOAL, TIMESTAMP, call, create_feature, is_aha_id

NOT_FOUND = {"errors": {"message": "Record not found"}}


def test_release_create_show_update_in_its_product(sandbox: Sandbox) -> None:
    reply = call(sandbox, "POST", "/products/PRJ1/releases", {"release": {"name": "R3"}})
    assert reply.status == 200, reply.body
    release = reply.body["release"]
    assert release["reference_num"] == "PRJ1-R-3"  # the seed has
    assert release["url"] == f"{sandbox.url}/releases/PRJ1-R-3"
    shown = call(sandbox, "GET", "/products/PRJ1/releases/PRJ1-R-3").body
    assert shown == {"release": release}
    put = call(sandbox, "PUT", f"/products/PRJ1/releases/{release['id']}",
               {"release": {"name": "R3 renamed"}})
    assert (put.status, put.body["release"]["name"]) == (200, "R3 renamed")
    assert put.body["release"]["reference_num"] == "PRJ1-R-3"
    # Another product's path does not reach it; a blank name is refused.
    assert call(sandbox, "PUT", f"/products/PRJ2/releases/{release['id']}",
                {"release": {"name": "x"}}).status == 404
    blank = call(sandbox, "POST", "/products/PRJ1/releases", {"release": {"name": " "}})
    assert (blank.status, blank.body) == (
        422, {"errors": {"message": "Validation failed: Name can't be blank"}})


def test_idea_update_at_its_root_path(sandbox: Sandbox) -> None:
    idea = call(sandbox, "POST", "/products/PRJ1/ideas", {"idea": {"name": "Idea"}}).body["idea"]
    put = call(sandbox, "PUT", f"/ideas/{idea['reference_num']}", {"idea": {"name": "Better"}})
    assert (put.status, put.body["idea"]["name"], put.body["idea"]["id"]) == (
        200, "Better", idea["id"])
    assert call(sandbox, "PUT", "/ideas/PRJ1-I-99", {"idea": {"name": "x"}}).status == 404


def test_requirements_live_in_their_feature(sandbox: Sandbox) -> None:
    feature = create_feature(sandbox)
    path = f"/features/{feature['reference_num']}/requirements"
    first = call(sandbox, "POST", path, {"requirement": {"name": "R one"}}).body["requirement"]
    second = call(sandbox, "POST", path, {"requirement": {"name": "R two",
                                                          "description": "<p>d</p>"}})
    assert second.status == 200, second.body
    assert is_aha_id(first["id"])
    assert (first["reference_num"], second.body["requirement"]["reference_num"]) == (
        "PRJ1-1-1", "PRJ1-1-2")
    assert first["feature"]["reference_num"] == feature["reference_num"]
    assert TIMESTAMP.match(first["created_at"])
    assert second.body["requirement"]["description"]["body"] == "<p>d</p>"
    listed = call(sandbox, "GET", path).body
    assert [r["name"] for r in listed["requirements"]] == ["R one", "R two"]
    assert listed["pagination"]["total_records"] == 2
    put = call(sandbox, "PUT", f"/requirements/{first['id']}", {"requirement": {"name": "R 1"}})
    assert put.body["requirement"]["name"] == "R 1"
    assert call(sandbox, "GET", "/requirements/PRJ1-1-1").body["requirement"]["name"] == "R 1"
    assert call(sandbox, "POST", path, {"requirement": {}}).status == 422
    assert call(sandbox, "POST", "/features/PRJ1-99/requirements",
                {"requirement": {"name": "x"}}).body == NOT_FOUND


def test_key_results_live_in_their_goal(sandbox: Sandbox) -> None:
    goal = call(sandbox, "POST", "/products/PRJ1/goals", {"goal": GOAL}).body["goal"]
    path = f"/goals/{goal['reference_num']}/key_results"
    reply = call(sandbox, "POST", path, {"key_result": {"name": "KR", "target_value": 10}})
    assert reply.status == 200, reply.body
    kr = reply.body["key_result"]
    assert kr["reference_num"] == "PRJ1-G-1-KR-1"
    assert (kr["goal"]["id"], kr["target_value"]) == (goal["id"], 10)
    assert [k["id"] for k in call(sandbox, "GET", path).body["key_results"]] == [kr["id"]]
    put = call(sandbox, "PUT", f"/key_results/{kr['id']}", {"key_result": {"name": "KR2"}})
    assert (put.status, put.body["key_result"]["name"]) == (200, "KR2")
    assert call(sandbox, "POST", path, {"key_result": {"name": ""}}).status == 422
    assert call(sandbox, "POST", "/goals/PRJ1-G-9/key_results",
                {"key_result": {"name": "x"}}).body == NOT_FOUND


@pytest.mark.parametrize("collection", ["features", "epics", "requirements", "ideas",
                                        "initiatives", "goals", "releases"])
def test_comments_on_every_commentable_collection(sandbox: Sandbox, collection: str) -> None:
    feature = create_feature(sandbox)
    made = {
        "features": lambda: feature,
        "epics": lambda: call(sandbox, "GET", "/epics/PRJ1-E-1").body["epic"],
        "requirements": lambda: call(
            sandbox, "POST", f"/features/{feature['id']}/requirements",
            {"requirement": {"name": "R"}}).body["requirement"],
        "ideas": lambda: call(sandbox, "POST", "/products/PRJ1/ideas",
                              {"idea": {"name": "I"}}).body["idea"],
        "initiatives": lambda: call(sandbox, "POST", "/products/PRJ1/initiatives",
                                    {"initiative": {"name": "S"}}).body["initiative"],
        "goals": lambda: call(sandbox, "POST", "/products/PRJ1/goals",
                              {"goal": GOAL}).body["goal"],
        "releases": lambda: call(sandbox, "GET", "/releases/PRJ1-R-1").body["release"],
    }[collection]()
    path = f"/{collection}/{made['reference_num']}/comments"
    reply = call(sandbox, "POST", path, {"comment": {"body": "<p>Hi</p>",
                                                     "user": {"email": "a@b.com"}}})
    assert reply.status == 200, reply.body
    comment = reply.body["comment"]
    assert is_aha_id(comment["id"]) and "reference_num" not in comment
    assert comment["url"] == f"{sandbox.url}/comments/{comment['id']}"
    assert TIMESTAMP.match(comment["created_at"])
    assert comment["commentable"]["id"] == made["id"]
    assert comment["commentable"]["type"] == collection.removesuffix("s").title()
    # Lists answer whole comments (their bodies tell them apart; they have no name).
    assert call(sandbox, "GET", path).body["comments"] == [comment]
    put = call(sandbox, "PUT", f"/comments/{comment['id']}", {"comment": {"body": "<p>Ho</p>"}})
    assert put.body["comment"]["body"] == "<p>Ho</p>"
    assert put.body["comment"]["commentable"] == comment["commentable"]


def test_comment_validation_and_unknown_containers(sandbox: Sandbox) -> None:
    feature = create_feature(sandbox)
    blank = call(sandbox, "POST", f"/features/{feature['id']}/comments", {"comment": {"body": ""}})
    assert (blank.status, blank.body) == (
        422, {"errors": {"message": "Validation failed: Body can't be blank"}})
    for path in ("/features/PRJ1-99/comments", "/bugs/PRJ1-1/comments",
                 "/products/PRJ1/comments", "/teams/1/comments"):
        reply = call(sandbox, "POST", path, {"comment": {"body": "x"}})
        assert (reply.status, reply.body) == (404, NOT_FOUND), path
    assert sandbox.objects("comment") == []
    # Deleting the commented object takes its comments with it.
    epic_comment = call(sandbox, "POST", "/epics/PRJ1-E-1/comments", {"comment": {"body": "x"}})
    assert epic_comment.status == 200
    assert call(sandbox, "DELETE", "/epics/PRJ1-E-1").status == 204
    assert sandbox.objects("comment") == []


def test_nested_objects_of_a_forbidden_product_are_403(sandbox: Sandbox) -> None:
    sandbox.configure(forbidden_products=["PRJ1"])
    for path, body in (
        ("/releases/PRJ1-R-1/comments", {"comment": {"body": "x"}}),
        ("/products/PRJ1/releases", {"release": {"name": "x"}}),
    ):
        assert call(sandbox, "POST", path, body).status == 403, path
