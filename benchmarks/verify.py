"""Verify: `--verify-ledger` over 10,000 ledger rows costs at most 60 requests (spec §13).

10,000 keyed feature records are loaded into a fresh SQLite ledger (a real run against the
sandbox, no latency, no rate limit); 5 of the features are then deleted behind the API's back
(as a PM deleting them in Aha!), and `target-aha --verify-ledger` runs. Printed: the requests
the sandbox received during verification (target <= 60: 50 listing pages of 200, and one GET
per object missing from its listing), rows forgotten beyond those deleted (target 0), and the
requests of a re-run of the same input (target: the 5 creates of the deleted ones, no more).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from benchlib import (
    EXECUTABLE,
    HIGH_RATE,
    Figure,
    SandboxProcess,
    cli,
    feature_config,
    load_note,
    measure,
    run_target,
    workdir,
    write_input,
)

DELETED = 5
"""Features deleted in the sandbox between the load and the verification."""


def rows(ledger: str) -> int:
    """Rows in the ledger file."""
    with sqlite3.connect(ledger) as db:
        return int(db.execute("SELECT count(*) FROM target_aha_ledger").fetchone()[0])


def created_ids(results: Path) -> list[str]:
    """The Aha! ids of a results file's creates, in input order."""
    with results.open(encoding="utf-8") as lines:
        return [row["aha_id"] for row in map(json.loads, lines) if row["operation"] == "create"]


def run(*, quick: bool = False, records: int | None = None) -> list[Figure]:
    """Load, delete a few objects, verify, re-run; the figures are verification's requests,
    the rows it forgot beyond the deleted objects, and the re-run's requests. `quick`: 2,000
    records."""
    records = records or (2000 if quick else 10_000)
    print(f"verify: {records} keyed create_feature records, SQLite ledger, {DELETED} deleted "
          f"in the sandbox, then --verify-ledger; {load_note()}")
    with workdir("verify") as tmp:
        input_path = write_input(tmp / "input.jsonl", records, keyed=True)
        empty = tmp / "empty.jsonl"
        empty.write_text("")
        ledger = str(tmp / "ledger.sqlite")
        with SandboxProcess(tmp) as sandbox:
            def settings(name: str) -> dict[str, object]:
                return feature_config(
                    sandbox.base_url, ledger_path=ledger, max_requests_per_second=HIGH_RATE,
                    max_requests_per_minute=HIGH_RATE * 60,
                    results_path=str(tmp / f"{name}.results.jsonl"),
                )

            first = run_target(settings("first"), input_path, tmp, "first").check("first run")
            ids = created_ids(tmp / "first.results.jsonl")
            print(f"  first run: {len(ids)} created, wall {first.wall:.2f} s", flush=True)
            for ident in ids[:: max(1, len(ids) // DELETED)][:DELETED]:
                sandbox.admin("DELETE", f"objects/feature/{ident}")
            before_rows, before = rows(ledger), sandbox.stats()["requests"]
            config_path = tmp / "verify.json"
            config_path.write_text(json.dumps(settings("verify")))
            verified = measure(
                [EXECUTABLE, "--config", str(config_path), "--verify-ledger"], empty, cwd=tmp,
                stderr_path=tmp / "verify.stderr",
            ).check("--verify-ledger")
            spent = sandbox.stats()["requests"] - before
            forgotten = before_rows - rows(ledger)
            print(f"  --verify-ledger: {spent} requests for {before_rows} rows, {forgotten} "
                  f"forgotten, wall {verified.wall:.2f} s", flush=True)
            after_verify = sandbox.stats()["requests"]
            again = run_target(settings("again"), input_path, tmp, "again").check("re-run")
            resent = sandbox.stats()["requests"] - after_verify
            print(f"  re-run: {resent} requests, "
                  f"{len(created_ids(tmp / 'again.results.jsonl'))} created, "
                  f"wall {again.wall:.2f} s")
    figures = [
        Figure("verify", f"requests verifying {before_rows} ledger rows", spent, "<=", 60),
        Figure("verify", "rows forgotten beyond the objects deleted", abs(forgotten - DELETED),
               "<=", 0),
        Figure("verify", "requests of the re-run beyond re-creating the deleted",
               abs(resent - DELETED), "<=", 0),
    ]
    for figure in figures:
        print(figure)
    return figures


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2000 records")
    parser.add_argument("--records", type=int, help="keyed records (default 10000)")
    cli(parser, run)


if __name__ == "__main__":
    main()
