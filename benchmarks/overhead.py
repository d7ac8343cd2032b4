"""Overhead: CPU that target-aha spends per record beyond what any Singer SDK target spends.

100,000 feature records in `dry_run: true` (stdout and stderr discarded): CPU seconds (user +
sys) of target-aha / CPU seconds of benchmarks/null_target.py (an SDK target whose sink does
nothing) on the same input. Target: <= 1.5, aim < 1.0.

Then, on a smaller input, a cProfile of target-aha grouped by where the time goes, and
"what if" runs that patch one cost away in the child process (target_aha/ is not changed),
so each suggestion comes with a measured saving. Variants that need a package that is not
installed (msgspec) are skipped with a note. The what-ifs that paid off (a compiled validator,
results lines without deep copies, cached URL pieces, a fast path in shaping) are now in
target_aha/ itself.
"""

from __future__ import annotations

import argparse
import cProfile
import decimal
import importlib.util
import json
import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import (
    EXECUTABLE,
    Figure,
    Measured,
    cli,
    feature_config,
    load_note,
    measure,
    verdict,
    workdir,
    write_input,
)

HERE = Path(__file__).resolve()
NULL_TARGET = HERE.parent / "null_target.py"

# -- the child side: run target-aha in this process, with patches ----------------------------


def _patch_no_print() -> None:
    """The dry run builds nothing and prints nothing (an upper bound of the printing cost)."""
    from target_aha import transport  # noqa: PLC0415
    from target_aha.wire import Answer  # noqa: PLC0415

    transport.DryRunTransport.send = lambda self, call: Answer(200, {}, "", simulated=True)  # type: ignore[method-assign]


def _patch_msgspec() -> None:
    """Parse input lines with msgspec (as singer_sdk.contrib.msgspec does), keeping Decimals."""
    import msgspec  # noqa: PLC0415

    from target_aha import input_errors, target  # noqa: PLC0415

    decoder = msgspec.json.Decoder(float_hook=decimal.Decimal)

    class MsgspecCountingReader(input_errors.CountingReader):
        def deserialize_json(self, line: str) -> dict:
            self.line_number += 1
            try:
                return decoder.decode(line)
            except msgspec.DecodeError:
                self.line_number -= 1
                return super().deserialize_json(line)  # the readable error

    target.TargetAha.message_reader_class = MsgspecCountingReader


PATCHES: dict[str, tuple[Callable[[], None], str | None, str]] = {
    "no-print": (_patch_no_print, None, "dry run prints nothing (bound on printing cost)"),
    "msgspec": (_patch_msgspec, "msgspec", "msgspec JSON reader"),
}


def child(argv: list[str]) -> None:
    """`overhead.py --child PATCHES [--profile FILE] --config C`: target-aha, patched."""
    patches, rest = argv[0], argv[1:]
    profile_to = None
    if rest[:1] == ["--profile"]:
        profile_to, rest = rest[1], rest[2:]
    for name in filter(None, patches.split(",")):
        PATCHES[name][0]()
    from target_aha.target import TargetAha  # noqa: PLC0415

    sys.argv = ["target-aha", *rest]
    profiler = cProfile.Profile() if profile_to else None
    if profiler:
        profiler.enable()
    try:
        TargetAha.cli()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    finally:
        if profiler and profile_to:
            profiler.disable()
            profiler.dump_stats(profile_to)
    sys.exit(code)


# -- the parent side ---------------------------------------------------------------------------


