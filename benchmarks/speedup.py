"""Speedup: how much max_concurrency 8 gains over sending one request at a time.

2,000 feature creates against a sandbox that waits 50 ms before each answer and has no rate
limit; the target's limits are set far out of the way. Target: wall(1) / wall(8) >= 6
(with --quick, the same ratio of the sending phases, start-up left out).
"""

from __future__ import annotations

import argparse

from benchlib import (
    HIGH_RATE,
    Figure,
    Measured,
    SandboxProcess,
    cli,
    feature_config,
    load_note,
    rate_of,
    run_target,
    workdir,
    write_input,
)


def run(*, quick: bool = False, records: int | None = None, latency_ms: float = 50,
        concurrency: int = 8) -> list[Figure]:
    """Both runs; the figure is wall(1) / wall(concurrency).

    `quick` (200 records) holds the ratio of the sending phases instead (first to last arrival
    at the sandbox, plus one latency): at that size start-up, about a second in each run,
    would decide the wall ratio rather than concurrency."""
    records = records or (200 if quick else 2000)
    levels = (1, concurrency)

    print(f"speedup: {records} x create_feature, latency {latency_ms:g} ms, no rate "
          f"limit; {load_note()}")
    walls: dict[int, Measured] = {}
    sending: dict[int, float] = {}
    with workdir("speedup") as tmp:
        input_path = write_input(tmp / "input.jsonl", records)
        with SandboxProcess(tmp, latency_ms=latency_ms) as sandbox:
            for level in levels:
                sandbox.reset()
                config = feature_config(
                    sandbox.base_url, max_requests_per_second=HIGH_RATE,
                    max_requests_per_minute=HIGH_RATE * 60, max_concurrency=level,
                )
                measured = run_target(config, input_path, tmp, f"c{level}").check(
                    f"target-aha (max_concurrency {level})")
                walls[level] = measured
                rate, span = rate_of(sandbox.arrivals())
                sending[level] = span + latency_ms / 1000
                ideal = records * latency_ms / 1000 / level
                print(
                    f"  max_concurrency {level}: wall {measured.wall:.2f} s, {rate:.1f} req/s "
                    f"over {span:.2f} s of arrivals ({1000 / rate * level:.1f} ms per request "
                    f"per sender; latency alone would be {ideal:.2f} s); CPU "
                    f"{measured.cpu:.2f} s",
                    flush=True,
                )
    one, many = walls[levels[0]].wall, walls[levels[1]].wall
    sent_one, sent_many = sending[levels[0]], sending[levels[1]]
    print(f"speedup: wall {one:.2f} s with max_concurrency 1 / {many:.2f} s with "
          f"max_concurrency {levels[1]} = {one / many:.2f}x; sending {sent_one:.2f} s / "
          f"{sent_many:.2f} s = {sent_one / sent_many:.2f}x")
    if quick:
        figure = Figure("speedup", f"sending time, max_concurrency 1 / {levels[1]}",
                        sent_one / sent_many, ">=", 6)
    else:
        figure = Figure("speedup", f"wall, max_concurrency 1 / {levels[1]}", one / many,
                        ">=", 6)
    print(figure)
    return [figure]


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="200 records; the ratio of sending times")
    parser.add_argument("--records", type=int, help="creates per run (default 2000)")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=8, help="compared with 1")
    cli(parser, run)


if __name__ == "__main__":
    main()
