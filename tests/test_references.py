"""References between streams (spec §12), through the real executable against the sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import EXECUTABLE, TOKEN, record, schema, state

FAST = {"max_requests_per_second": 1000, "max_requests_per_minute": 100000}

TREE: dict[str, Any] = {
    "jira_versions": {"endpoint": "create_release", "product_id": "PRJ1",
                      "key_property": "version_id"},
    "jira_epics": {"endpoint": "create_epic", "key_property": "epic_key",
                   "release_id": {"ref": "jira_versions", "key": "{fix_version}"}},
    "jira_stories": {"endpoint": "create_feature", "key_property": "issue_key",
                     "release_id": {"ref": "jira_versions", "key": "{fix_version}"},
                     "references": {"epic": {"ref": "jira_epics", "key": "{epic_key}"}}},
    "jira_subtasks": {"endpoint": "create_requirement", "key_property": "issue_key",
                      "feature_id": {"ref": "jira_stories", "key": "{parent_key}"}},
}


def config(tmp_path: Path, streams: dict[str, Any] | None = None, **extra: Any) -> dict:
    return {"streams": streams or TREE, "ledger_path": str(tmp_path / "ledger.sqlite"),
            **FAST, **extra}


def versions(*ids: str) -> list[dict]:
    return [schema("jira_versions"),
            *(record("jira_versions", {"version_id": v, "name": f"Version {v}"}) for v in ids)]


def epics(*pairs: tuple[str, str]) -> list[dict]:
    return [schema("jira_epics"),
            *(record("jira_epics", {"epic_key": e, "fix_version": v, "name": f"Epic {e}"})
              for e, v in pairs)]


def stories(*triples: tuple[str, str, str]) -> list[dict]:
    return [schema("jira_stories"),
            *(record("jira_stories", {"issue_key": s, "fix_version": v, "epic_key": e,
                                      "name": f"Story {s}"})
              for s, v, e in triples)]


def subtasks(*pairs: tuple[str, str]) -> list[dict]:
    return [schema("jira_subtasks"),
            *(record("jira_subtasks", {"issue_key": t, "parent_key": s, "name": f"Task {t}"})
              for t, s in pairs)]


PREFIXES = {"release": "Version ", "epic": "Epic ", "feature": "Story ", "requirement": "Task "}


def by_name(sandbox: Sandbox, kind: str) -> dict[str, dict]:
    """The objects this file's records made (not the sandbox's seeds), by name."""
    objs = [o for o in sandbox.objects(kind) if o["name"].startswith(PREFIXES[kind])]
    counts = Counter(o["name"] for o in objs)
    assert all(n == 1 for n in counts.values()), counts  # one object per key
    return {o["name"]: o for o in objs}


def assert_tree(sandbox: Sandbox, *, n_versions: int, n_epics: int, n_stories: int,
                n_tasks: int) -> None:
    """Every object once, every child under the parent its record names (see `tree`)."""
    rel = by_name(sandbox, "release")
    eps = by_name(sandbox, "epic")
    sts = by_name(sandbox, "feature")
    tks = by_name(sandbox, "requirement")
    assert (len(rel), len(eps), len(sts), len(tks)) == (n_versions, n_epics, n_stories, n_tasks)
    for i in range(n_epics):
        assert eps[f"Epic E{i}"]["release"]["id"] == rel[f"Version V{i % n_versions}"]["id"]
    for i in range(n_stories):
        story = sts[f"Story S{i}"]
        assert story["release"]["id"] == rel[f"Version V{i % n_versions}"]["id"]
        assert story["epic"]["id"] == eps[f"Epic E{i % n_epics}"]["id"]
    for i in range(n_tasks):
        assert tks[f"Task T{i}"]["feature"]["id"] == sts[f"Story S{i % n_stories}"]["id"]


def tree(n_versions: int, n_epics: int, n_stories: int, n_tasks: int,
         order: str = "parents first") -> list[dict]:
    """A hierarchy: epic i in version i % V, story i in version i % V and epic i % E, ..."""
    parts = [
        versions(*(f"V{i}" for i in range(n_versions))),
        epics(*((f"E{i}", f"V{i % n_versions}") for i in range(n_epics))),
        stories(*((f"S{i}", f"V{i % n_versions}", f"E{i % n_epics}") for i in range(n_stories))),
        subtasks(*((f"T{i}", f"S{i % n_stories}") for i in range(n_tasks))),
    ]
    if order == "children first":
        parts.reverse()
    return [m for part in parts for m in part]


def posts(sandbox: Sandbox, fragment: str = "") -> list[dict]:
    return [r for r in sandbox.requests() if r["method"] == "POST" and fragment in r["path"]]


def test_references_as_parameters_and_as_body_fields(sandbox: Sandbox, tmp_path: Path,
                                                     run_target) -> None:
    out = run_target(config(tmp_path), [*tree(2, 2, 3, 3), state({"done": 1})],
                     sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    assert out.states == [{"done": 1}]
    assert_tree(sandbox, n_versions=2, n_epics=2, n_stories=3, n_tasks=3)
    results = out.results
    assert len(results) == 10
    assert {r["status"] for r in results} == {"succeeded"}
    # The value used is the reference number: in the path, and in the body field.
    rel = by_name(sandbox, "release")
    eps = by_name(sandbox, "epic")
    [story] = [p for p in posts(sandbox, "/features") if p["path"].endswith("/features")
               and p["body"]["feature"]["name"] == "Story S0"]
    assert story["path"].endswith(f"/releases/{rel['Version V0']['reference_num']}/features")
    body = story["body"]["feature"]
    assert body["epic"] == eps["Epic E0"]["reference_num"]
    # Fields read by key templates are not sent.
    assert "fix_version" not in body and "epic_key" not in body
    assert "parent_key" not in posts(sandbox, "/requirements")[0]["body"]["requirement"]


def test_a_parent_in_flight_is_waited_for_without_blocking_others(
        sandbox: Sandbox, tmp_path: Path) -> None:
    """The epic's release is in flight when the epic is read: the epic goes out as soon as
    the release is answered (not at the end of the input), and records read after the epic
    go out while it waits."""
    sandbox.configure(latency_ms=300)
    streams = {"jira_versions": TREE["jira_versions"], "jira_epics": TREE["jira_epics"],
               "other": {"endpoint": "create_feature", "release_id": "PRJ1-R-1",
                         "key_property": "id"}}
    cfg = {**config(tmp_path, streams), "base_url": sandbox.base_url, "api_key": TOKEN,
           "results_path": str(tmp_path / "r.jsonl")}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    proc = subprocess.Popen([EXECUTABLE, "--config", str(tmp_path / "c.json")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None

    def send(messages: list[dict]) -> None:
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        proc.stdin.flush()

    others = [record("other", {"id": f"O{i}", "name": f"Other {i}"}) for i in range(8)]
    send([*versions("V0"), *epics(("E0", "V0")), schema("other"), *others[:4]])
    time.sleep(1.5)  # the release was answered long ago: the epic went out meanwhile
    send([*others[4:], state({"s": 1})])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    paths = [r["path"] for r in sandbox.requests() if r["method"] == "POST"]
    release_at = next(i for i, p in enumerate(paths) if p.endswith("/releases"))
    epic_at = next(i for i, p in enumerate(paths) if p.endswith("/epics"))
    assert release_at < epic_at
    assert sum("/features" in p for p in paths[:epic_at]) == 4  # not blocked by the epic
    assert sum("/features" in p for p in paths[epic_at:]) == 4  # the epic was not deferred
    epic = by_name(sandbox, "epic")["Epic E0"]
    assert epic["release"]["reference_num"] == by_name(sandbox, "release")["Version V0"][
        "reference_num"]


def test_a_parent_from_an_earlier_run_resolves(sandbox: Sandbox, tmp_path: Path,
                                               run_target) -> None:
    first = run_target(config(tmp_path), versions("V0", "V1"), sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    second = run_target(config(tmp_path), [*epics(("E0", "V0"), ("E1", "V1")),
                                           state({"s": 2})], sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    assert second.states == [{"s": 2}]
    assert_tree(sandbox, n_versions=2, n_epics=2, n_stories=0, n_tasks=0)


def test_parents_arriving_later_in_the_input_resolve_at_its_end(
        sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    """Subtasks before their stories, stories before their epics, epics before versions."""
    messages = tree(2, 3, 5, 6, order="children first")
    messages.insert(3, state({"early": 1}))  # after a deferred subtask: never emitted
    out = run_target(config(tmp_path), [*messages, state({"done": 1})], sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    assert out.states == [{"done": 1}]
    assert_tree(sandbox, n_versions=2, n_epics=3, n_stories=5, n_tasks=6)
    assert Counter(r["status"] for r in out.results) == {"succeeded": 16}


@pytest.mark.parametrize("on_record_error", ["skip", "fail"])
def test_a_parent_that_never_arrives_rejects_the_child(
        sandbox: Sandbox, tmp_path: Path, run_target, on_record_error: str) -> None:
    messages = [*versions("V0"), *epics(("E0", "V0"), ("E1", "V9")), state({"s": 1})]
    out = run_target(config(tmp_path, on_record_error=on_record_error), messages,
                     sandbox=sandbox)
    rejected = [r for r in out.results if r["status"] == "rejected"]
    assert len(rejected) == 1
    error = rejected[0]["error"]
    assert "stream 'jira_epics', record key 'E1'" in error
    assert "jira_versions key 'V9'" in error
    assert rejected[0]["key"] == "E1"
    assert {r["key"] for r in out.results if r["status"] == "succeeded"} == {"V0", "E0"}
    if on_record_error == "skip":
        assert out.returncode == 0, out.stderr
        assert out.states == [{"s": 1}]
    else:
        assert out.returncode != 0
        assert out.states == []
        assert "jira_versions key 'V9'" in out.stderr


def test_a_recreated_parent_updates_its_children(sandbox: Sandbox, tmp_path: Path,
                                                 run_target) -> None:
    messages = tree(1, 1, 2, 0)
    first = run_target(config(tmp_path), messages, sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    old_epic = by_name(sandbox, "epic")["Epic E0"]
    # The epic is deleted in Aha!, and its record changes: its update answers 404, so it is
    # created again (a new reference number), and the stories, unchanged themselves, are
    # updated to point at the new epic.
    sandbox.delete_object("epic", old_epic["id"])
    for message in messages:
        if message.get("stream") == "jira_epics" and message["type"] == "RECORD":
            message["record"]["description"] = "changed"
    second = run_target(config(tmp_path), messages, sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    ops = {(r["stream"], r["key"]): r["operation"] for r in second.results}
    assert ops == {("jira_versions", "V0"): "unchanged", ("jira_epics", "E0"): "create",
                   ("jira_stories", "S0"): "update", ("jira_stories", "S1"): "update"}
    new_epic = by_name(sandbox, "epic")["Epic E0"]
    assert new_epic["reference_num"] != old_epic["reference_num"]
    assert_tree(sandbox, n_versions=1, n_epics=1, n_stories=2, n_tasks=0)
    # A third run changes nothing.
    third = run_target(config(tmp_path), messages, sandbox=sandbox)
    assert {r["operation"] for r in third.results} == {"unchanged"}


def test_a_recreated_container_moves_children_into_it(sandbox: Sandbox, tmp_path: Path,
                                                      run_target) -> None:
    messages = tree(1, 2, 0, 0)
    assert run_target(config(tmp_path), messages, sandbox=sandbox).returncode == 0
    old = by_name(sandbox, "release")["Version V0"]
    sandbox.delete_object("release", old["id"])  # its epics go with it, as in Aha!
    messages[1]["record"]["description"] = "changed"  # the version: its update answers 404
    second = run_target(config(tmp_path), messages, sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    # The epics' rows are found (they name their release by key), their update answers 404
    # (gone with the release), and they are created in the new release.
    assert {r["operation"] for r in second.results} == {"create"}
    assert by_name(sandbox, "release")["Version V0"]["id"] != old["id"]
    assert_tree(sandbox, n_versions=1, n_epics=2, n_stories=0, n_tasks=0)


def test_dry_run_resolves_known_parents_and_shows_the_others(
        sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    assert run_target(config(tmp_path), versions("V0"), sandbox=sandbox).returncode == 0
    known = by_name(sandbox, "release")["Version V0"]["reference_num"]
    messages = [*versions("V0", "V1"), *epics(("E0", "V0"), ("E1", "V1")),
                *stories(("S0", "V1", "E1"))]
    out = run_target(config(tmp_path, dry_run=True), messages, sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    lines = out.dry_run_lines
    epic_urls = [line["url"] for line in lines if line["url"].split("?")[0].endswith("/epics")]
    assert epic_urls[0].split("?")[0].endswith(f"/releases/{known}/epics")
    assert "%3Cref%20jira_versions%3AV1%3E/epics" in epic_urls[1]
    feature = next(line for line in lines if "/features" in line["url"])
    assert feature["body"]["feature"]["epic"] == "<ref jira_epics:E1>"
    assert {r["status"] for r in out.results} == {"dry_run"}
    assert out.states == []


def test_test_reports_references_as_not_checkable(sandbox: Sandbox, tmp_path: Path,
                                                  run_target) -> None:
    out = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--test",))
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert ("SKIP  stream 'jira_epics' (create_epic) release_id: not checkable (set by a "
            "reference to stream 'jira_versions'; checked when records arrive)") in text
    assert "PASS  stream 'jira_versions' (create_release) product_id" in text


@pytest.mark.parametrize(("streams", "expected"), [
    ({"a": {"endpoint": "create_epic", "release_id": {"ref": "nowhere", "key": "{k}"}}},
     "refers to stream 'nowhere', which is not configured"),
    ({"p": {"endpoint": "update_epic"},
      "a": {"endpoint": "create_feature", "release_id": {"ref": "p", "key": "{k}"}}},
     "whose endpoint 'update_epic' creates nothing"),
    ({"p": {"endpoint": "create_release", "product_id": "PRJ1", "write_mode": "create"},
      "a": {"endpoint": "create_feature", "release_id": {"ref": "p", "key": "{k}"}}},
     "whose write_mode is 'create'"),
    ({"p": {"endpoint": "custom", "url": "/products/PRJ1/releases"},
      "a": {"endpoint": "create_feature", "release_id": {"ref": "p", "key": "{k}"}}},
     "whose endpoint 'custom' creates nothing"),
    ({"a": {"endpoint": "create_feature", "release_id": "PRJ1-R-1",
            "references": {"epic": {"ref": "b", "key": "{e}"}}},
      "b": {"endpoint": "create_epic", "release_id": "PRJ1-R-1",
            "references": {"feature": {"ref": "a", "key": "{f}"}}}},
     "form a cycle: a -> b -> a"),
    ({"a": {"endpoint": "create_feature", "release_id": {"ref": "a", "key": "{k}"}}},
     "form a cycle: a -> a"),
    ({"a": {"endpoint": "create_feature", "release_id": {"stream": "b"}}},
     'must be a reference such as {"ref"'),
    ({"a": {"endpoint": "create_feature", "release_id": "PRJ1-R-1",
            "references": {"epic": "PRJ1-E-1"}}},
     "streams.a.references.epic must be an object {ref, key}"),
])
def test_configuration_errors_at_start_up(sandbox: Sandbox, tmp_path: Path, run_target,
                                          streams: dict, expected: str) -> None:
    out = run_target(config(tmp_path, streams), [*versions("V0")], sandbox=sandbox)
    assert out.returncode != 0
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert sandbox.requests() == []


def test_references_need_the_ledger(sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    out = run_target({**config(tmp_path), "ledger_path": ""}, versions("V0"), sandbox=sandbox)
    assert out.returncode != 0
    assert 'ledger_path is "": references are resolved through the key ledger' in out.stderr


def test_a_referenced_stream_without_a_key_is_refused_at_its_schema(
        sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    streams = {**TREE, "jira_versions": {"endpoint": "create_release", "product_id": "PRJ1"}}
    out = run_target(config(tmp_path, streams), versions("V0"), sandbox=sandbox)
    assert out.returncode != 0
    assert "Stream 'jira_versions' is named by other streams' references" in out.stderr
    assert "SCHEMA names no key properties" in out.stderr
    assert sandbox.requests() == []
    # Its SCHEMA's key properties are a key.
    keyed = [schema("jira_versions", key_properties=["version_id"]),
             record("jira_versions", {"version_id": "V0", "name": "Version V0"}),
             *epics(("E0", "V0"))]
    out = run_target(config(tmp_path, streams), keyed, sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    assert_tree(sandbox, n_versions=1, n_epics=1, n_stories=0, n_tasks=0)


def test_a_missing_key_field_rejects_the_child(sandbox: Sandbox, tmp_path: Path,
                                               run_target) -> None:
    messages = [*versions("V0"), schema("jira_epics"),
                record("jira_epics", {"epic_key": "E0", "name": "Epic E0"})]
    out = run_target(config(tmp_path, on_record_error="skip"), messages, sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    [rejected] = [r for r in out.results if r["status"] == "rejected"]
    assert rejected["error"] == (
        "the key of reference 'release_id' to stream 'jira_versions' reads the record field "
        "'fix_version', which is missing or empty; give every record a 'fix_version' or "
        "change the reference's key")


def _start(cfg: dict, data: Path, tmp_path: Path, name: str) -> subprocess.Popen:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({**cfg, "results_path": str(tmp_path / f"{name}.jsonl")}))
    return subprocess.Popen([EXECUTABLE, "--config", str(path)], stdin=data.open(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_in_the_middle_of_a_tree_load_then_rerun(sandbox: Sandbox,
                                                         tmp_path: Path) -> None:
    """One object per key, every child under the right parent, whatever the kill point."""
    sandbox.configure(latency_ms=40, latency_jitter_ms=30)
    shape = (3, 12, 60, 60)
    data = tmp_path / "in.jsonl"
    messages = tree(*shape, order="children first")[:len(tree(*shape)) // 3]
    messages += tree(*shape)  # some children come before their parents, too
    data.write_text("".join(json.dumps(m) + "\n" for m in [*messages, state({"done": 1})]))
    cfg = {**config(tmp_path), "base_url": sandbox.base_url, "api_key": TOKEN}
    kills = 0
    for target in (10, 50, 100):
        seen = len(posts(sandbox))
        proc = _start(cfg, data, tmp_path, f"kill-{target}")
        end = time.monotonic() + 60
        while len(posts(sandbox)) < seen + target and proc.poll() is None:
            assert time.monotonic() < end
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()
    assert kills >= 2
    proc = _start(cfg, data, tmp_path, "final")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [{"done": 1}]
    assert_tree(sandbox, n_versions=3, n_epics=12, n_stories=60, n_tasks=60)


def test_a_child_of_a_rejected_parent_is_rejected_naming_it(
        sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    """The parent is in flight when its child is read, and Aha! refuses it (422)."""
    sandbox.configure(latency_ms=100)
    messages = [schema("jira_versions"),
                record("jira_versions", {"version_id": "V0", "name": "FAIL-422"}),
                *epics(("E0", "V0")), state({"s": 1})]
    out = run_target(config(tmp_path, on_record_error="skip"), messages, sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    assert [(r["key"], r["status"]) for r in out.results] == [("V0", "rejected"),
                                                               ("E0", "rejected")]
    assert "jira_versions key 'V0'" in out.results[1]["error"]
    assert out.states == [{"s": 1}]
    assert posts(sandbox, "/epics") == []


def test_references_resolve_through_a_postgres_ledger(
        sandbox: Sandbox, tmp_path: Path, run_target, postgres_url: str) -> None:
    cfg = {**config(tmp_path), "ledger_path": postgres_url}
    first = run_target(cfg, versions("PG0"), sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    second = run_target(cfg, [*stories(("PGS0", "PG0", "PGE0")), *epics(("PGE0", "PG0"))],
                        sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    release = by_name(sandbox, "release")["Version PG0"]
    epic = by_name(sandbox, "epic")["Epic PGE0"]
    story = by_name(sandbox, "feature")["Story PGS0"]
    assert epic["release"]["id"] == story["release"]["id"] == release["id"]
    assert story["epic"]["id"] == epic["id"]


def test_a_deferred_record_without_a_key_is_named_by_its_position(
        sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    streams = {"jira_versions": TREE["jira_versions"],
               "notes": {"endpoint": "create_epic",
                         "release_id": {"ref": "jira_versions", "key": "{v}"}}}
    messages = [schema("notes"), record("notes", {"v": "V0", "name": "N1"}),
                record("notes", {"v": "V7", "name": "N2"}), *versions("V0")]
    out = run_target(config(tmp_path, streams, on_record_error="skip"), messages,
                     sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    [rejected] = [r for r in out.results if r["status"] == "rejected"]
    assert rejected["key"] is None
    assert rejected["error"].startswith("stream 'notes', record #2: its reference "
                                        "'release_id' names jira_versions key 'V7'")
    [epic] = [o for o in sandbox.objects("epic") if o["name"] == "N1"]
    assert epic["release"]["reference_num"] == by_name(sandbox, "release")["Version V0"][
        "reference_num"]


def test_the_sandbox_takes_linked_objects_by_reference_number_or_id(sandbox: Sandbox) -> None:
    """As Aha! does: `epic` in a feature's body names the epic by reference number or id,
    and the answer names the object; an unknown one is a 422."""
    from tests.test_sandbox import call  # noqa: PLC0415 - the sandbox tests' HTTP helper

    epic = call(sandbox, "POST", "/releases/PRJ1-R-1/epics", {"epic": {"name": "E"}}).body["epic"]
    by_ref = call(sandbox, "POST", "/releases/PRJ1-R-1/features",
                  {"feature": {"name": "F1", "epic": epic["reference_num"]}}).body["feature"]
    by_id = call(sandbox, "POST", "/releases/PRJ1-R-1/features",
                 {"feature": {"name": "F2", "epic": epic["id"]}}).body["feature"]
    assert by_ref["epic"]["id"] == by_id["epic"]["id"] == epic["id"]
    assert by_ref["epic"]["reference_num"] == epic["reference_num"]
    unknown = call(sandbox, "POST", "/releases/PRJ1-R-1/features",
                   {"feature": {"name": "F3", "epic": "PRJ1-E-999"}})
    assert unknown.status == 422
    # A container in a path, too (a feature by its reference number).
    feature = call(sandbox, "POST", f"/features/{by_ref['reference_num']}/requirements",
                   {"requirement": {"name": "R"}})
    assert feature.status == 200


def test_state_is_held_while_a_record_is_deferred(sandbox: Sandbox, tmp_path: Path,
                                                  run_target) -> None:
    """Every message drains (state_interval_seconds ~ 0): STATE flows until a record is
    deferred, then waits until it settled at the end of the input."""
    messages = [*versions("V0"), state({"n": 1}), *epics(("E0", "V0")), state({"n": 2}),
                record("jira_epics", {"epic_key": "E1", "fix_version": "V1", "name": "Epic E1"}),
                state({"n": 3}),
                record("jira_versions", {"version_id": "V1", "name": "Version V1"}),
                state({"n": 4})]
    out = run_target(config(tmp_path, state_interval_seconds=1e-9), messages, sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    assert out.states == [{"n": 1}, {"n": 2}, {"n": 4}]
    assert_tree(sandbox, n_versions=2, n_epics=2, n_stories=0, n_tasks=0)


def test_sigterm_while_records_are_deferred_emits_no_state_past_them(
        sandbox: Sandbox, tmp_path: Path) -> None:
    cfg = {**config(tmp_path, state_interval_seconds=1e-9), "base_url": sandbox.base_url,
           "api_key": TOKEN, "results_path": str(tmp_path / "r.jsonl")}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    proc = subprocess.Popen([EXECUTABLE, "--config", str(tmp_path / "c.json")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    lines = [*versions("V0"), state({"n": 1}), *epics(("E1", "V1")), state({"n": 2})]
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in lines))
    proc.stdin.flush()
    end = time.monotonic() + 30
    while not posts(sandbox, "/releases") and time.monotonic() < end:
        time.sleep(0.02)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert [json.loads(line) for line in out.splitlines()] == [{"n": 1}]
    assert posts(sandbox, "/epics") == []


def test_a_later_record_of_a_deferred_key_waits_behind_it(
        sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    # The old version of OE-1 waits for its release; the new one arrives after the release:
    # it must not go first (the old one, handed back at the end, would undo it).
    messages = [
        schema("jira_epics"),
        record("jira_epics", {"epic_key": "OE-1", "fix_version": "V-1", "name": "Epic OLD"}),
        state({"s": 1}),
        *versions("V-1"), state({"s": 2}),
        schema("jira_epics"),
        record("jira_epics", {"epic_key": "OE-1", "fix_version": "V-1", "name": "Epic NEW"}),
        state({"s": 3}),
    ]
    out = run_target(config(tmp_path), messages, sandbox=sandbox)
    assert out.returncode == 0, out.stderr
    [epic] = [e for e in sandbox.objects("epic") if e["name"].startswith("Epic ")]
    assert epic["name"] == "Epic NEW"
    epic_lines = [(r["operation"], r["status"]) for r in out.results if r["stream"] == "jira_epics"]
    assert epic_lines == [("create", "succeeded"), ("update", "succeeded")]
    assert [r["body"]["epic"]["name"] for r in posts(sandbox, "/epics")] == ["Epic OLD"]
    assert out.states == [{"s": 3}]


def test_a_parent_moved_to_another_container_is_used_where_it_was_created_last(
        sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    first = run_target(config(tmp_path), [*versions("V-1", "V-2"), *epics(("E-1", "V-1")),
                                          *stories(("S-1", "V-1", "E-1"))], sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    # The epic moves to V-2 upstream: it is created there (its ledger row is per container),
    # and the story that names it now points at the new epic, not at the one left in V-1.
    moved = run_target(config(tmp_path), [*epics(("E-1", "V-2")),
                                          *stories(("S-1", "V-1", "E-1"))], sandbox=sandbox)
    assert moved.returncode == 0, moved.stderr
    assert len([e for e in sandbox.objects("epic") if e["name"] == "Epic E-1"]) == 2
    new_epic = next(r for r in moved.results if r["stream"] == "jira_epics")
    assert new_epic["operation"] == "create"
    [story_line] = [r for r in moved.results if r["stream"] == "jira_stories"]
    assert story_line["status"] == "succeeded" and story_line["operation"] == "update"
    [story] = [f for f in sandbox.objects("feature") if f["name"] == "Story S-1"]
    assert story["epic"]["reference_num"] == new_epic["reference_num"], story
    warnings = [line for line in moved.stderr.splitlines() if "became several Aha! objects" in line]
    assert len(warnings) == 1, moved.stderr[-3000:]
    assert f"use the newest, {new_epic['reference_num']}" in warnings[0]


def test_verify_ledger_lists_containers_named_by_a_reference(
        sandbox: Sandbox, tmp_path: Path, run_target) -> None:
    # A story's ledger row names its release by key (<ref jira_versions:V-1>): --verify-ledger
    # lists the release that key became, and forgets the story deleted in Aha!.
    load = [*versions("V-1"), *epics(("E-1", "V-1")),
            *stories(("S-1", "V-1", "E-1"), ("S-2", "V-1", "E-1"))]
    first = run_target(config(tmp_path), load, sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    gone = next(r for r in first.results if r["key"] == "S-2")
    release = next(r for r in first.results if r["key"] == "V-1")
    sandbox.delete_object("feature", gone["aha_id"])
    sandbox.clear_requests()
    verified = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert ("GET", f"/api/v1/releases/{release['reference_num']}/features") in [
        (r["method"], r["path"]) for r in sandbox.requests()]
    assert "stream jira_stories: 1 kept, 1 forgotten" in verified.stdout, verified.stdout
    assert "stream jira_epics: 1 kept, 0 forgotten" in verified.stdout, verified.stdout
    again = run_target(config(tmp_path), load, sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    assert sorted((r["key"], r["operation"]) for r in again.results) == [
        ("E-1", "unchanged"), ("S-1", "unchanged"), ("S-2", "create"), ("V-1", "unchanged")]
    [story] = [f for f in sandbox.objects("feature") if f["name"] == "Story S-2"]
    assert story["release"]["reference_num"] == release["reference_num"]
