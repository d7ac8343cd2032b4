"""Changed fields only (spec §13): update streams re-synced send nothing, one changed field
sends one field.

10,000 features are created in the sandbox (no latency, no rate limit), then an
`update_feature` stream sends 10,000 records to them through a fresh SQLite ledger. Printed:
requests the sandbox received when the same update input runs again (target 0), and, for
1,000 of those records with one field changed, how many PUTs were sent and how many of
their bodies carry just that field (targets 1,000 and 1,000).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchlib import (
    HIGH_RATE,
    SCHEMA_PROPERTIES,
    Figure,
    SandboxProcess,
    cli,
    feature,
    feature_config,
    load_note,
    run_target,
    workdir,
    write_input,
)

STREAM = "feature_updates"


def update_record(i: int, aha_id: str, score: float | None = None) -> dict[str, Any]:
    """Feature `i`'s fields sent to its Aha! object (`fid`), its score changed if told."""
    fields = {k: v for k, v in feature(i).items() if k != "id"}
    if score is not None:
        fields["score"] = score
    return {"type": "RECORD", "stream": STREAM, "record": {"fid": aha_id, **fields}}


def write_updates(path: Path, ids: list[str], changed: bool = False) -> Path:
    """SCHEMA, one update RECORD per Aha! id (`changed`: a new score each), a STATE."""
    properties = {"fid": {"type": "string"},
                  **{k: v for k, v in SCHEMA_PROPERTIES.items() if k != "id"}}
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"type": "SCHEMA", "stream": STREAM, "key_properties": ["fid"],
                              "schema": {"type": "object", "properties": properties}}) + "\n")
        for i, aha_id in enumerate(ids):
            score = 1000 + i if changed else None
            out.write(json.dumps(update_record(i, aha_id, score)) + "\n")
        out.write(json.dumps({"type": "STATE", "value": {"bookmark": len(ids)}}) + "\n")
    return path


def created_ids(results: Path) -> list[str]:
    """The Aha! ids of the first run's creates, in input order."""
    with results.open(encoding="utf-8") as lines:
        return [row["aha_id"] for row in map(json.loads, lines)]


def run(*, quick: bool = False, records: int | None = None) -> list[Figure]:
    """Create the features, update them, re-run the updates, change one field of 1,000.
    `quick`: 2,000 records, 200 of them changed."""
    records = records or (2000 if quick else 10_000)
    changed = records // 10

    print(f"fields: {records} update_feature records, SQLite ledger, sandbox without latency "
          f"or rate limit; {load_note()}")
    with workdir("fields") as tmp, SandboxProcess(tmp) as sandbox:
        limits: dict[str, Any] = {"max_requests_per_second": HIGH_RATE,
                                  "max_requests_per_minute": HIGH_RATE * 60}
        create = feature_config(sandbox.base_url, results_path=str(tmp / "create.jsonl"),
                                **limits)
        run_target(create, write_input(tmp / "create.input", records, keyed=True),
                   tmp, "create").check("creating the features")
        ids = created_ids(tmp / "create.jsonl")

        def settings(name: str) -> dict[str, Any]:
            return feature_config(
                sandbox.base_url, ledger_path=str(tmp / "ledger.sqlite"),
                results_path=str(tmp / f"{name}.jsonl"),
                streams={STREAM: {"endpoint": "update_feature", "feature_id": "{fid}"}},
                **limits,
            )

        updates = write_updates(tmp / "updates.input", ids)
        first = run_target(settings("first"), updates, tmp, "first").check("first update")
        print(f"  first update run: wall {first.wall:.2f} s", flush=True)
        sandbox.admin("DELETE", "requests")
        before = sandbox.stats()["requests"]
        again = run_target(settings("again"), updates, tmp, "again").check("re-run")
        resent = sandbox.stats()["requests"] - before
        print(f"  re-run: {resent} requests, wall {again.wall:.2f} s", flush=True)

        one_field = write_updates(tmp / "changed.input", ids[:changed], changed=True)
        sandbox.admin("DELETE", "requests")
        run_target(settings("changed"), one_field, tmp, "changed").check("changed run")
        puts = [r for r in sandbox.admin("GET", "requests") if r["method"] == "PUT"]
        narrow = sum(1 for r in puts if list(r["body"]["feature"]) == ["score"])
        print(f"  {changed} records with a new score: {len(puts)} PUTs, {narrow} of them "
              "carrying only the score")
    figures = [
        Figure("fields", f"requests re-syncing {records} unchanged update records", resent,
               "<=", 0),
        Figure("fields", f"PUTs for {changed} records with one changed field", len(puts),
               "<=", changed),
        Figure("fields", f"of them carrying only that field (of {changed})", narrow,
               ">=", changed),
    ]
    for figure in figures:
        print(figure)
    return figures


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2000 records, 200 changed")
    parser.add_argument("--records", type=int, help="update records (default 10000)")
    cli(parser, run)


if __name__ == "__main__":
    main()
