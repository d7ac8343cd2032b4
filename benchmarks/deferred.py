"""Deferred children: does peak RSS stay flat however many records wait for their parent?

A child whose parent is not known yet is held on disk until the end of the input (spec §12).
Peak RSS (ru_maxrss of the child, from os.wait4) for 100,000 deferred children / for 1,000:
every child names a release that no record creates, so all of them wait to the end of the
input and are then rejected (`on_record_error: skip`); nothing is sent. Then the same ratio
when the parent is the input's last record, so every child is resolved and created at the end,
against the sandbox (no latency, no rate limit) at smaller sizes. Target: <= 1.2 for each.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any

from benchlib import (
    HIGH_RATE,
    TOKEN,
    Figure,
    Measured,
    SandboxProcess,
    cli,
    feature,
    load_note,
    peak_ratio,
    run_target,
    workdir,
)

PARENTS = "versions"
CHILDREN = "features"


def write_input(path: Path, n: int, *, parent_last: bool) -> Path:
    """`n` features naming release V-1 by reference, then (if `parent_last`) V-1 itself."""
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"type": "SCHEMA", "stream": CHILDREN, "schema": {
            "type": "object", "properties": {}}, "key_properties": ["id"]}) + "\n")
        for i in range(n):
            out.write(json.dumps({"type": "RECORD", "stream": CHILDREN,
                                  "record": {**feature(i), "version": "V-1"}}) + "\n")
        if parent_last:
            out.write(json.dumps({"type": "SCHEMA", "stream": PARENTS, "schema": {
                "type": "object", "properties": {}}, "key_properties": ["version_id"]}) + "\n")
            out.write(json.dumps({"type": "RECORD", "stream": PARENTS,
                                  "record": {"version_id": "V-1", "name": "Version 1"}}) + "\n")
        out.write(json.dumps({"type": "STATE", "value": {"bookmark": n}}) + "\n")
    return path


def config(tmp: Path, name: str, base_url: str) -> dict[str, Any]:
    """Features in the release that the versions stream's record V-1 became."""
    return {
        "base_url": base_url, "api_key": TOKEN, "on_record_error": "skip",
        "ledger_path": str(tmp / f"{name}.ledger.sqlite"),
        "max_requests_per_second": HIGH_RATE, "max_requests_per_minute": HIGH_RATE * 60,
        "streams": {
            PARENTS: {"endpoint": "create_release", "product_id": "PRJ1",
                      "key_property": "version_id"},
            CHILDREN: {"endpoint": "create_feature", "key_property": "id",
                       "release_id": {"ref": PARENTS, "key": "{version}"}},
        },
    }


def peak(tmp: Path, records: int, name: str, *, sandbox: SandboxProcess | None) -> Measured:
    """One run over `records` children; their parent never comes unless a sandbox is given."""
    input_path = write_input(tmp / f"{name}.jsonl", records, parent_last=sandbox is not None)
    if sandbox is None:
        base_url = "http://127.0.0.1:9/api/v1"  # nothing is sent: every child is rejected
    else:
        sandbox.reset()
        base_url = sandbox.base_url
    try:
        return run_target(config(tmp, name, base_url), input_path, tmp, name).check(
            f"target-aha ({name})")
    finally:
        input_path.unlink()


def run(*, quick: bool = False, records: list[int] | None = None,
        real_records: list[int] | None = None, no_real: bool = False) -> list[Figure]:
    """Both comparisons; the figures are their peak-RSS ratios. `quick`: 10x smaller."""
    scale = 10 if quick else 1
    never = records or [1_000, 100_000 // scale]
    real = real_records or [1_000 // scale, 10_000 // scale]

    print(f"deferred: peak RSS of target-aha, many deferred children / few; {load_note()}")
    with workdir("deferred") as tmp:
        figures = [Figure(
            "deferred", f"peak RSS, {never[1]} / {never[0]} children whose parent never comes",
            peak_ratio(partial(peak, tmp, sandbox=None), never[0], never[1],
                       "parent never comes", "children"), "<=", 1.2)]
        if not no_real:
            with SandboxProcess(tmp) as sandbox:
                figures.append(Figure(
                    "deferred",
                    f"peak RSS, {real[1]} / {real[0]} children resolved when the parent comes last",
                    peak_ratio(partial(peak, tmp, sandbox=sandbox), real[0], real[1],
                               "parent comes last", "children"), "<=", 1.2))
    for figure in figures:
        print(figure)
    return figures


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller")
    parser.add_argument("--records", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help="children whose parent never comes (default 1000 100000)")
    parser.add_argument("--real-records", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help="children resolved at the end (default 1000 10000)")
    parser.add_argument("--no-real", action="store_true", help="skip the resolving run")
    cli(parser, run)


if __name__ == "__main__":
    main()
