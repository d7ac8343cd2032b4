"""`TargetAha`: the settings, which destination serves a stream, and the sinks that load it."""

from __future__ import annotations

import atexit
import typing as t
from collections import Counter

from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.mapper import RemoveRecordTransform

from target_aha import config_checks, settings
from target_aha.batch_sink import CustomBatchSink
from target_aha.client import ANSWER_LIMIT, AhaClient
from target_aha.commands import VERSION, CommandLine
from target_aha.destination import Destination
from target_aha.input_errors import CountingReader, NoSchemaYet, worded
from target_aha.maps import guard, guard_mapper
from target_aha.meltano_test import MeltanoTestSink, is_meltano_test
from target_aha.messages import json_kind
from target_aha.references import check_references, referenced
from target_aha.sdk_compat import schema_errors
from target_aha.send_test import ShowingTransport
from target_aha.settings import SETTINGS
from target_aha.sinks import AhaSink
from target_aha.state import StatePolicy
from target_aha.summary import log_summary
from target_aha.transport import DryRunTransport, Transport

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink

    from target_aha.ratelimit import RateGate
    from target_aha.run import Run

def sink_class(destination: Destination) -> type[AhaSink]:
    """The sink class that serves a destination: a batched custom endpoint's collects batches."""
    custom = destination.custom
    return CustomBatchSink if custom is not None and custom.batch is not None else AhaSink


