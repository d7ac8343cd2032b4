"""`TargetAha`: the settings, which sink serves a stream, and the run's shared machinery."""

from __future__ import annotations

import contextlib
import json
import sys
import typing as t
from dataclasses import dataclass, field
from importlib.metadata import version

import click
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import (
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.io_base import SingerReader
from singer_sdk.plugin_base import PluginBase
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from target_aha.client import AhaClient, check_http_url
from target_aha.destination import Destination, parse_webhook_url
from target_aha.dispatch import Dispatcher, DryRunSender, RateGate, Sender
from target_aha.errors import ConfigError, InputError, SchemaMismatch, TargetAhaError
from target_aha.ledger import Ledger, open_ledger
from target_aha.preflight import preflight
from target_aha.progress import Progress
from target_aha.results import Results
from target_aha.sinks import AhaSink, sink_class
from target_aha.webhook import Webhook

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink

VERSION = version("target-aha")

SETTINGS = th.PropertiesList(
    th.Property(
        "subdomain", th.StringType,
        description="Aha! account subdomain: `mycompany` for https://mycompany.aha.io. "
        "One of subdomain and base_url is required.",
    ),
    th.Property(
        "base_url", th.StringType,
        description="API root, default https://{subdomain}.aha.io/api/v1. For a custom "
        "domain or the local sandbox; plain http:// only for loopback hosts.",
    ),
    th.Property(
        "api_key", th.StringType, secret=True,
        description="Aha! API key or OAuth2 access token, sent as `Authorization: Bearer`. "
        "Required unless dry_run.",
    ),
    th.Property(
        "streams", th.ObjectType(additional_properties=True), default={},
        description="Stream name -> destination: {\"endpoint\": <template or custom>, "
        "parameters such as release_id (a literal or a {field} placeholder), key_property, "
        "exclude_attributes, request_headers, response_webhook_url, write_mode}. A custom "
        "endpoint takes method, url, content_format, wrap_key, allow_other_hosts, batch.",
    ),
    th.Property(
        "user_agent", th.StringType, default=f"target-aha/{VERSION}",
        description="User-Agent header sent to Aha!.",
    ),
    th.Property(
        "disable_mailers", th.BooleanType, default=True,
        description="Add disable_mailers=true to write requests so a bulk load does not "
        "e-mail watchers.",
    ),
    th.Property(
        "max_requests_per_second", th.NumberType(exclusive_minimum=0), default=20,
        description="Client-side rate limit, shared by all streams of the run.",
    ),
    th.Property(
        "max_requests_per_minute", th.NumberType(exclusive_minimum=0), default=300,
        description="Second client-side rate limit window, shared by all streams.",
    ),
    th.Property(
        "max_concurrency", th.IntegerType(minimum=1), default=8,
        description="Requests in flight at once.",
    ),
    th.Property(
        "request_timeout", th.NumberType(exclusive_minimum=0), default=60,
        description="Seconds for one HTTP request.",
    ),
    th.Property(
        "max_retries", th.IntegerType(minimum=0), default=8,
        description="Retries of one request on 429, 5xx, timeouts and connection errors.",
    ),
    th.Property(
        "on_record_error", th.StringType(allowed_values=["fail", "skip"]), default="fail",
        description="What a record Aha! rejects (400/404/422) does: stop the run (fail) or "
        "log it as rejected in the results and go on (skip).",
    ),
    th.Property(
        "results_path", th.StringType,
        description="JSON Lines file, appended to, with one line per record read.",
    ),
    th.Property(
        "ledger_path", th.StringType, default=".target-aha/ledger.sqlite",
        description="The key ledger (SQLite file or postgresql:// URL); empty turns it off.",
    ),
    th.Property(
        "response_webhook_url", th.StringType,
        description="POST each Aha! response here; a stream may override it.",
    ),
    th.Property(
        "dry_run", th.BooleanType, default=False,
        description="Send nothing to Aha!; print each request that would be sent on stderr.",
    ),
    th.Property(
        "state_interval_seconds", th.NumberType(exclusive_minimum=0), default=60,
        description="Settle all in-flight work and emit STATE at least this often.",
    ),
    th.Property(
        "progress_interval_seconds", th.NumberType(exclusive_minimum=0), default=30,
        description="Log a progress line (records read, requests sent and their rate, "
        "unchanged, rejected, 429s) this often.",
    ),
).to_dict()


@dataclass
class Run:
    """What every sink of one run shares: one sender, one dispatcher, results and ledger."""

    results: Results
    ledger: Ledger | None
    sender: Sender | DryRunSender
    dispatcher: Dispatcher
    disable_mailers: bool
    on_record_error: str
    dry_run: bool
    gate: RateGate | None = None
    read: int = 0
    webhook: Webhook = field(default_factory=lambda: Webhook(f"target-aha/{VERSION}"))

    def figures(self) -> dict[str, int]:
        """The counters a progress line shows."""
        counts = self.results.counts
        return {
            "read": self.read,
            "sent": self.sender.sent,
            "unchanged": counts["succeeded:unchanged"] + counts["dry_run:unchanged"],
            "rejected": counts["rejected"],
            "throttled": self.gate.throttled if self.gate else 0,
        }


EXPLAINED: dict[type[Exception], type[InputError]] = {
    cls: type(cls.__name__, (InputError, cls), {"__doc__": f"{cls.__name__}, worded for users."})
    for cls in (
        InvalidInputLine, MissingKeyPropertiesError, RecordsWithoutSchemaException, SchemaMismatch
    )
}
"""Input errors as the SDK names them, also `InputError`s so the CLI prints them plainly."""


class CountingReader(SingerReader):
    """The SDK's reader, counting lines so that input errors can say where they are."""

    line_number = 0

    def deserialize_json(self, line: str) -> dict:
        """Parse one line; bad JSON becomes an `InputError` naming the line."""
        self.line_number += 1
        try:
            return deserialize_json(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"Input line {self.line_number} is not valid JSON ({exc.msg} at column "
                f"{exc.colno}): {line[:200]!r}. target-aha reads Singer messages, one JSON "
                "object per line; check the tap's output."
            ) from exc

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, t.Callable[[dict], None]]
    ) -> t.Counter[str]:
        """Read the input; malformed input ends the run with a message naming the line."""
        try:
            return super().process_lines(file_input, callbacks)
        except tuple(EXPLAINED) as exc:
            explained = next(v for k, v in EXPLAINED.items() if isinstance(exc, k))
            raise explained(
                f"Input line {self.line_number} cannot be loaded: {str(exc).rstrip('.')}. "
                "Check the tap's "
                "output (every RECORD needs a SCHEMA before it, and must match it); nothing "
                "after this line was sent and no STATE was emitted for it."
            ) from exc