def rounds(commands: dict[str, list[str]], input_path: Path, tmp: Path,
           repeat: int) -> dict[str, list[Measured]]:
    """Each command once per round, `repeat` rounds: interleaved, so that whatever else the
    machine is doing meanwhile spreads over all of them. Callers take the least CPU."""
    runs: dict[str, list[Measured]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            runs[name].append(measure(command, input_path, cwd=tmp).check(name))
    return runs


def least(runs: list[Measured]) -> Measured:
    """The run least disturbed by the rest of the machine."""
    return min(runs, key=lambda m: m.cpu)


def spread(runs: list[Measured]) -> str:
    """`runs 6.43, 8.95 s` for the detail lines."""
    return "runs " + ", ".join(f"{m.cpu:.2f}" for m in runs) + " s"


GROUPS: list[tuple[str, str, str]] = [
    # (label, file suffix, function): inclusive time of that function
    ("read + JSON-parse lines (SDK reader)", "target_aha/input_errors.py", "deserialize_json"),
    ("schema validation (fastjsonschema)", "target_aha/validation.py", "validate"),
    ("date parsing (SDK _parse_timestamps)", "singer_sdk/sinks/core.py",
     "_parse_timestamps_in_record"),
    ("shaping: param_values", "target_aha/shaping.py", "param_values"),
    ("shaping: build_request (to_json_value, fill_path)", "target_aha/shaping.py",
     "build_request"),
    ("dry-run printing (DryRunTransport.send)", "target_aha/transport.py", "send"),
    ("results bookkeeping (Results.write)", "target_aha/results.py",
     "write"),
    ("SDK per-record total (_process_record_message)", "singer_sdk/target_base.py",
     "_process_record_message"),
    ("whole input loop (process_lines)", "target_aha/input_errors.py", "process_lines"),
]


def profile_groups(path: Path, records: int) -> list[tuple[str, float]]:
    """Inclusive seconds of the functions in GROUPS, from a cProfile dump."""
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
        for label, suffix, name in GROUPS:
            if func == name and file.endswith(suffix):
                found[label] = found.get(label, 0.0) + cumulative
    total = sum(entry[2] for entry in stats.values())
    rows = [(label, found.get(label, 0.0)) for label, _, _ in GROUPS]
    return [*rows, ("everything (profiled, incl. start-up)", total)]


def top_functions(path: Path, count: int) -> list[tuple[str, float]]:
    """The functions with the most own time."""
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return [(f"{Path(file).name}:{line} {func}", values[2])
            for (file, line, func), values in rows]


def run(*, quick: bool = False, records: int | None = None, profile_records: int = 20_000,
        repeat: int = 2, no_profile: bool = False, no_what_if: bool = False) -> list[Figure]:
    """The ratio runs, then (unless told) the profile and the what-ifs, which print only; the
    figure is target-aha's CPU / the null target's. `quick`: 20,000 records, no profile."""
    records = records or (20_000 if quick else 100_000)
    py = sys.executable

    print(f"overhead: {records} records, dry_run, output discarded; CPU = user + sys of the "
          f"child, least of {repeat} interleaved runs; {load_note()}")
    with workdir("overhead") as tmp:
        config = tmp / "config.json"
        config.write_text(json.dumps(feature_config(dry_run=True)))
        input_path = write_input(tmp / "input.jsonl", records)
        runs = rounds({
            "null target": [py, str(NULL_TARGET), "--config", str(config)],
            "target-aha": [EXECUTABLE, "--config", str(config)],
        }, input_path, tmp, repeat)
        null, aha = least(runs["null target"]), least(runs["target-aha"])
        startup = measure([EXECUTABLE, "--about"], input_path, cwd=tmp)
        null_startup = measure([py, str(NULL_TARGET), "--about"], input_path, cwd=tmp)
        ratio = aha.cpu / null.cpu
        per_record = (aha.cpu - null.cpu) / records * 1e6
        print(f"  null target: CPU {null.cpu:.2f} s (user {null.user:.2f}, sys "
              f"{null.system:.2f}), wall {null.wall:.2f} s, start-up {null_startup.cpu:.2f} s; "
              f"{spread(runs['null target'])}")
        print(f"  target-aha:  CPU {aha.cpu:.2f} s (user {aha.user:.2f}, sys "
              f"{aha.system:.2f}), wall {aha.wall:.2f} s, start-up {startup.cpu:.2f} s; "
              f"{spread(runs['target-aha'])}")
        print(f"  target-aha spends {per_record:.0f} us more CPU per record than the null "
              f"target ({(null.cpu - null_startup.cpu) / records * 1e6:.0f} us/record)")
        if not (quick or no_profile):
            profile(tmp, config, profile_records, not no_what_if, repeat)
    print(f"overhead: {records} records in dry run, CPU {aha.cpu:.2f} s / {null.cpu:.2f} s "
          f"for a do-nothing SDK target = {ratio:.2f} (aim < 1.0: {verdict(ratio < 1.0)})")
    figure = Figure("overhead", "CPU of target-aha / of a do-nothing SDK target", ratio, "<=",
                    1.5)
    print(figure)
    return [figure]


def main() -> None:
    """Run the benchmark from the command line (or be the patched child)."""
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 records, no profile")
    parser.add_argument("--records", type=int, help="records for the ratio (default 100000)")
    parser.add_argument("--profile-records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; least CPU counts")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-what-if", action="store_true")
    cli(parser, run)


def profile(tmp: Path, config: Path, records: int, what_ifs: bool, repeat: int) -> None:
    """cProfile of target-aha by cost group, then the what-if variants' CPU ratios."""
    py = sys.executable
    input_path = write_input(tmp / "profile-input.jsonl", records)
    dump = tmp / "target-aha.prof"
    measure([py, str(HERE), "--child", "", "--profile", str(dump), "--config", str(config)],
            input_path, cwd=tmp).check("profiled target-aha")
    print(f"  where target-aha's time goes (cProfile, {records} records; inclusive seconds, "
          "profiler overhead included; groups overlap):")
    groups = profile_groups(dump, records)
    total = groups[-1][1]
    for label, seconds in groups:
        print(f"    {seconds:6.2f} s {seconds / total:5.0%} {seconds / records * 1e6:6.0f} us/rec"
              f"  {label}")
    print("  most own time:")
    for name, seconds in top_functions(dump, 8):
        print(f"    {seconds:6.2f} s  {name}")
    if not what_ifs:
        return
    available = [name for name, (_, module, _) in PATCHES.items()
                 if module is None or importlib.util.find_spec(module) is not None]
    variants = [("as is", ""), *((PATCHES[n][2], n) for n in available)]
    ours = [n for n in available if PATCHES[n][1] is None and n != "no-print"]
    fixes = [n for n in available if n != "no-print"]
    variants.append(("target-aha's own code only: " + ", ".join(ours), ",".join(ours)))
    if fixes != ours:
        variants.append(("all of: " + ", ".join(fixes), ",".join(fixes)))
    if "no-print" in available:
        variants.append(("all of the above, no printing", ",".join(available)))
    commands = {"null target": [py, str(NULL_TARGET), "--config", str(config)]}
    for label, patches in variants:
        commands[label] = [py, str(HERE), "--child", patches, "--config", str(config)]
    runs = rounds(commands, input_path, tmp, repeat)
    null = least(runs.pop("null target"))
    print(f"  what if ({records} records; CPU ratio to the null target's {null.cpu:.2f} s; "
          f"least of {repeat} interleaved runs each):")
    for label, measured in runs.items():
        best = least(measured)
        print(f"    {best.cpu / null.cpu:5.2f}  CPU {best.cpu:5.2f} s  {label}  "
              f"({spread(measured)})")
    missing = [PATCHES[n][1] for n in PATCHES if n not in available]
    if missing:
        print(f"    (skipped, not installed: {', '.join(m for m in missing if m)}; "
              "`pip install msgspec` to measure it)")


if __name__ == "__main__":
    main()