class TargetAha(CommandLine):
    """Writes the records of any Singer tap into Aha!."""

    name = "target-aha"
    config_jsonschema = SETTINGS
    default_sink_class = AhaSink
    message_reader_class = CountingReader
    capabilities: t.ClassVar = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,  # the SDK's JSON log formatter, for Meltano
        TargetCapabilities.VALIDATE_RECORDS,
    ]

    def __init__(self, **kwargs: t.Any) -> None:
        """Check the settings; nothing is opened (no file, no thread) until a sink needs the
        run (`open_run`), so `--test` and tools that only build the target write nothing."""
        self._destinations: dict[str, Destination] = {}
        self._positions: t.Counter[str] = Counter()  # RECORD messages read, per input stream
        self._run: Run | None = None
        super().__init__(**kwargs)
        # Sinks are drained one after the other in the main thread (they all wait on the one
        # dispatcher anyway), so a signal can always unwind a drain.
        self.max_parallelism = 1
        self._check_settings()
        self.dry_run = bool(self.config.get("dry_run"))
        self._verify_first = bool(self.config.get("verify_ledger"))
        self.state_policy = StatePolicy(dry_run=self.dry_run)
        self.state_every(self.number("state_interval_seconds"))

    # Settings

    @classmethod
    def environment_settings(cls) -> dict[str, t.Any]:
        """TARGET_AHA_* variables, numbers read without the SDK's `int(text)` traceback."""
        cls.append_builtin_config(cls.config_jsonschema)
        return settings.environment_config(cls.config_jsonschema, cls.env_var_prefix())

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """The SDK's settings, minus those target-aha refuses (`settings.REFUSED`)."""
        super().append_builtin_config(config_jsonschema)
        for name in settings.REFUSED:
            config_jsonschema["properties"].pop(name, None)

    def number(self, setting: str) -> float:
        """A numeric setting as a float (the SDK reads JSON numbers with a fraction as Decimal)."""
        return float(self.config[setting])

    @property
    def user_agent(self) -> str:
        """The User-Agent header: the user_agent setting, the default with the version added."""
        return settings.user_agent(self.config["user_agent"], VERSION)

    @property
    def base_url(self) -> str:
        """The API root from base_url or subdomain."""
        return self.config.get("base_url") or f"https://{self.config['subdomain']}.aha.io/api/v1"

    def validate_settings(self, config: dict[str, t.Any], *, raise_errors: bool) -> list[str]:
        """The SDK's validation (which also fills in defaults), after target-aha's own checks
        (`config_checks.check_given`), seconds with a fraction allowed."""
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        config_checks.check_given(config, schema)
        errors = schema_errors(settings.validation_schema(schema), config)
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors, schema=schema)
        return errors

    def _check_settings(self) -> None:
        """What JSON Schema cannot say (`config_checks.check_combined`), and every stream's
        entry resolved to its destination."""
        config_checks.check_combined(self.config, self.base_url, self.user_agent,
                                     self.env_var_prefix())
        streams = self.config.get("streams") or {}
        for stream, entry in streams.items():
            self._destinations[stream] = Destination.from_entry(stream, entry, self.base_url)
        check_references(self._destinations, bool(self.config.get("ledger_path")))

    def client(self, *, dry_run: bool = False) -> AhaClient:
        """The HTTP client of the account the settings name (printing only, for a dry run)."""
        # The real transport (its sessions and watchdog) is imported by what sends: `--about`
        # and `--help` start without it, as without the run's other machinery (open_run).
        from target_aha.http_transport import HttpTransport  # noqa: PLC0415

        transport: Transport = (
            DryRunTransport() if dry_run
            else HttpTransport(self.number("request_timeout"), ANSWER_LIMIT)
        )
        if self.send_test is not None:  # `--send-test` shows each request and its answer
            transport = ShowingTransport(transport)
        return AhaClient(
            self.base_url, self.config.get("api_key") or "", self.user_agent, transport
        )

    def gate(self) -> RateGate:
        """The rate gate of the budget the settings name."""
        from target_aha.ratelimit import RateGate  # noqa: PLC0415 - what sends needs it

        return RateGate(
            self.number("max_requests_per_second"), self.number("max_requests_per_minute")
        )

    # Destinations and sinks

    def destinations(self) -> dict[str, Destination]:
        """The destinations of the streams configured in `streams`."""
        return dict(self._destinations)

    def destination_for(self, stream: str) -> Destination:
        """The destination of a stream: its `streams` entry, or the template it is named after."""
        if stream not in self._destinations:
            self._destinations[stream] = Destination.from_entry(stream, None)
        return self._destinations[stream]

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """The sink class of a stream; an unmapped stream is an error at its SCHEMA.

        Meltano's test stream, unmapped, gets the sink that answers it with `--test`'s checks.
        """
        if is_meltano_test(stream_name, self._destinations):
            return MeltanoTestSink
        return sink_class(self.destination_for(stream_name))

    def create_sink(
        self, stream_name: str, schema: dict, key_properties: t.Sequence[str] | None
    ) -> Sink:
        """A sink handed the run and the stream's destination (opening the run if needed)."""
        if is_meltano_test(stream_name, self._destinations):
            # Real reads even in a dry run, under the budget; no run is opened for it.
            return MeltanoTestSink(self, stream_name, schema, key_properties,
                                   client=self.client(), gate=self.gate(),
                                   destinations=self.destinations())
        destination = self.destination_for(stream_name)
        run = self.open_run()
        if self._verify_first:  # `verify_ledger: true`: before the first record is sent
            self._verify_first = False
            from target_aha.verify import verify_before_load  # noqa: PLC0415

            verify_before_load(run)
        run.progress.start()  # a run with a stream to load has begun
        return sink_class(destination)(self, stream_name, schema, key_properties,
                                       run=run, destination=destination)

    def open_run(self) -> Run:
        """The run's results file, ledger and threads, opened when first needed."""
        if self._run is None:
            # The run's machinery (rate limiter, retries, ledger, thread pool) is imported
            # only by a run: `--about`, `--help` and `--test` start without it.
            from target_aha.run import open_run  # noqa: PLC0415

            self._run = open_run(self.config, self.client(dry_run=self.dry_run),
                                 f"target-aha/{VERSION}", referenced(self._destinations))
            # A run that stops early (an error before the end of its input) never reaches
            # process_endofpipe: its files are still released before the interpreter exits,
            # so no `ResourceWarning: unclosed file` is printed (Meltano shows them).
            atexit.register(self._run.close)
        return self._run

    def current_run(self) -> Run | None:
        """The run, if a sink opened it."""
        return self._run

    def end_run(self) -> None:
        """Release the run's threads and files (if it was opened; once)."""
        if self._run is not None:
            self._run.close()

    # Messages

    @property
    def line(self) -> int:
        """The number of the input line being handled (for messages)."""
        return t.cast(CountingReader, self.message_reader).line_number

    def setup_mapper(self) -> None:
        """The SDK's stream maps, guarded (`maps.guard_mapper`) so a failing one is worded."""
        super().setup_mapper()
        guard_mapper(self.mapper)

    def read_schema(self, message: dict, handle: t.Callable[[dict], None]) -> None:
        """Register the stream as the SDK does, then guard its stream maps (`maps.guard`)."""
        stream = message["stream"]
        with worded(lambda: self.line, "SCHEMA", stream=stream):
            handle(message)
        for stream_map in self.mapper.stream_maps[stream]:
            guard(stream_map)

    def read_activate_version(self, message: dict, handle: t.Callable[[dict], None]) -> None:
        """As the SDK (which ignores it for target-aha's sinks), once the stream is known."""
        with worded(lambda: self.line, "ACTIVATE_VERSION", stream=message["stream"]):
            if message["stream"] not in self.mapper.stream_maps:
                raise NoSchemaYet
            handle(message)

    def read_record(self, message: dict, handle: t.Callable[[dict], None]) -> None:
        """Hand the record to the SDK (maps, validation, the sink), or reject what is no object.

        A failing stream map, or a record that does not match its SCHEMA, stops the run naming
        the input line, the stream and the record (and the expression); a `record` that is
        null or not an object ends as a rejected results line under `on_record_error`, so
        that every record read has its line.
        """
        stream, record = message["stream"], message["record"]
        self._positions[stream] += 1
        if self.send_test is not None and not self.send_test.admit(stream):
            return  # `--send-test` sends each stream's first record only
        if not isinstance(record, dict):
            self._reject_unreadable(stream, record)
            return
        with worded(lambda: self.line, "RECORD", stream=stream,
                    where=lambda: self._record_where(stream, record)):
            handle(message)

    def _record_where(self, stream: str, record: dict) -> str:
        """`record #3 (key 'K-1')` of an input stream, the key as its SCHEMA names it."""
        maps = self.mapper.stream_maps.get(stream) or []
        fields = list(maps[0].raw_key_properties or []) if maps else []
        if stream in self._destinations and self._destinations[stream].key_property:
            fields = [t.cast(str, self._destinations[stream].key_property)]
        values = [record.get(f) for f in fields]
        key = "|".join(str(v) for v in values) if values and None not in values else None
        return f"record #{self._positions[stream]}" + (f" (key {key!r})" if key else "")

    def _reject_unreadable(self, stream: str, record: object) -> None:
        """Reject a RECORD whose `record` is not an object in every sink its stream feeds."""
        if stream not in self.mapper.stream_maps:
            self.assert_sink_exists(stream)
        kind = "null" if record is None else f"a JSON {json_kind(record)}"
        error = f'input line {self.line}: the RECORD\'s "record" is {kind}, not a JSON object'
        for stream_map in self.mapper.stream_maps[stream]:
            if not isinstance(stream_map, RemoveRecordTransform):
                sink = self.get_sink(stream_map.stream_alias)
                t.cast(AhaSink, sink).reject_unreadable(error)

    def emits_state(self, state: dict) -> bool:
        """STATE as `state.StatePolicy` says: once per new value, never in a dry run, and
        never while a record waits for its parent (it is emitted once they settled)."""
        if self.send_test is not None or (self._run is not None and self._run.deferred):
            return False
        return self.state_policy.emits(state)

    def process_endofpipe(self) -> None:
        """Settle everything, emit the last STATE, then release the run's threads and files.

        A run whose input had no stream still opens its results file (and says so in its
        summary). If settling fails, `load` first waits (bounded) for what is still in flight,
        so the results file must stay open until then: it closes the run, not this method.
        """
        run = self.open_run()
        run.settle_deferred()
        super().process_endofpipe()
        self.end_run()
        log_summary(self.logger, run.results, run.costs(), self.dry_run)
