"""`make demo`: the sample tree (demo/data/tree/), its input order, demo/show.py's tree, and
demo/run.sh end to end (one `meltano run` that loads everything, then one that sends nothing).

The tree's expected shape is read from the sample data itself, so a changed sample file
changes what is asserted, never the other way round.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from target_aha.sandbox import Sandbox
from tests.conftest import REPO, TOKEN, find_meltano

README = REPO / "README.md"
DATA = REPO / "demo" / "data"
TREE = DATA / "tree"
# A tree line of demo/show.py: `    feature PRJ1-12 "Dark mode" [MOB-7]` (comments have no
# reference number; objects not made from a keyed row have no [key]).
NODE = re.compile(r'(?P<indent> *)(?P<kind>\w+)(?: (?P<ref>[^\s"]+))? "(?P<name>.*)"'
                  r'(?: \[(?P<key>[^\]]+)\])?')
Node = tuple[str, str]  # (kind, upstream key or else reference number)


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tree_file(stream: str) -> Path:
    """demo/data/tree/<n>-<stream>.jsonl: the number orders the files (and so the input)."""
    (path,) = TREE.glob(f"*-{stream}.jsonl")
    return path


def expected_parents() -> dict[Node, Node | None]:
    """Every object the sample data makes, and the object it must be under (None: a root)."""
    out: dict[Node, Node | None] = {}
    for row in rows(tree_file("jira_versions")):
        out["release", row["version_id"]] = None
    for row in rows(tree_file("jira_epics")):
        out["epic", row["epic_key"]] = ("release", row["fix_version"])
    for row in rows(tree_file("jira_stories")):
        out["feature", row["issue_key"]] = ("epic", row["epic_key"])
    for row in rows(tree_file("jira_subtasks")):
        out["requirement", row["issue_key"]] = ("feature", row["parent_key"])
    for row in rows(tree_file("jira_comments")):
        out["comment", row["comment_id"]] = ("feature", row["issue_key"])
    for row in rows(DATA / "okrs.jsonl"):
        out["goal", row["okr_id"]] = None
    for row in rows(tree_file("key_results")):
        out["key_result", row["kr_id"]] = ("goal", row["okr_id"])
    return out


def parse_tree(text: str) -> tuple[dict[Node, Node | None], dict[Node, str], list[str]]:
    """demo/show.py's tree: each node's parent, each node's reference number, and the lines of
    objects it found under no parent."""
    tree = text.split("The tree: ", 1)[1].split("\nIn all: ", 1)[0]
    tree, _, astray = tree.partition("Not under any parent above")
    parents: dict[Node, Node | None] = {}
    refs: dict[Node, str] = {}
    stack: list[Node] = []
    for line in tree.splitlines()[1:]:
        found = NODE.fullmatch(line)
        if not found:
            assert line.strip() in ("", "Goals > key results"), line
            continue
        depth = len(found["indent"]) // 2 - 1
        me = (found["kind"], found["key"] or found["ref"])
        assert me not in parents, f"{me} printed twice"
        del stack[depth:]
        parents[me] = stack[-1] if stack else None
        refs[me] = found["ref"] or ""
        stack.append(me)
    return parents, refs, [line for line in astray.splitlines()[1:] if line.strip()]


def assert_tree(text: str) -> None:
    """Every object of the sample tree is printed once, under the right parent, numbered as
    Aha! numbers things inside their container; nothing is left over."""
    parents, refs, astray = parse_tree(text)
    assert astray == []
    for node, parent in expected_parents().items():
        assert node in parents, f"{node} is not in the tree"
        assert parents[node] == parent, f"{node} is under {parents[node]}, not {parent}"
    for (kind, _), ref in refs.items():
        assert kind == "comment" or re.fullmatch(r"PRJ\d-[A-Z0-9-]+", ref), (kind, ref)
    for node, parent in expected_parents().items():
        if node[0] in ("requirement", "key_result") and parent is not None:
            assert refs[node].startswith(refs[parent] + "-"), (node, refs[node], refs[parent])


@pytest.mark.meltano
def test_the_tree_input_has_children_before_their_parents(tmp_path) -> None:
    # One tap-jsonl reads demo/data/tree/*.jsonl as one stream, file after file in name order,
    # and the tap's stream maps split it: one stream per file, its own fields and key only.
    meltano = find_meltano()
    if meltano is None:
        pytest.skip("Meltano is not installed (make install)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_AHA_", "MELTANO_"))}
    env.update({"MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
                "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"})
    done = subprocess.run([meltano, "invoke", "tap-jsonl--tree"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    schemas = {m["stream"]: m for m in messages if m["type"] == "SCHEMA"}
    records = [m for m in messages if m["type"] == "RECORD"]
    order = list(dict.fromkeys(m["stream"] for m in records))
    assert order == ["jira_versions", "jira_subtasks", "jira_stories", "jira_epics",
                     "jira_comments", "key_results"]
    for stream in order:
        data = rows(tree_file(stream))
        assert [m["record"] for m in records if m["stream"] == stream] == data
        assert set(schemas[stream]["schema"]["properties"]) == set(data[0]), stream
    keys = {stream: schemas[stream]["key_properties"] for stream in order}
    assert keys == {"jira_versions": ["version_id"], "jira_subtasks": ["issue_key"],
                    "jira_stories": ["issue_key"], "jira_epics": ["epic_key"],
                    "jira_comments": ["comment_id"], "key_results": ["kr_id"]}


def post(sandbox: Sandbox, path: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        sandbox.base_url + path, data=json.dumps({kind: body}).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        made: dict[str, Any] = json.load(answer)[kind]
        return made


def test_show_prints_each_object_under_its_parent(sandbox: Sandbox) -> None:
    # What a load of the sample tree makes, made here by hand, with reference numbers in the
    # paths and in feature.epic as references resolve them: show.py needs no target-aha.
    made: dict[Node, dict[str, Any]] = {}

    def ref(kind: str, key: str) -> str:
        return str(made[kind, key]["reference_num"])

    for row in rows(tree_file("jira_versions")):
        made["release", row["version_id"]] = post(sandbox, "/products/PRJ1/releases",
                                                   "release", row)
    for row in rows(tree_file("jira_epics")):
        release = ref("release", row.pop("fix_version"))
        made["epic", row["epic_key"]] = post(sandbox, f"/releases/{release}/epics", "epic", row)
    for row in rows(tree_file("jira_stories")):
        release = ref("release", row.pop("fix_version"))
        row["epic"] = ref("epic", row.pop("epic_key"))
        made["feature", row["issue_key"]] = post(sandbox, f"/releases/{release}/features",
                                                  "feature", row)
    for row in rows(tree_file("jira_subtasks")):
        feature = ref("feature", row.pop("parent_key"))
        post(sandbox, f"/features/{feature}/requirements", "requirement", row)
    for row in rows(tree_file("jira_comments")):
        post(sandbox, f"/features/{ref('feature', row.pop('issue_key'))}/comments", "comment",
             row)
    for row in rows(DATA / "okrs.jsonl"):
        made["goal", row["okr_id"]] = post(sandbox, "/products/PRJ1/goals", "goal", {
            "name": row["objective"], "okr_id": row["okr_id"], "success_metric_name": "KR",
            "success_metric_description": row["key_result"], "workflow_status": "In progress"})
    for row in rows(tree_file("key_results")):
        post(sandbox, f"/goals/{ref('goal', row.pop('okr_id'))}/key_results", "key_result", row)
    # A feature of release PRJ1-R-2 whose epic is in another release is under its release;
    # comments on an epic and on a goal are under them.
    post(sandbox, "/releases/PRJ1-R-2/features", "feature",
         {"name": "Elsewhere", "issue_key": "X-1", "epic": ref("epic", "MOB-1")})
    post(sandbox, f"/epics/{ref('epic', 'MOB-2')}/comments", "comment",
         {"body": "<p>On an epic</p>", "comment_id": "C-1"})
    post(sandbox, f"/goals/{ref('goal', 'OKR-2024-Q2-2')}/comments", "comment",
         {"body": "<p>On a goal</p>", "comment_id": "C-2"})

    shown = subprocess.run([sys.executable, str(REPO / "demo" / "show.py"), sandbox.base_url],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert_tree(shown)
    parents, _, _ = parse_tree(shown)
    assert parents["feature", "X-1"] == ("release", "PRJ1-R-2")
    assert parents["comment", "C-1"] == ("epic", "MOB-2")
    assert parents["comment", "C-2"] == ("goal", "OKR-2024-Q2-2")
    assert "In all: 5 releases, 3 epics, 6 features, 5 requirements, 5 comments, 3 goals, " \
           "4 key results" in shown
    assert "Duplicates: none" in shown


@pytest.mark.meltano
def test_demo_prints_what_the_readme_says(tmp_path) -> None:
    # `make demo` runs demo/run.sh; the README quotes its second run's total.
    meltano = find_meltano()
    if meltano is None:
        pytest.skip("Meltano is not installed (make install)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_AHA_", "MELTANO_"))}
    env.update({"PYTHON": sys.executable, "MELTANO": meltano,
                "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}"})
    done = subprocess.run([str(REPO / "demo" / "run.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    quoted = re.search(r"the second says `([^`]+)`", " ".join(README.read_text().split()))
    assert quoted, "the README no longer quotes the demo's second run"
    first, second = out.split("Run 2:", 1)
    assert "$ meltano run load-aha load-tree" in first
    assert "total (4 target-aha runs): 38 records; succeeded 38 (create 38)" in first
    assert quoted.group(1) in second
    counts = {"intake_requests": 10, "okrs": 3, "vendors": 4, "jira_versions": 2,
              "jira_subtasks": 5, "jira_stories": 5, "jira_epics": 2, "jira_comments": 3,
              "key_results": 4}
    assert sum(counts.values()) == 38
    for stream, n in counts.items():
        assert f"  {stream}: {n} records; succeeded {n} (create {n})" in first
        assert f"  {stream}: {n} records; succeeded {n} (unchanged {n})" in second
    holds, after = second.split("The sandbox is stopped now", 1)
    assert "holds after the runs:" in holds
    # 10 intake requests and 5 stories are features; the intake requests in release PRJ1-R-1.
    assert "In all: 5 releases, 3 epics, 15 features, 5 requirements, 3 comments, 3 goals, " \
           "4 key results" in holds
    assert_tree(holds)
    parents, _, _ = parse_tree(holds)
    for row in rows(DATA / "intake_requests.jsonl"):
        assert parents["feature", row["request_id"]] == ("release", "PRJ1-R-1")
    assert "Duplicates: none" in holds
    # One write per record, all in the first run: the second sent nothing.
    assert re.search(r"^Requests the sandbox received: \d+ \((GET \d+, )?POST 38; ", holds,
                     flags=re.M), holds
    assert "Next steps:" in after
    assert "-m target_aha.sandbox --port-file output/sandbox-url &" in after
    assert "run load-aha load-tree" in after


def hierarchy_section() -> str:
    text = README.read_text()
    return text.split("\n## Loading a hierarchy\n", 1)[1].split("\n## ", 1)[0]


def blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section, flags=re.M | re.S)


def loader_streams() -> dict[str, Any]:
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-aha"]
    streams: dict[str, Any] = loader["config"]["streams"]
    return streams


def test_readme_hierarchy_configuration_is_the_demo_s() -> None:
    # The README's Jira-style example (spec §12's) is what meltano.yml configures for the demo.
    (example,) = blocks(hierarchy_section(), "yaml")
    streams = yaml.safe_load(example)["streams"]
    assert set(streams) == {"jira_versions", "jira_epics", "jira_stories", "jira_subtasks"}
    configured = loader_streams()
    assert {name: configured[name] for name in streams} == streams


def test_readme_hierarchy_walkthrough_runs(tmp_path) -> None:
    # Every sh block of "Loading a hierarchy", verbatim and in order, in a directory with this
    # repository's demo/ and target-aha on PATH (an activated virtualenv); what it prints is
    # what the README's text blocks say (the tree compared by structure: two features
    # deferred together may be numbered either way round).
    section = hierarchy_section()
    script = "set -eu\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + "".join(
        blocks(section, "sh"))
    (tmp_path / "demo").symlink_to(REPO / "demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_AHA_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}"
                   for p in sorted((tmp_path / "output").glob("*.log")))
    assert done.returncode == 0, done.stdout + done.stderr + logs
    loaded, tree, again = blocks(section, "text")
    out = done.stdout
    assert out.startswith(loaded), out + logs
    shown, rest = out[len(loaded):].split("\nIn all: ", 1)
    in_all, rest = rest.split("\n", 1)
    assert parse_tree(shown + "\nIn all: ")[0] == parse_tree(tree)[0]
    assert f"In all: {in_all}\n" in tree
    assert rest == again

    config = json.loads((tmp_path / "output" / "hierarchy.json").read_text())
    (example,) = blocks(section, "yaml")
    assert config["streams"] == yaml.safe_load(example)["streams"]
    results = rows(tmp_path / "output" / "hierarchy-results.jsonl")
    (lost, lost_again) = [r for r in results if r["key"] == "MOB-12"]
    for line in (lost, lost_again):
        assert line["status"] == "rejected"
        assert all(word in line["error"] for word in ("MOB-12", "jira_stories", "MOB-9"))
