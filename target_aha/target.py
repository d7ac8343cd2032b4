"""`TargetAha`: the settings, which destination serves a stream, and the sinks that load it."""

from __future__ import annotations

import atexit
import re
import typing as t
from collections import Counter

from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.mapper import RemoveRecordTransform

from target_aha import settings
from target_aha.client import AhaClient, check_header, parse_http_url
from target_aha.commands import VERSION, CommandLine
from target_aha.destination import Destination, parse_webhook_url
from target_aha.errors import ConfigError
from target_aha.input_errors import CountingReader, NoSchemaYet, worded
from target_aha.maps import guard, guard_mapper
from target_aha.meltano_test import MeltanoTestSink, is_meltano_test
from target_aha.messages import json_kind
from target_aha.redact import REDACTOR
from target_aha.sdk_compat import schema_errors
from target_aha.settings import SETTINGS
from target_aha.sinks import AhaSink, sink_class
from target_aha.state import StatePolicy
from target_aha.summary import log_summary

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink

    from target_aha.run import Run

SECRET_SETTINGS = tuple(
    name for name, spec in SETTINGS["properties"].items() if spec.get("secret")
)
"""Settings whose values are never shown, not even by config validation."""
DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
"""What `subdomain` must be: one DNS label (it becomes https://{subdomain}.aha.io)."""


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
        """The SDK's validation, after the secrets are known to the redactor.

        A secret setting of the wrong type is reported here, by name only: the SDK's message
        would quote the value. An unknown setting, one target-aha refuses, or a rate with a
        fraction is an error before the schema is checked.
        """
        for name in SECRET_SETTINGS:
            value = config.get(name)
            REDACTOR.add(value)
            if value is not None and not isinstance(value, str):
                raise ConfigError(
                    f"{name} must be a string (the value given is a "
                    f"{type(value).__name__}; it is not shown because it is a secret). "
                    "Quote it in the configuration."
                )
        REDACTOR.add_url(config.get("ledger_path"))
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        settings.check_names(config, schema)
        settings.check_numbers(config, schema)
        # The SDK's validation (which also fills in defaults), seconds with a fraction allowed.
        errors = schema_errors(settings.validation_schema(schema), config)
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors, schema=schema)
        return errors

    def _check_settings(self) -> None:
        """What JSON Schema cannot say: required combinations, the URL, every stream entry."""
        config = self.config
        if not config.get("subdomain") and not config.get("base_url"):
            raise ConfigError(
                "Set subdomain (mycompany for https://mycompany.aha.io) or base_url "
                "(for a custom domain or the local sandbox)."
            )
        if not config.get("api_key") and not config.get("dry_run"):
            raise ConfigError(settings.missing_api_key(self.env_var_prefix()))
        api_key = config.get("api_key") or ""
        if any(not (" " <= c <= "~") for c in api_key):
            raise ConfigError(
                "api_key contains a line break or another control character, or a non-ASCII "
                "character (the key is not shown); copy the key again without the line "
                "break (a file read into TARGET_AHA_API_KEY often ends with one)."
            )
        check_header("User-Agent", self.user_agent, "user_agent")
        subdomain = config.get("subdomain")
        if not config.get("base_url") and not DNS_LABEL.fullmatch(subdomain or ""):
            raise ConfigError(
                f"subdomain {subdomain!r} is not an Aha! account name: it must be one DNS "
                "label (letters, digits and hyphens, at most 63, no hyphen first or last), "
                "mycompany for https://mycompany.aha.io; for another domain set base_url."
            )
        parse_http_url(self.base_url, "base_url")
        if "?" in self.base_url:  # even an empty one: every path would end up in the query
            raise ConfigError(
                "base_url has a ?query; give the API root only, such as "
                "https://mycompany.aha.io/api/v1."
            )
        parse_webhook_url(config.get("response_webhook_url"), "response_webhook_url")
        streams = config.get("streams") or {}
        for stream, entry in streams.items():
            self._destinations[stream] = Destination.from_entry(stream, entry, self.base_url)

    def client(self) -> AhaClient:
        """The HTTP client of the account the settings name."""
        return AhaClient(
            self.base_url,
            self.config.get("api_key") or "",
            self.user_agent,
            self.number("request_timeout"),
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
            client = self.open_run().sender.client
            return MeltanoTestSink(self, stream_name, schema, key_properties,
                                   client=client, destinations=self.destinations())
        destination = self.destination_for(stream_name)
        run = self.open_run()
        run.progress.start()  # a run with a stream to load has begun
        return sink_class(destination)(self, stream_name, schema, key_properties,
                                       run=run, destination=destination)

    def open_run(self) -> Run:
        """The run's results file, ledger and threads, opened when first needed."""
        if self._run is None:
            # The run's machinery (rate limiter, retries, ledger, thread pool) is imported
            # only by a run: `--about`, `--help` and `--test` start without it.
            from target_aha.run import open_run  # noqa: PLC0415

            self._run = open_run(self.config, self.client(), f"target-aha/{VERSION}")
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
        """STATE as `state.StatePolicy` says: once per new value, never in a dry run."""
        return self.state_policy.emits(state)

    def process_endofpipe(self) -> None:
        """Settle everything, emit the last STATE, then release the run's threads and files.

        A run whose input had no stream still opens its results file (and says so in its
        summary). If settling fails, `load` first waits (bounded) for what is still in flight,
        so the results file must stay open until then: it closes the run, not this method.
        """
        run = self.open_run()
        super().process_endofpipe()
        self.end_run()
        log_summary(self.logger, run.results, run.costs(), self.dry_run)
