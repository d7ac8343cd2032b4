"""Re-sync: a second run of unchanged keyed records costs no requests and little time.

10,000 keyed feature records are loaded into a fresh SQLite ledger (a real run against the
sandbox, no latency, no rate limit); then the same input runs again. Printed: requests the
sandbox received during the re-run (target 0), and the re-run's wall time / the wall time
of a dry run over the same input and ledger (target <= 2).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
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


def operations(path: Path) -> str:
    """`status:operation` counts of a results file, e.g. `succeeded:unchanged 10000`."""
    counts: Counter[str] = Counter()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            counts[f"{row['status']}:{row['operation']}"] += 1
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))


def run(*, quick: bool = False, records: int | None = None) -> list[Figure]:
    """First run, re-run, dry run; the figures are the re-run's requests and its wall time /
    the dry run's. `quick`: 2,000 records."""
    records = records or (2000 if quick else 10_000)

    print(f"resync: {records} keyed create_feature records, SQLite ledger, sandbox without "
          f"latency or rate limit; {load_note()}")
    with workdir("resync") as tmp:
        input_path = write_input(tmp / "input.jsonl", records, keyed=True)
        ledger = str(tmp / "ledger.sqlite")
        startup = measure([EXECUTABLE, "--about"], input_path, cwd=tmp)
        with SandboxProcess(tmp) as sandbox:
            def settings(name: str, **extra: object) -> dict[str, object]:
                return feature_config(
                    sandbox.base_url, ledger_path=ledger, max_requests_per_second=HIGH_RATE,
                    max_requests_per_minute=HIGH_RATE * 60,
                    results_path=str(tmp / f"{name}.results.jsonl"), **extra,
                )

            first = run_target(settings("first"), input_path, tmp, "first").check("first run")
            after_first = sandbox.stats()["requests"]
            print(f"  first run: {after_first} requests, wall {first.wall:.2f} s, CPU "
                  f"{first.cpu:.2f} s; {operations(tmp / 'first.results.jsonl')}", flush=True)
            again = run_target(settings("again"), input_path, tmp, "again").check("re-run")
            sent = sandbox.stats()["requests"] - after_first
            print(f"  re-run:    {sent} requests, wall {again.wall:.2f} s, CPU "
                  f"{again.cpu:.2f} s; {operations(tmp / 'again.results.jsonl')}", flush=True)
            dry = run_target(settings("dry", dry_run=True), input_path, tmp, "dry",
                             keep_stderr=False).check("dry run")
            print(f"  dry run:   {sandbox.stats()['requests'] - after_first - sent} requests, "
                  f"wall {dry.wall:.2f} s, CPU {dry.cpu:.2f} s; "
                  f"{operations(tmp / 'dry.results.jsonl')}")
        print(f"  start-up alone (target-aha --about): wall {startup.wall:.2f} s; without it "
              f"the ratio would be {(again.wall - startup.wall) / (dry.wall - startup.wall):.2f}")
    figures = [
        Figure("resync", f"requests re-sending {records} unchanged records", sent, "<=", 0),
        Figure("resync", "wall of the re-run / of a dry run", again.wall / dry.wall, "<=", 2),
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
