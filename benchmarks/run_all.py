"""Run every benchmark and print their summary lines together at the end.

    .venv/bin/python benchmarks/run_all.py            # full sizes, about 7 minutes
    .venv/bin/python benchmarks/run_all.py --quick    # smaller sizes, about 2 minutes
    .venv/bin/python benchmarks/run_all.py speedup resync   # only some

Each benchmark starts its own sandbox and runs the real `target-aha` executable; they print
figures and never fail on a missed target (only on a run that itself failed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("saturation", "speedup", "overhead", "memory", "resync", "deferred")


def main() -> int:
    """Run the chosen benchmarks one after another; exit 1 if one of them failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"some of: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    summaries: list[str] = []
    failed: list[str] = []
    for name in args.names or BENCHMARKS:
        started = time.monotonic()
        command = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if args.quick else [])]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        last = None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith(f"{name}: "):
                last = line.rstrip("\n")
        if proc.wait() != 0 or last is None:
            failed.append(name)
            last = f"{name}: FAILED (exit {proc.returncode})"
        summaries.append(f"{last}  [{time.monotonic() - started:.0f} s]")
        print()
    print("summary:")
    for line in summaries:
        print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
