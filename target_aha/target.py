"""`TargetAha`: the settings, which sink serves a stream, and the run's shared machinery."""

from __future__ import annotations

import atexit
import json
import re
import sys
import threading
import typing as t
from dataclasses import dataclass, field
from importlib.metadata import version

import click
from singer_sdk import Target
from singer_sdk.exceptions import (
    ConfigValidationError,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.io_base import SingerReader
from singer_sdk.plugin_base import JSONSchemaValidator, _format_validation_error
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from target_aha import redact, settings
from target_aha.client import AhaClient, check_header, parse_http_url
from target_aha.destination import Destination, parse_webhook_url
from target_aha.dispatch import Dispatcher, DryRunSender, RateGate, Sender
from target_aha.errors import ConfigError, InputError, SchemaMismatch, TargetAhaError
from target_aha.ledger import Ledger, open_ledger
from target_aha.meltano_test import MeltanoTestSink, is_meltano_test
from target_aha.preflight import preflight
from target_aha.progress import Progress
from target_aha.redact import REDACTOR
from target_aha.results import Results
from target_aha.settings import SETTINGS
from target_aha.sinks import AhaSink, sink_class
from target_aha.webhook import Webhook

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink

VERSION = version("target-aha")



SECRET_SETTINGS = tuple(
    name for name, spec in SETTINGS["properties"].items() if spec.get("secret")
)
"""Settings whose values are never shown, not even by config validation."""
DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
"""What `subdomain` must be: one DNS label (it becomes https://{subdomain}.aha.io)."""


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
        TargetCapabilities.VALIDATE_RECORDS,
    ]

    def __init__(self, **kwargs: t.Any) -> None:
        self._destinations: dict[str, Destination] = {}
        self._last_state: dict | None = None
        super().__init__(**kwargs)
        self._check_settings()
        self.dry_run = bool(self.config.get("dry_run"))
        self.run = self._start_run()
        # A run that stops early (an error before the end of its input) never reaches
        # process_endofpipe: its files are still released before the interpreter exits, so no
        # `ResourceWarning: unclosed file` is printed (Meltano shows them). _end_run is
        # idempotent, so a run that ended normally is not harmed.
        atexit.register(self._end_run)
        self.progress = Progress(self.number("progress_interval_seconds"), self.run.figures)
        self._MAX_RECORD_AGE_IN_MINUTES = self.number("state_interval_seconds") / 60

    @classproperty
    def _env_var_config(cls) -> dict[str, t.Any]:  # noqa: N805 - the SDK's classproperty
        """TARGET_AHA_* variables, numbers read without the SDK's `int(text)` traceback."""
        cls.append_builtin_config(cls.config_jsonschema)
        return settings.environment_config(cls.config_jsonschema, cls._env_var_prefix)

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

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """The SDK's validation, after the secrets are known to the redactor.

        A secret setting of the wrong type is reported here, by name only: the SDK's message
        would quote the value. An unknown setting, one target-aha refuses, or a rate with a
        fraction is an error before the schema is checked.
        """
        for name in SECRET_SETTINGS:
            value = self._config.get(name)
            REDACTOR.add(value)
            if value is not None and not isinstance(value, str):
                raise ConfigError(
                    f"{name} must be a string (the value given is a "
                    f"{type(value).__name__}; it is not shown because it is a secret). "
                    "Quote it in the configuration."
                )
        REDACTOR.add_url(self._config.get("ledger_path"))
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        settings.check_names(self._config, schema)
        settings.check_numbers(self._config, schema)
        # The SDK's validation (which also fills in defaults), seconds with a fraction allowed.
        lenient = settings.validation_schema(schema)
        errors = [_format_validation_error(e)
                  for e in JSONSchemaValidator(lenient).iter_errors(self._config)]
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
            raise ConfigError(settings.missing_api_key(self._env_var_prefix))
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

    def _start_run(self) -> Run:
        config = self.config
        results = Results(config.get("results_path"))
        try:
            ledger = open_ledger(
                config["ledger_path"], dry_run=self.dry_run, pool_size=config["max_concurrency"]
            )
        except BaseException:  # the run never starts: its results file is not left open
            results.close()
            raise
        if not config["ledger_path"]:
            self.logger.warning(
                'ledger_path is "": upsert is off, so every run creates its records again '
                "(re-runs and retries after a failure will duplicate objects in Aha!)."
            )
        client = AhaClient(
            self.base_url,
            config.get("api_key") or "",
            self.user_agent,
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
        """The template's sink class; an unmapped stream is an error at its SCHEMA.

        Meltano's test stream, unmapped, gets the sink that answers it with `--test`'s checks.
        """
        if is_meltano_test(stream_name, self._destinations):
            return MeltanoTestSink
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
        """Run the CLI; errors written for users are printed without a traceback.

        Every log line goes through the redactor (installed here, once the SDK's logging is
        set up), and so does the traceback of an error nobody worded.
        """
        redact.install()
        threading.excepthook = _log_thread_error
        try:
            if test:
                cls._preflight(kwargs.get("config"))
            super().invoke(*args, **kwargs)
        except TargetAhaError as exc:
            cls.logger.error("%s", REDACTOR(str(exc)))
            sys.stderr.flush()
            sys.exit(1)
        except (ConfigValidationError, click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # the SDK and click print these themselves (through the redacted log)
        except Exception as exc:  # shown redacted, instead of the raw traceback
            sys.stderr.flush()
            sys.stderr.write(REDACTOR.traceback(exc))
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
            passed = preflight(
                target.run.sender.client, target.destinations(), lambda line: print(REDACTOR(line))
            )
        finally:
            target._end_run()
        sys.exit(0 if passed else 1)


def _log_thread_error(args: threading.ExceptHookArgs) -> None:
    """An error that escapes a thread is logged (redacted), not printed raw by Python."""
    if args.exc_value is not None:
        TargetAha.logger.error(
            "Unexpected error in thread %s", args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )
