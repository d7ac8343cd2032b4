"""Memory: does target-aha's peak RSS stay flat however long the input?

Peak RSS (ru_maxrss of the child, from os.wait4) for 200,000 records / for 20,000 records,
in `dry_run: true`; then the same ratio for a real run against the sandbox (no latency, no
rate limit) at smaller sizes, because a real run of 200,000 creates takes minutes here.
Target: <= 1.2 for each.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from benchlib import (
    HIGH_RATE,
    Figure,
    Measured,
    SandboxProcess,
    cli,
    feature_config,
    load_note,
    peak_ratio,
    run_target,
    workdir,
    write_input,
)


def peak(tmp: Path, records: int, name: str, *, sandbox: SandboxProcess | None) -> Measured:
    """One run over `records` records; dry run unless a sandbox is given."""
    input_path = write_input(tmp / f"{name}.jsonl", records)
    if sandbox is None:
        config = feature_config(dry_run=True)
    else:
        sandbox.reset()
        config = feature_config(sandbox.base_url, max_requests_per_second=HIGH_RATE,
                                max_requests_per_minute=HIGH_RATE * 60)
    try:
        return run_target(config, input_path, tmp, name, keep_stderr=sandbox is not None).check(
            f"target-aha ({name})")
    finally:
        input_path.unlink()


def run(*, quick: bool = False, records: list[int] | None = None,
        real_records: list[int] | None = None, no_real: bool = False) -> list[Figure]:
    """Both comparisons; the figures are their peak-RSS ratios. `quick`: 10x smaller."""
    scale = 10 if quick else 1
    dry = records or [20_000 // scale, 200_000 // scale]
    real = real_records or [2_000 // scale, 20_000 // scale]

    print(f"memory: peak RSS of target-aha, large input / small input; {load_note()}")
    with workdir("memory") as tmp:
        figures = [Figure("memory", f"peak RSS, {dry[1]} / {dry[0]} records in dry run",
                          peak_ratio(partial(peak, tmp, sandbox=None), dry[0], dry[1],
                                     "dry run"), "<=", 1.2)]
        if not no_real:
            with SandboxProcess(tmp) as sandbox:
                figures.append(Figure(
                    "memory", f"peak RSS, {real[1]} / {real[0]} records against the sandbox",
                    peak_ratio(partial(peak, tmp, sandbox=sandbox), real[0], real[1],
                               "real run"), "<=", 1.2))
    for figure in figures:
        print(figure)
    return figures


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller")
    parser.add_argument("--records", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help="dry-run sizes (default 20000 200000)")
    parser.add_argument("--real-records", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help="real-run sizes (default 2000 20000)")
    parser.add_argument("--no-real", action="store_true", help="skip the real run")
    cli(parser, run)


if __name__ == "__main__":
    main()