class TargetAha(Target):
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
        self._destinations: dict[str, Destination] = {}
        self._last_state: dict | None = None
        super().__init__(**kwargs)
        self._check_settings()
        self.dry_run = bool(self.config.get("dry_run"))
        self.run = self._start_run()
        self.progress = Progress(self.number("progress_interval_seconds"), self.run.figures)
        self._MAX_RECORD_AGE_IN_MINUTES = self.number("state_interval_seconds") / 60

    @classproperty
    def _env_var_config(cls) -> dict[str, t.Any]:  # noqa: N805 - the SDK's classproperty
        """TARGET_AHA_* variables as the SDK reads them, plus numbers with a fraction.

        singer-sdk 0.54 converts integer and boolean variables but leaves `number` ones as
        text, so TARGET_AHA_REQUEST_TIMEOUT=2.5 would fail validation.
        """
        config = PluginBase.__dict__["_env_var_config"].fget(cls)
        for name, schema in cls.config_jsonschema["properties"].items():
            types = schema.get("type")
            if isinstance(config.get(name), str) and "number" in (types or ()):
                with contextlib.suppress(ValueError):  # else validation names the setting
                    config[name] = float(config[name])
        return config

    def number(self, setting: str) -> float:
        """A numeric setting as a float (the SDK reads JSON numbers with a fraction as Decimal)."""
        return float(self.config[setting])

    @property
    def base_url(self) -> str:
        """The API root from base_url or subdomain."""
        return self.config.get("base_url") or f"https://{self.config['subdomain']}.aha.io/api/v1"

    def _check_settings(self) -> None:
        """What JSON Schema cannot say: required combinations, the URL, every stream entry."""
        config = self.config
        if not config.get("subdomain") and not config.get("base_url"):
            raise ConfigError(
                "Set subdomain (mycompany for https://mycompany.aha.io) or base_url "
                "(for a custom domain or the local sandbox)."
            )
        if not config.get("api_key") and not config.get("dry_run"):
            raise ConfigError(
                "Set api_key (an Aha! API key or OAuth2 token; in Meltano, "
                "TARGET_AHA_API_KEY) or set dry_run: true to only print the requests."
            )
        check_http_url(self.base_url, "base_url")
        parse_webhook_url(config.get("response_webhook_url"), "response_webhook_url")
        streams = config.get("streams") or {}
        for stream, entry in streams.items():
            self._destinations[stream] = Destination.from_entry(stream, entry, self.base_url)

    def _start_run(self) -> Run:
        config = self.config
        results = Results(config.get("results_path"))
        ledger = open_ledger(
            config["ledger_path"], dry_run=self.dry_run, pool_size=config["max_concurrency"]
        )
        if not config["ledger_path"]:
            self.logger.warning(
                'ledger_path is "": upsert is off, so every run creates its records again '
                "(re-runs and retries after a failure will duplicate objects in Aha!)."
            )
        client = AhaClient(
            self.base_url,
            config.get("api_key") or "",
            config["user_agent"],
            self.number("request_timeout"),
        )
        gate = None
        if self.dry_run:
            sender: Sender | DryRunSender = DryRunSender(client)
            dispatcher = Dispatcher(concurrency=0)
        else:
            gate = RateGate(
                self.number("max_requests_per_second"), self.number("max_requests_per_minute")
            )
            sender = Sender(client, gate, config["max_retries"])
            dispatcher = Dispatcher(concurrency=config["max_concurrency"])
        return Run(
            results, ledger, sender, dispatcher, config["disable_mailers"],
            config["on_record_error"], self.dry_run, gate,
        )

    def destinations(self) -> dict[str, Destination]:
        """The destinations of the streams configured in `streams`."""
        return dict(self._destinations)

    def destination_for(self, stream: str) -> Destination:
        """The destination of a stream: its `streams` entry, or the template it is named after."""
        if stream not in self._destinations:
            self._destinations[stream] = Destination.from_entry(stream, None)
        return self._destinations[stream]

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """The template's sink class; an unmapped stream is an error at its SCHEMA."""
        sink = sink_class(self.destination_for(stream_name))
        self.progress.start()  # a run with a stream to load has begun
        return sink

    def _process_state_message(self, message_dict: dict) -> None:
        """Keep the tap's STATE; settle and emit it if state_interval_seconds has passed."""
        super()._process_state_message(message_dict)
        self._handle_max_record_age()

    def _write_state_message(self, state: dict) -> None:
        """Emit STATE once per new value, never in a dry run (it must not move the bookmark)."""
        if not self.dry_run and state != self._last_state:
            self._last_state = state
            super()._write_state_message(state)

    def process_endofpipe(self) -> None:
        """Settle everything, emit the last STATE, then release the run's threads and files."""
        try:
            super().process_endofpipe()
        finally:
            self._end_run()
        self.logger.info("target-aha finished: %s", self.run.results.summary())

    def _end_run(self) -> None:
        self.progress.stop()
        self.run.dispatcher.close()
        self.run.webhook.close()
        self.run.results.close()
        if self.run.ledger is not None:
            self.run.ledger.close()

    @classmethod
    def get_singer_command(cls) -> click.Command:
        """The SDK's CLI plus `--test`, the pre-flight check."""
        command = super().get_singer_command()
        command.params.append(
            click.Option(
                ["--test"],
                is_flag=True,
                help="Check the API key and every configured stream's fixed containers "
                "(GET requests only; nothing is written to Aha!), print one line per check, "
                "and exit 0 only if all pass.",
            )
        )
        return command

    @classmethod
    def invoke(cls, *args: t.Any, test: bool = False, **kwargs: t.Any) -> None:
        """Run the CLI; errors written for users are printed without a traceback."""
        try:
            if test:
                cls._preflight(kwargs.get("config"))
            super().invoke(*args, **kwargs)
        except TargetAhaError as exc:
            cls.logger.error("%s", exc)
            sys.stderr.flush()
            sys.exit(1)

    @classmethod
    def _preflight(cls, config: t.Any) -> t.NoReturn:
        """`--test`: load and check the configuration, then run the checks; never returns."""
        target = cls(
            config=config.config if config else None,
            validate_config=True,
            parse_env_config=bool(config and config.parse_env),
        )
        try:
            passed = preflight(target.run.sender.client, target.destinations(), print)
        finally:
            target._end_run()
        sys.exit(0 if passed else 1)
