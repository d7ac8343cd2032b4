"""Print what a target-aha run created in the local sandbox, as a user would look at Aha!.

    python demo/show.py [BASE_URL] [--results output/aha-results.jsonl]
    python demo/show.py --tally MELTANO_LOG --results output/aha-results.jsonl

BASE_URL is the sandbox's API root (default: $TARGET_AHA_BASE_URL), e.g.
http://127.0.0.1:PORT/sandbox-3f9a0c1e/api/v1. The objects are read from the sandbox's admin
endpoints (/__sandbox/objects/<kind>, /__sandbox/requests), which need no token.
The hierarchy is printed as a tree, each object under the one it names as its container
(releases > epics > features > requirements and comments; goals > key results), so a child
that landed under the wrong parent, or under none, shows.
`--tally` prints, per stream and in total, the results lines of the target-aha runs a
`meltano run` log names (one job runs target-aha once per tap). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

# Printed as a tree (Tree); the others as tables (show_objects).
TREE_KINDS = ("release", "epic", "feature", "requirement", "comment", "goal", "key_result")
KINDS = (*TREE_KINDS, "initiative", "idea", "custom_object_record", "team")
TITLES = {
    "release": "Releases",
    "epic": "Epics",
    "feature": "Features",
    "requirement": "Requirements",
    "comment": "Comments",
    "goal": "Goals",
    "key_result": "Key results",
    "initiative": "Initiatives",
    "idea": "Ideas",
    "custom_object_record": "Custom table records",
    "team": "Teams",
}
# Upstream key fields of the demo streams, shown so a reader can match objects to input rows
# (target-aha sends a stream's key field in the body; the fields a reference reads it does not).
KEY_FIELDS = ("request_id", "okr_id", "kr_id", "version_id", "epic_key", "issue_key",
              "comment_id")


def admin_root(base_url: str) -> str:
    """http://host:port/sandbox-x/api/v1 -> http://host:port/sandbox-x."""
    return re.sub(r"/api/v1/?$", "", base_url.rstrip("/"))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def natural(text: str) -> list[Any]:
    """Sort key so that PRJ1-2 comes before PRJ1-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def cut(text: Any, width: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: list[str], rows: list[list[Any]], widths: list[int]) -> list[str]:
    def line(cells: list[Any]) -> str:
        padded = (cut(c, w).ljust(w) for c, w in zip(cells, widths, strict=True))
        return ("  " + "  ".join(padded)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def release(obj: dict[str, Any]) -> str:
    value = obj.get("release")
    if isinstance(value, dict):
        return str(value.get("reference_num") or value.get("name") or value.get("id"))
    return ""


def upstream_key(obj: dict[str, Any]) -> str:
    for field in KEY_FIELDS:
        if obj.get(field):
            return str(obj[field])
    return ""


def show_objects(kind: str, objects: list[dict[str, Any]]) -> list[str]:
    out = [f"{TITLES[kind]} ({len(objects)})"]
    if kind == "custom_object_record":
        rows = []
        for obj in objects:
            fields = {f.get("key"): f.get("value") for f in obj.get("custom_fields") or []}
            rows.append([obj.get("key"), obj.get("id"), fields.get("name"),
                         " | ".join(str(v) for k, v in fields.items() if k != "name")])
        rows.sort(key=lambda r: (str(r[0]), str(r[2])))
        return out + table(["TABLE", "ID", "NAME", "OTHER FIELDS"], rows, [8, 19, 26, 60])
    if kind == "team":
        rows = [[obj.get("id"), obj.get("name")] for obj in objects]
        return out + table(["ID", "NAME"], rows, [19, 50])
    rows = [[obj.get("reference_num") or obj.get("id"), release(obj), obj.get("name"),
             upstream_key(obj)] for obj in objects]
    rows.sort(key=lambda r: natural(str(r[0])))
    return out + table(["REFERENCE", "RELEASE", "NAME", "FROM"], rows, [10, 9, 44, 14])


def points_at(value: Any, obj: dict[str, Any]) -> bool:
    """Whether a field naming another object (`{"id", "reference_num"}` as Aha! answers it, or
    the id or reference number that was sent) names `obj`."""
    if isinstance(value, dict):
        return any(value.get(k) is not None and str(value[k]) == str(obj.get(k))
                   for k in ("id", "reference_num"))
    if value is None or value == "":
        return False
    text = str(value).upper()
    return text in {str(obj.get("id")).upper(), str(obj.get("reference_num")).upper()}


def node(kind: str, obj: dict[str, Any]) -> str:
    """`feature PRJ1-12 "Dark mode" [MOB-7]`: kind, reference number, name, upstream key."""
    if kind == "comment":
        body = re.sub(r"<[^>]+>", "", str(obj.get("body") or ""))
        text = f'comment "{cut(body, 70)}"'
    else:
        text = f'{kind} {obj.get("reference_num") or obj.get("id")} "{cut(obj.get("name"), 70)}"'
    key = upstream_key(obj)
    return f"{text} [{key}]" if key else text


class Tree:
    """The hierarchy kinds' objects, and which of them each one contains."""

    def __init__(self, everything: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = everything
        self.placed: set[int] = set()  # id() of every object printed so far

    def inside(self, kind: str, field: str, parent: dict[str, Any]) -> list[dict[str, Any]]:
        """The objects of `kind` whose `field` names `parent`, in reference-number order."""
        found = [o for o in self.objects.get(kind, []) if points_at(o.get(field), parent)]
        return sorted(found, key=lambda o: natural(str(o.get("reference_num") or "")))

    def lines(self, kind: str, obj: dict[str, Any], depth: int) -> list[str]:
        """`obj` and, indented below it, everything it contains."""
        self.placed.add(id(obj))
        out = ["  " * depth + node(kind, obj)]
        for objects, child_kind in self.children(kind, obj):
            for child in objects:
                out += self.lines(child_kind, child, depth + 1)
        return out

    def children(
        self, kind: str, obj: dict[str, Any]
    ) -> list[tuple[list[dict[str, Any]], str]]:
        """(objects, their kind) contained in `obj`, in the order they are printed: what
        Aha! creates inside it, then the comments on it."""
        if kind == "comment":
            return []
        inner: list[tuple[list[dict[str, Any]], str]] = []
        if kind == "release":
            epics = self.inside("epic", "release", obj)
            features = [f for f in self.inside("feature", "release", obj)
                        if not any(points_at(f.get("epic"), e) for e in epics)]
            inner = [(epics, "epic"), (features, "feature")]
        elif kind == "epic":  # its features in its own release (a feature has one release)
            release_of = obj.get("release") or {}
            inner = [([f for f in self.inside("feature", "epic", obj)
                       if points_at(f.get("release"), release_of)], "feature")]
        elif kind == "feature":
            inner = [(self.inside("requirement", "feature", obj), "requirement")]
        elif kind == "goal":
            inner = [(self.inside("key_result", "goal", obj), "key_result")]
        return [*inner, (self.inside("comment", "commentable", obj), "comment")]

    def show(self) -> list[str]:
        out = ["The tree: releases > epics > features > requirements and comments"]
        for release_obj in sorted(self.objects.get("release", []),
                                  key=lambda o: natural(str(o.get("reference_num")))):
            out += self.lines("release", release_obj, 1)
        out += ["", "Goals > key results"]
        for goal in sorted(self.objects.get("goal", []),
                           key=lambda o: natural(str(o.get("reference_num")))):
            out += self.lines("goal", goal, 1)
        astray = [(kind, obj) for kind in TREE_KINDS for obj in self.objects.get(kind, [])
                  if id(obj) not in self.placed]
        if astray:
            out += ["", f"Not under any parent above ({len(astray)}):"]
            out += ["  " + node(kind, obj) for kind, obj in astray]
        counts = ", ".join(f"{len(self.objects.get(kind, []))} {TITLES[kind].lower()}"
                           for kind in TREE_KINDS)
        return [*out, "", f"In all: {counts}"]


def identity(kind: str, obj: dict[str, Any]) -> str:
    """What makes two objects the same row of input: the upstream key, else the name in its
    product (each product has a "Release 1")."""
    if kind == "custom_object_record":
        fields = {f.get("key"): f.get("value") for f in obj.get("custom_fields") or []}
        return f"{obj.get('key')}:{fields.get('name')}"
    product = obj.get("product_id") or (obj.get("release") or {}).get("id") or ""
    return upstream_key(obj) or f"{obj.get('name')} ({product})"


def show_duplicates(everything: dict[str, list[dict[str, Any]]]) -> list[str]:
    copies = []
    for kind, objects in everything.items():
        counts = Counter(identity(kind, obj) for obj in objects)
        copies += [f"{key} x{n}" for key, n in sorted(counts.items()) if n > 1]
    if not copies:
        return ["Duplicates: none (one object per input row)"]
    return [f"Duplicates: {len(copies)} input rows have more than one object: "
            + ", ".join(copies[:6]) + (", ..." if len(copies) > 6 else "")]


def show_results(path: Path) -> list[str]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    status = Counter(line.get("status") for line in lines)
    succeeded = [line for line in lines if line.get("status") == "succeeded"]
    operation = Counter(line.get("operation") for line in succeeded)
    by_stream = Counter(line.get("stream") for line in lines)
    out = [f"Results file {path}: {len(lines)} lines ("
           + ", ".join(f"{n} {s}" for s, n in sorted(status.items())) + ")"]
    if operation:
        out.append("  succeeded: " + ", ".join(f"{n} {op}" for op, n in sorted(operation.items())))
    out.append("  per stream: " + ", ".join(f"{s} {n}" for s, n in sorted(by_stream.items())))
    for line in lines:
        if line.get("status") == "rejected":
            out.append(f"  rejected {line.get('stream')} {line.get('key')}: {line.get('error')}")
    return out


RUN_ID = re.compile(r"target-aha finished (?:dry )?run (\S+) in ")


def counts_line(lines: list[dict[str, Any]]) -> str:
    """`17 records; succeeded 17 (unchanged 17)`, as target-aha's own summary words it."""
    by_status = Counter(line.get("status") for line in lines)
    parts = [f"{len(lines)} record{'' if len(lines) == 1 else 's'}"]
    for status in ("succeeded", "rejected", "dry_run"):
        if by_status[status]:
            ops = Counter(line.get("operation") for line in lines if line.get("status") == status)
            text = ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))
            attempted = "attempted: " if status == "rejected" else ""
            parts.append(f"{status} {by_status[status]} ({attempted}{text})")
    return "; ".join(parts)


