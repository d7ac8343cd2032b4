"""The sink of a custom endpoint with `batch`: `batch.size` records in one call.

Records wait until the batch is full or the SDK drains the sink (before it emits STATE); a
drain sends the partial batch first. Each record still gets its own results line, all with
the batch's outcome.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from target_aha.custom import Batch
from target_aha.endpoints import CUSTOM
from target_aha.errors import ConfigError, FatalAhaError, RecordError, RecordRejected
from target_aha.results import Outcome
from target_aha.shaping import build_batch_request, record_body
from target_aha.sinks import AhaSink

if TYPE_CHECKING:
    from target_aha.wire import Request


class CustomBatchSink(AhaSink):
    """A custom endpoint with `batch`: `batch.size` records per call, one outcome for all.

    Records wait in `_pending` (at most one batch) until the batch is full or the SDK
    drains the sink; each record still gets its own results line.
    """

    _pending: list[tuple[str | None, int, dict[str, Any]]]

    def setup(self) -> None:
        """Start with no batch pending (the SDK sets a sink up before its first record)."""
        super().setup()
        self._pending = []

    @property
    def batch(self) -> Batch:
        """The destination's batch settings (`sink_class` picks this sink only if it has some)."""
        custom = self.destination.custom
        if custom is None or custom.batch is None:
            raise ValueError(f"stream '{self.stream_name}' has no batch settings")
        return custom.batch

    @property
    def max_size(self) -> int:
        """The SDK drains a sink that is full: make that a whole number of batches."""
        size = self.batch.size
        return max(1, math.ceil(super().max_size / size)) * size

    def process_record(self, record: dict, context: dict) -> None:
        """Add the record to the batch; send the batch when it is full."""
        self._position += 1
        key = self.key_of(record)
        try:
            body = record_body(self.destination, record)
        except RecordError as exc:  # NaN/Infinity: this record only, before anything is sent
            where = f"stream '{self.stream_name}', record " + (
                f"key {key!r}" if key is not None else f"#{self._position}")
            self._reject(key, where, str(exc), None)
            return
        self._pending.append((key, self._position, body))
        if len(self._pending) >= self.batch.size:
            self._flush()

    def process_batch(self, context: dict) -> None:
        """Send the partial batch, then wait for everything (before the SDK emits STATE)."""
        self._flush()
        super().process_batch(context)

    def _flush(self) -> None:
        if not self._pending:
            return
        members, self._pending = self._pending, []
        keys = [key for key, _, _ in members]
        where = _batch_where(self.stream_name, members)
        try:
            request = build_batch_request(
                self.destination, [body for _, _, body in members], self.run.disable_mailers
            )
        except ConfigError as exc:
            for key in keys:
                self.run.results.write(self._line(key, "rejected", error=str(exc)))
            raise ConfigError(f"{where[0].upper()}{where[1:]}: {exc}") from exc
        order: list[Hashable] = [("key", self.stream_name, k) for k in keys if k is not None]
        if request.method != "POST":
            order.append(("object", request.origin, request.path))
        self.run.dispatcher.submit(
            functools.partial(self._deliver_batch, request, keys, where), order
        )

    def _deliver_batch(self, request: Request, keys: list[str | None], where: str) -> None:
        try:
            answer = self.run.sender.send(request, where)
        except RecordRejected as exc:
            self._notify(request, keys, exc.response)
            for key in keys:
                self.run.results.write(
                    self._line(key, "rejected", http_status=exc.status, error=str(exc))
                )
            if self.run.on_record_error == "fail":
                raise FatalAhaError(
                    f"Batch rejected ({where}): {exc}. Fix the records or the stream's "
                    "entry in `streams`, or set on_record_error: skip to record the "
                    "records of such batches as rejected in the results file and go on."
                ) from exc
            return
        self._notify(request, keys, answer)
        for key in keys:
            if answer.simulated:
                self.run.results.write(self._line(key, "dry_run"))
            else:
                self.run.results.write(self._line(key, "succeeded", http_status=answer.status))

    def _line(self, key: str | None, status: str, **fields: Any) -> Outcome:
        return Outcome(self.stream_name, key, CUSTOM, CUSTOM, status, **fields)


def _batch_where(stream: str, members: list[tuple[str | None, int, dict[str, Any]]]) -> str:
    """`stream 's', batch of 3 records #4-#6 (keys 'a', 'b', 'c')` for messages."""
    keys = [key for key, _, _ in members if key is not None]
    shown = ", ".join(repr(k) for k in keys[:5]) + (f" +{len(keys) - 5} more" if keys[5:] else "")
    first, last = members[0][1], members[-1][1]
    return (
        f"stream '{stream}', batch of {len(members)} records #{first}-#{last}"
        + (f" (keys {shown})" if keys else "")
    )
