"""Run every benchmark and print their figures together at the end.

    .venv/bin/python benchmarks/run_all.py                   # full sizes, about 7 minutes
    .venv/bin/python benchmarks/run_all.py --quick --check   # CI: smaller sizes, under a minute
    .venv/bin/python benchmarks/run_all.py speedup resync    # only some

Each benchmark starts its own sandbox and runs the real `target-aha` executable; its `run()`
returns its figures. Exit 1 if a benchmark's run failed, and with --check also if a figure
misses its target (each one named).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from benchlib import BenchmarkFailed, Figure, missed

BENCHMARKS = ("saturation", "speedup", "overhead", "memory", "resync", "deferred", "fields",
              "verify")


def run_all(names: tuple[str, ...] | list[str] = BENCHMARKS, *, quick: bool = False,
            ) -> tuple[list[Figure], list[str]]:
    """Run the named benchmarks one after another: (their figures, the ones that failed)."""
    figures: list[Figure] = []
    failed: list[str] = []
    for name in names:
        started = time.monotonic()
        try:
            got = importlib.import_module(name).run(quick=quick)
        except BenchmarkFailed as error:
            print(f"{name}: FAILED: {error}")
            failed.append(name)
        else:
            figures.extend(got)
        print(f"  [{name}: {time.monotonic() - started:.0f} s]\n", flush=True)
    return figures, failed


def main() -> int:
    """Command line: the chosen benchmarks, the summary, the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"some of: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a figure misses its target")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    figures, failed = run_all(args.names or BENCHMARKS, quick=args.quick)
    print("summary:")
    for figure in figures:
        print(f"  {figure}")
    for name in failed:
        print(f"  {name}: FAILED (no figures)")
    short = missed(figures) if args.check else []
    if short:
        print("missed: " + "; ".join(f"{f.benchmark}: {f.what}" for f in short))
    return 1 if failed or short else 0


if __name__ == "__main__":
    sys.exit(main())
