"""`meltano config test target-aha`: Meltano's loader test, answered with `--test`'s checks.

Meltano tests a loader by piping it a SCHEMA, a RECORD and a STATE of a stream named
`meltano_test_stream` and expecting it to write them (meltano/core/plugin_test_service.py); it
fails the test on a non-zero exit or on any output line containing "error" or "exception".
Writing that record would put a test object into the user's Aha! roadmap, and the stream has no
destination anyway. So a stream of that name with no `streams` entry is answered instead with the
read-only checks of `--test` (the API key, the configured streams' fixed containers): their lines
are logged, a pass ends the run normally, and a failure stops it with `--test`'s summary.
"""

from __future__ import annotations

import typing as t

from singer_sdk.sinks import RecordSink

from target_aha.errors import ConfigError
from target_aha.redact import REDACTOR

if t.TYPE_CHECKING:
    from singer_sdk import Target

    from target_aha.client import AhaClient
    from target_aha.destination import Destination
    from target_aha.ratelimit import RateGate

MELTANO_TEST_STREAM = "meltano_test_stream"
"""The stream `meltano config test` sends to a loader."""


def is_meltano_test(stream: str, configured: t.Collection[str]) -> bool:
    """Whether a stream is Meltano's test stream (unless the user gave it a destination)."""
    return stream == MELTANO_TEST_STREAM and stream not in configured


class MeltanoTestSink(RecordSink):
    """Runs `--test`'s checks when Meltano's test stream starts; its records are not written."""

    def __init__(self, target: Target, stream_name: str, schema: dict,
                 key_properties: t.Sequence[str] | None, *, client: AhaClient, gate: RateGate,
                 destinations: t.Mapping[str, Destination]) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        from target_aha.preflight import preflight  # noqa: PLC0415 - only this test checks

        lines: list[str] = []
        target.logger.info(
            "%s is Meltano's loader test (meltano config test): answering it with the "
            "read-only checks of --test; nothing is written to Aha!", stream_name,
        )

        def emit(line: str) -> None:
            lines.append(REDACTOR(line))
            target.logger.info("%s", lines[-1])

        if not preflight(client, gate, dict(destinations), emit):
            raise ConfigError(
                f"Meltano's loader test failed: {lines[-1]} "
                "(`meltano invoke target-aha --test` shows the same checks.)"
            )

    def process_record(self, record: dict, context: dict) -> None:
        """Meltano's test record is not sent anywhere: the checks were the test."""