def tally(log: Path, results: Path) -> list[str]:
    """Per stream and in total, the results lines of the runs `log` names."""
    runs = set(RUN_ID.findall(log.read_text()))
    lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    ours = [line for line in lines if line.get("run_id") in runs]
    out = []
    for stream in sorted({str(line.get("stream")) for line in ours}):
        out.append(f"  {stream}: {counts_line([x for x in ours if x.get('stream') == stream])}")
    out.append(f"  total ({len(runs)} target-aha runs): {counts_line(ours)}")
    return out


def show_requests(requests: list[dict[str, Any]]) -> list[str]:
    writes = [r for r in requests if r.get("method") != "GET"]
    methods = Counter(r.get("method") for r in requests)
    statuses = Counter(r.get("status") for r in requests)
    quiet = sum(1 for r in writes if (r.get("query") or {}).get("disable_mailers") == "true")
    return [
        f"Requests the sandbox received: {len(requests)} ("
        + ", ".join(f"{m} {n}" for m, n in sorted(methods.items())) + "; answers "
        + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items(), key=str)) + ")",
        f"  writes with disable_mailers=true: {quiet} of {len(writes)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", nargs="?", default=os.environ.get("TARGET_AHA_BASE_URL"))
    parser.add_argument("--results", type=Path, help="target-aha's results file to summarize")
    parser.add_argument("--tally", type=Path, metavar="MELTANO_LOG",
                        help="only tally the results of the runs in this `meltano run` log")
    args = parser.parse_args(argv)
    if args.tally:
        if not args.results:
            parser.error("--tally needs --results")
        print("\n".join(tally(args.tally, args.results)))
        return 0
    if not args.base_url:
        parser.error("give the sandbox's base URL or set TARGET_AHA_BASE_URL")
    root = admin_root(args.base_url)
    out = [f"What the sandbox at {args.base_url} holds after the runs:", ""]
    everything = {kind: get_json(f"{root}/__sandbox/objects/{kind}") for kind in KINDS}
    out += [*Tree(everything).show(), ""]
    for kind in KINDS:
        if kind not in TREE_KINDS and everything[kind]:
            out += [*show_objects(kind, everything[kind]), ""]
    out += [*show_duplicates(everything), ""]
    out += show_requests(get_json(f"{root}/__sandbox/requests"))
    if args.results and args.results.exists():
        out += ["", *show_results(args.results)]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
