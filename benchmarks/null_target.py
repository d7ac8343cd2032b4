"""A do-nothing Singer SDK target: the floor that overhead.py compares target-aha with.

It does what every SDK target does with a record (read and parse the line, validate it
against its schema, parse dates, count it, drain batches, emit STATE) and then nothing.
Run it as `python benchmarks/null_target.py --config c.json < input.jsonl`.
"""

from __future__ import annotations

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink


class NullSink(BatchSink):
    """Accepts every record and drops it."""

    def process_record(self, record: dict, context: dict) -> None:
        """Do nothing with the record."""

    def process_batch(self, context: dict) -> None:
        """Nothing was kept, so there is nothing to write."""


class NullTarget(Target):
    """Reads any streams and loads them nowhere; accepts (and ignores) any settings."""

    name = "target-null"
    config_jsonschema = th.PropertiesList(
        th.Property("ignored", th.StringType),
    ).to_dict() | {"additionalProperties": True}
    default_sink_class = NullSink


if __name__ == "__main__":
    NullTarget.cli()
