"""Speedup: how much max_concurrency 8 gains over sending one request at a time.

2,000 feature creates against a sandbox that waits 50 ms before each answer and has no rate
limit; the target's limits are set far out of the way. Target: wall(1) / wall(8) >= 6.
"""

from __future__ import annotations

import argparse

from benchlib import (
    HIGH_RATE,
    Measured,
    SandboxProcess,
    feature_config,
    load_note,
    rate_of,
    run_target,
    verdict,
    workdir,
    write_input,
)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 records")
    parser.add_argument("--records", type=int, help="creates per run (default 2000)")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=8, help="compared with 1")
    args = parser.parse_args()
    records = args.records or (400 if args.quick else 2000)
    levels = (1, args.concurrency)

    print(f"speedup: {records} x create_feature, latency {args.latency_ms:g} ms, no rate "
          f"limit; {load_note()}")
    walls: dict[int, Measured] = {}
    with workdir("speedup") as tmp:
        input_path = write_input(tmp / "input.jsonl", records)
        with SandboxProcess(tmp, latency_ms=args.latency_ms) as sandbox:
            for level in levels:
                sandbox.reset()
                config = feature_config(
                    sandbox.base_url, max_requests_per_second=HIGH_RATE,
                    max_requests_per_minute=HIGH_RATE * 60, max_concurrency=level,
                )
                run = run_target(config, input_path, tmp, f"c{level}").check(
                    f"target-aha (max_concurrency {level})")
                walls[level] = run
                rate, span = rate_of(sandbox.arrivals())
                ideal = records * args.latency_ms / 1000 / level
                print(
                    f"  max_concurrency {level}: wall {run.wall:.2f} s, {rate:.1f} req/s over "
                    f"{span:.2f} s of arrivals ({1000 / rate * level:.1f} ms per request "
                    f"per sender; latency alone would be {ideal:.2f} s); CPU {run.cpu:.2f} s",
                    flush=True,
                )
    one, many = walls[levels[0]].wall, walls[levels[1]].wall
    ratio = one / many
    print(
        f"speedup: wall {one:.2f} s with max_concurrency 1 / {many:.2f} s with "
        f"max_concurrency {levels[1]} = {ratio:.2f}x (target >= 6: {verdict(ratio >= 6)})"
    )


if __name__ == "__main__":
    main()
