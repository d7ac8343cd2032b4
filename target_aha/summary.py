"""The end-of-run summary: what a user reads in the log when the run is over.

It must make a failure visible even when the exit code is 0 (`on_record_error: skip` turns
every rejection into a results line): each stream with its counts by status and operation,
the most common rejection reasons with one example each, what it cost in requests (retries,
429s, creates recovered after a lost answer), how long it took, and where the results file
is. A run, or a stream, whose every record was rejected is a warning.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from target_aha.results import Results

TOP_REASONS = 3
"""Rejection reasons shown, most common first (the results file has every record's error)."""
EXAMPLE_CHARS = 300
"""An example error is cut to this many characters in the log."""


@dataclass(frozen=True)
class Costs:
    """What the run spent, besides records: time and requests."""

    elapsed: float
    requests: int
    retries: int
    throttled: int


def log_summary(logger: logging.Logger, results: Results, costs: Costs, dry_run: bool) -> None:
    """Log the summary: INFO lines, and a WARNING when every record of the run (or of a
    stream) was rejected."""
    counts = results.counts
    total = counts["succeeded"] + counts["rejected"] + counts["dry_run"]
    what = "dry run" if dry_run else "run"
    streams = sorted(results.by_stream.items())
    if len(streams) == 1:  # one stream: its counts are the run's, on the first line
        tally = f"stream '{streams[0][0]}': {counts_line(counts)}"
    else:
        tally = counts_line(counts)
    if dry_run:
        spent = f"nothing sent ({costs.requests} requests printed on stderr)"
    else:
        spent = (f"{costs.requests} requests sent ({costs.retries} retries, {costs.throttled} "
                 f"x 429, {results.events['recovered']} creates recovered after a lost answer)")
    where = (f'results: {results.path} (lines with "run_id": "{results.run_id}")'
             if results.path else "no results file (set results_path for one line per record)")
    logger.info("target-aha finished %s %s in %.2f s: %s. %s; %s.", what, results.run_id,
                costs.elapsed, tally, spent, where)
    if len(streams) > 1:
        for stream, stream_counts in streams:
            logger.info("  stream '%s': %s", stream, counts_line(stream_counts))
    reasons = sorted(results.reasons.values(), key=lambda r: -r.count)
    for reason in reasons[:TOP_REASONS]:
        record = f"key {reason.key!r}" if reason.key is not None else "a record without key"
        logger.info("  rejected %d like this one (stream '%s', %s): %s", reason.count,
                    reason.stream, record, _cut(reason.error))
    if len(reasons) > TOP_REASONS:
        rest = sum(r.count for r in reasons[TOP_REASONS:])
        logger.info("  rejected %d more for %d other reasons", rest, len(reasons) - TOP_REASONS)
    rejected = counts["rejected"]
    if total and rejected == total:
        logger.warning(
            "Every record of this %s was rejected (%d of %d): nothing was written to Aha!. "
            "The reasons are above%s.", what, rejected, total,
            f" and in {results.path}" if results.path else "",
        )
        return
    for stream, stream_counts in sorted(results.by_stream.items()):
        if stream_counts["rejected"] and stream_counts["rejected"] == sum(
            stream_counts[s] for s in ("succeeded", "rejected", "dry_run")
        ):
            logger.warning("Every record of stream '%s' was rejected (%d): nothing of it was "
                           "written to Aha!.", stream, stream_counts["rejected"])


def _cut(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def counts_line(counts: Counter[str]) -> str:
    """`30 records; succeeded 28 (create 27, update 1); rejected 2 (attempted: create 2)`.

    A rejected record's operation is what was attempted, and says so: "rejected 50 (create
    50)" would read as fifty creations.
    """
    total = counts["succeeded"] + counts["rejected"] + counts["dry_run"]
    parts = [f"{total} record{'' if total == 1 else 's'}"]
    for status in ("succeeded", "rejected", "dry_run"):
        if counts[status]:
            ops = ", ".join(
                f"{k.split(':', 1)[1]} {v}"
                for k, v in sorted(counts.items())
                if k.startswith(status + ":")
            )
            parts.append(f"{status} {counts[status]} ("
                         + ("attempted: " if status == "rejected" else "") + f"{ops})")
    return "; ".join(parts)
