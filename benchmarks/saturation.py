"""Saturation: does target-aha use all of Aha!'s rate budget without ever going over it?

The sandbox enforces 100 requests/s (and answers with Aha!'s X-Ratelimit-* headers) and
waits 50 ms before each answer; the target is told the same 100/s. Creates of 2,000
features are timed from the sandbox's request log (first to last arrival), for each
max_concurrency. Target: >= 0.9 of the limit, 0 answers 429.

A control run (skip with --no-control) sets the sandbox's limit one above the target's, so
the sandbox never answers `X-Ratelimit-Remaining: 0`: the gap between the two runs is what
the target's reaction to that header costs. `--what-if` adds a run at the real limit of a
target patched (in the child process only) to pause on 429 answers but not on
`X-Ratelimit-Remaining: 0`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    Figure,
    SandboxProcess,
    cli,
    feature_config,
    load_note,
    rate_of,
    run_target,
    workdir,
    write_input,
)


@dataclass
class Outcome:
    """What one run achieved, from the sandbox's point of view."""

    concurrency: int
    requests: int
    rate: float
    span: float
    wall: float
    throttled: int
    max_per_second: int
    max_per_minute: int
    longest_gap: float
    gaps: int


WHAT_IF = "--child-pause-on-429-only"


def child(argv: list[str]) -> None:
    """target-aha whose RateGate ignores `X-Ratelimit-Remaining: 0` (429s still pause)."""
    from target_aha import ratelimit  # noqa: PLC0415
    from target_aha.target import TargetAha  # noqa: PLC0415
    from target_aha.wire import Answer  # noqa: PLC0415

    observe = ratelimit.RateGate.observe

    def on_429_only(self: ratelimit.RateGate, answer: Answer) -> float | None:
        return observe(self, answer) if answer.status == 429 else None

    ratelimit.RateGate.observe = on_429_only  # type: ignore[method-assign]
    sys.argv = ["target-aha", *argv]
    TargetAha.cli()


def run_once(sandbox: SandboxProcess, input_path: Path, tmp: Path, *, concurrency: int,
             limit: int, name: str, program: list[str] | None = None) -> Outcome:
    """One target run against a freshly reset sandbox."""
    sandbox.reset()
    config = feature_config(
        sandbox.base_url, max_requests_per_second=limit, max_requests_per_minute=100_000,
        max_concurrency=concurrency,
    )
    run = run_target(config, input_path, tmp, name, program=program).check(
        f"target-aha ({name})")
    arrivals = sandbox.arrivals()
    stats = sandbox.stats()
    rate, span = rate_of(arrivals)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return Outcome(
        concurrency, len(arrivals), rate, span, run.wall, stats["throttled"],
        stats["max_per_second"], stats["max_per_minute"], max(gaps, default=0.0),
        sum(1 for gap in gaps if gap > 0.2),
    )


def describe(o: Outcome, limit: int) -> str:
    """One detail line."""
    return (
        f"  max_concurrency {o.concurrency:>2}: {o.requests} requests at {o.rate:.1f} req/s "
        f"= {o.rate / limit:.2f} of {limit}/s (first to last arrival, {o.span:.2f} s); "
        f"wall {o.wall:.2f} s ({o.requests / o.wall:.1f} req/s); {o.throttled} x 429; "
        f"max {o.max_per_second} in any 1 s, "
        f"{o.max_per_minute} in any 60 s; longest silence {o.longest_gap:.2f} s "
        f"({o.gaps} silences > 0.2 s)"
    )


def run(*, quick: bool = False, records: int | None = None, limit: int = 100,
        latency_ms: float = 50, concurrency: list[int] | None = None, no_control: bool = False,
        what_if: bool = False) -> list[Figure]:
    """The runs at each max_concurrency (then the control and what-if runs, which print only);
    the figures are the best share of the limit and the 429s over all of them. `quick`: 400
    records at max_concurrency 8, no control run."""
    records = records or (400 if quick else 2000)
    levels = concurrency or ([8] if quick else [8, 16])
    control_run = not (quick or no_control)

    print(f"saturation: {records} x create_feature, sandbox {limit}/s + 100000/min, "
          f"latency {latency_ms:g} ms; target max_requests_per_second {limit}; "
          f"{load_note()}")
    with workdir("saturation") as tmp:
        input_path = write_input(tmp / "input.jsonl", records)
        outcomes = []
        with SandboxProcess(tmp, per_second=limit, per_minute=100_000,
                            latency_ms=latency_ms) as sandbox:
            for level in levels:
                outcomes.append(run_once(sandbox, input_path, tmp, concurrency=level,
                                         limit=limit, name=f"c{level}"))
                print(describe(outcomes[-1], limit), flush=True)
        if control_run:
            with SandboxProcess(tmp, per_second=limit + 1, per_minute=100_000,
                                latency_ms=latency_ms) as sandbox:
                control = run_once(sandbox, input_path, tmp, concurrency=levels[0],
                                   limit=limit, name="control")
            print(f"  control, sandbox limit {limit + 1}/s (never answers "
                  "X-Ratelimit-Remaining: 0):")
            print("  " + describe(control, limit), flush=True)
        if what_if:
            with SandboxProcess(tmp, per_second=limit, per_minute=100_000,
                                latency_ms=latency_ms) as sandbox:
                for level in levels:
                    patched = run_once(sandbox, input_path, tmp, concurrency=level,
                                       limit=limit, name=f"what-if-c{level}",
                                       program=[sys.executable, __file__, WHAT_IF])
                    if level == levels[0]:
                        print(f"  what if the target paused on 429 only (sandbox at {limit}/s):")
                    print("  " + describe(patched, limit), flush=True)

    best = max(outcomes, key=lambda o: o.rate)
    ratio = best.rate / limit
    throttled = sum(o.throttled for o in outcomes)
    print(
        f"saturation: {records} creates at {best.rate:.1f} req/s = {ratio:.2f} of the "
        f"{limit}/s limit, {throttled} x 429, max {max(o.max_per_second for o in outcomes)}"
        f" in any 1 s; best of max_concurrency {', '.join(map(str, levels))} was "
        f"{best.concurrency}"
    )
    figures = [Figure("saturation", f"share of the {limit}/s limit used", ratio, ">=", 0.9),
               Figure("saturation", "answers 429", throttled, "<=", 0)]
    for figure in figures:
        print(figure)
    return figures


def main() -> None:
    """Run the benchmark from the command line (or be the what-if child)."""
    if sys.argv[1:2] == [WHAT_IF]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="400 records, one concurrency, no control run")
    parser.add_argument("--records", type=int, help="creates per run (default 2000)")
    parser.add_argument("--limit", type=int, default=100, help="requests/s, both sides")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", help="default: 8 16")
    parser.add_argument("--no-control", action="store_true", help="skip the control run")
    parser.add_argument("--what-if", action="store_true",
                        help="also run a target patched to pause on 429 only")
    cli(parser, run)


if __name__ == "__main__":
    main()
