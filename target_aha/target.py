"""`TargetAha`: the settings, which sink serves a stream, and the run's shared machinery."""

from __future__ import annotations

import atexit
import json
import logging
import re
import signal
import sys
import threading
import time
import typing as t
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import click
from singer_sdk import Target
from singer_sdk.exceptions import (
    ConfigValidationError,
    InvalidJSONSchema,
    MapExpressionError,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
    StreamMapConfigError,
)
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.io_base import SingerReader
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.plugin_base import (
    JSONSchemaValidator,
    _ConfigInput,
    _format_validation_error,
)
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from target_aha import redact, settings
from target_aha.client import ANSWER_LIMIT, AhaClient
from target_aha.destination import Destination, parse_webhook_url
from target_aha.dispatch import Dispatcher, Unsettled
from target_aha.errors import (
    ConfigError,
    InputError,
    Interrupted,
    SchemaMismatch,
    TargetAhaError,
)
from target_aha.http_transport import HttpTransport
from target_aha.ledger import Ledger
from target_aha.ledger_open import open_ledger
from target_aha.maps import MapFailed, guard, guard_mapper
from target_aha.meltano_test import MeltanoTestSink, is_meltano_test
from target_aha.messages import (
    KNOWN_TYPES,
    NOT_DONE,
    bounded_lines,
    cannot_load,
    check_message,
    json_kind,
    too_deep,
)
from target_aha.preflight import preflight
from target_aha.progress import Progress
from target_aha.ratelimit import RateGate
from target_aha.redact import REDACTOR
from target_aha.results import Results, new_run_id
from target_aha.sender import Sender, sender_policy
from target_aha.settings import SETTINGS
from target_aha.sinks import AhaSink, sink_class
from target_aha.summary import Costs, log_summary
from target_aha.transport import DryRunTransport
from target_aha.urls import check_header, parse_http_url
from target_aha.watchdog import WATCHDOG
from target_aha.webhook import Webhook

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink

VERSION = version("target-aha")
SETTLE_SECONDS = 3.0
"""How long a run that ends early (a signal, a fatal error) waits for requests in flight to
end and write their results lines; what is still running then is cut short, unsettled."""

logger = logging.getLogger("target-aha")



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
    sender: Sender
    dispatcher: Dispatcher
    disable_mailers: bool
    on_record_error: str
    dry_run: bool
    gate: RateGate | None = None
    read: int = 0
    webhook: Webhook = field(default_factory=lambda: Webhook(f"target-aha/{VERSION}"))
    warned_id_key: set[str] = field(default_factory=set)
    """Streams already warned that their key field `id` goes into Aha! bodies."""
    started: float = field(default_factory=time.monotonic)
    deadline: float | None = None
    """Set when the run ends early: waits for work end then (`time.monotonic()` value)."""

    def costs(self) -> Costs:
        """Time and requests the run has spent so far, for the summary."""
        return Costs(time.monotonic() - self.started, self.sender.sent, self.sender.retries,
                     self.gate.throttled if self.gate else 0)

    def settle(self) -> None:
        """Wait until every record handed over has its outcome and its answer was posted.

        A run that is ending early waits only until its `deadline`, then raises `Unsettled`
        (so the SDK emits no STATE over records that have no outcome).
        """
        self.dispatcher.join(self.deadline)
        if not self.webhook.join(self.deadline):
            raise Unsettled("answers were still waiting to be posted to the response webhook")

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


ADVICE: dict[type[Exception], str] = {
    InvalidInputLine: "Check the tap's output against the Singer specification.",
    RecordsWithoutSchemaException: "Every RECORD needs a SCHEMA message of its stream "
    "before it; check the tap's output.",
    MissingKeyPropertiesError: "Every record needs the key properties its SCHEMA names; fix "
    "the tap's output or its key_properties, or set the stream's key_property in `streams`.",
    SchemaMismatch: "Every record must match its stream's SCHEMA; fix the tap's output or its "
    "schema, or set validate_records: false to send records as the tap wrote them.",
    InvalidJSONSchema: "Fix the tap's schema (or its catalog).",
    StreamMapConfigError: "Fix the stream's entry in stream_maps.",
    MapExpressionError: "Fix the stream's entry in stream_maps.",
}
"""What to do about each input error the SDK raises."""

EXPLAINED: dict[type[Exception], type[InputError]] = {
    cls: type(cls.__name__, (InputError, cls), {"__doc__": f"{cls.__name__}, worded for users."})
    for cls in ADVICE
}
"""Input errors as the SDK names them, also `InputError`s so the CLI prints them plainly."""


def _shown(expression: str | None) -> str:
    """` (description: '<p>' + body)` for a message, or nothing if it is not known."""
    return f" ({expression})" if expression else ""


class CountingReader(SingerReader):
    """The SDK's reader, counting lines so that input errors can say where they are.

    Its loop is the SDK's (`GenericSingerReader.process_lines`), with every line read with a
    bound and checked (`messages.check_message`) before the SDK handles it.
    """

    line_number = 0

    def deserialize_json(self, line: str) -> dict:
        """Parse one line; bad JSON becomes an `InputError` naming the line."""
        self.line_number += 1
        try:
            # NaN and Infinity parse (Python taps write them); shaping rejects such a record
            # under on_record_error, naming the field, since Aha! cannot be sent them.
            return deserialize_json(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"Input line {self.line_number} is not valid JSON ({exc.msg} at column "
                f"{exc.colno}): "
                f"{line[:200]!r}. target-aha reads Singer messages, one JSON object per line; "
                f"check the tap's output. {NOT_DONE}"
            ) from exc
        except RecursionError as exc:
            raise too_deep(self.line_number) from exc

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, t.Callable[[dict], None]]
    ) -> t.Counter[str]:
        """Read the input; malformed input ends the run with a message naming the line."""
        stats: t.Counter[str] = Counter()
        try:
            for text in bounded_lines(file_input or self.default_input, self):
                self._current_message = text
                message = check_message(self.deserialize_json(text), text, self.line_number)
                kind = KNOWN_TYPES[message["type"]]
                callbacks[kind](message)
                stats[kind] += 1
        except InputError:
            raise  # already worded, with its line
        except tuple(EXPLAINED) as exc:
            cls = next(k for k in ADVICE if isinstance(exc, k))
            raise cannot_load(self.line_number, str(exc), ADVICE[cls], EXPLAINED[cls]) from exc
        return stats


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

    def __init__(self, *, open_run: bool = True, **kwargs: t.Any) -> None:
        """`open_run=False` (for `--test`) checks the settings and opens nothing: no results
        file, no ledger (nor its lock), no threads."""
        self._destinations: dict[str, Destination] = {}
        self._last_state: dict | None = None
        self._positions: t.Counter[str] = Counter()  # RECORD messages read, per input stream
        super().__init__(**kwargs)
        # Sinks are drained one after the other in the main thread (they all wait on the one
        # dispatcher anyway), so a signal can always unwind a drain.
        self.max_parallelism = 1
        self._ended = False
        self._check_settings()
        self.dry_run = bool(self.config.get("dry_run"))
        if not open_run:
            return
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

    def client(self, *, dry_run: bool = False) -> AhaClient:
        """The HTTP client of the account the settings name (printing only, for a dry run)."""
        return AhaClient(
            self.base_url,
            self.config.get("api_key") or "",
            self.user_agent,
            DryRunTransport() if dry_run
            else HttpTransport(self.number("request_timeout"), ANSWER_LIMIT),
        )

    def gate(self) -> RateGate:
        """The rate gate of the budget the settings name."""
        return RateGate(
            self.number("max_requests_per_second"), self.number("max_requests_per_minute")
        )

    def _start_run(self) -> Run:
        config = self.config
        results = Results(config.get("results_path"), new_run_id(self.dry_run))
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
        gate = None if self.dry_run else self.gate()
        sender = Sender(
            self.client(dry_run=self.dry_run), gate, sender_policy(config["max_retries"])
        )
        dispatcher = Dispatcher(concurrency=0 if self.dry_run else config["max_concurrency"])
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

    @property
    def line(self) -> int:
        """The number of the input line being handled (for messages)."""
        return t.cast(CountingReader, self.message_reader).line_number

    def setup_mapper(self) -> None:
        """The SDK's stream maps, guarded (`maps.guard_mapper`) so a failing one is worded."""
        super().setup_mapper()
        guard_mapper(self.mapper)

    def _process_schema_message(self, message_dict: dict) -> None:
        """Register the stream as the SDK does, then guard its stream maps (`maps.guard`)."""
        stream = message_dict["stream"]
        try:
            super()._process_schema_message(message_dict)
        except MapFailed as exc:
            raise cannot_load(
                self.line,
                f"the stream map{_shown(exc.expression)} of stream '{stream}' cannot be set "
                f"up: {exc}",
                "Fix the stream's entry in stream_maps.",
            ) from exc
        for stream_map in self.mapper.stream_maps[stream]:
            guard(stream_map)

    def _process_activate_version_message(self, message_dict: dict) -> None:
        """As the SDK (which ignores it for target-aha's sinks), once the stream is known."""
        if message_dict["stream"] not in self.mapper.stream_maps:
            raise cannot_load(
                self.line,
                f"ACTIVATE_VERSION for stream '{message_dict['stream']}' came before any "
                "SCHEMA of that stream",
                "Check the tap's output: every stream's SCHEMA comes before its messages.",
            )
        super()._process_activate_version_message(message_dict)

    def _process_record_message(self, message_dict: dict) -> None:
        """Hand the record to the SDK (maps, validation, the sink), or reject what is no object.

        A failing stream map, or a record that does not match its SCHEMA, stops the run naming
        the input line, the stream and the record (and the expression); a `record` that is
        null or not an object ends as a rejected results line under `on_record_error`, so
        that every record read has its line.
        """
        stream, record = message_dict["stream"], message_dict["record"]
        self._positions[stream] += 1
        if not isinstance(record, dict):
            self._reject_unreadable(stream, record)
            return
        try:
            super()._process_record_message(message_dict)
        except MapFailed as exc:
            raise cannot_load(
                self.line,
                f"the stream map{_shown(exc.expression)} of stream '{stream}' failed on "
                f"{self._record_where(stream, record)}: {exc}",
                "Fix the expression in stream_maps so that it works for this record: a field "
                "may be null or missing (guard it, as in `('<p>' + body + '</p>') if body "
                "else None`); or fix the tap's output.",
            ) from exc
        except (SchemaMismatch, MissingKeyPropertiesError) as exc:
            cls = SchemaMismatch if isinstance(exc, SchemaMismatch) else MissingKeyPropertiesError
            raise cannot_load(
                self.line,
                f"stream '{stream}', {self._record_where(stream, record)}: {exc}",
                ADVICE[cls],
                EXPLAINED[cls],
            ) from exc

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
            self._assert_sink_exists(stream)
        kind = "null" if record is None else f"a JSON {json_kind(record)}"
        error = f'input line {self.line}: the RECORD\'s "record" is {kind}, not a JSON object'
        for stream_map in self.mapper.stream_maps[stream]:
            if not isinstance(stream_map, RemoveRecordTransform):
                sink = self.get_sink(stream_map.stream_alias)
                t.cast(AhaSink, sink).reject_unreadable(error)

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
        """Settle everything, emit the last STATE, then release the run's threads and files.

        If settling fails, `load` first waits (bounded) for what is still in flight, so the
        results file must stay open until then: it closes the run, not this method.
        """
        super().process_endofpipe()
        self._end_run()
        log_summary(self.logger, self.run.results, self.run.costs(), self.dry_run)

    def load(self, file_input: t.IO[str] | None = None) -> None:
        """Read the input to its end; a run that ends early first settles what is in flight.

        On a signal or any error, requests in flight get until `SETTLE_SECONDS` from now to
        end and write their results lines; whatever still runs is then cut short and stays
        unsettled (no results line, no STATE over it; a create among them is pending in the
        ledger, so the next run finds it). After a signal, STATE is emitted if everything
        read settled in time.
        """
        try:
            self.listen(file_input)
        except Interrupted as exc:
            settled = self._wind_down(drain=True)
            raise Interrupted(exc.signum, self._interrupted(exc.signum, settled)) from None
        except BaseException:
            self._wind_down(drain=False)
            raise
        finally:
            self._end_run()

    def _handle_termination(self, signum: int, frame: t.Any) -> None:
        """SIGTERM/SIGINT: stop reading (and a second signal stops settling) at once."""
        raise Interrupted(signum, f"Stopped by {signal.Signals(signum).name}.")

    def _wind_down(self, *, drain: bool) -> bool:
        """Settle (bounded) what is in flight; whether all of it settled."""
        run = self.run
        run.deadline = time.monotonic() + SETTLE_SECONDS
        try:
            if drain:  # the SDK's drain: partial batches go out, STATE only if all settled
                self.drain_all()
                return True
            return run.dispatcher.wait(run.deadline) and run.webhook.join(run.deadline)
        except Exception as exc:  # the run is ending on another error already
            logger.debug("Settling before the end stopped: %s", exc)
            return False
        finally:
            run.dispatcher.halt(Unsettled("the run is stopping"))
            WATCHDOG.close()  # cut what still runs: its outcome stays unknown, never "settled"

    def _interrupted(self, signum: int, settled: bool) -> str:
        """The message of a run a signal stopped."""
        name = signal.Signals(signum).name
        done = sum(self.run.results.counts[s] for s in ("succeeded", "rejected", "dry_run"))
        if settled:
            outcome = (
                "every record read so far was settled and the tap's latest STATE emitted"
            )
        else:
            outcome = (
                f"{self.run.dispatcher.outstanding} requests in flight were cut short after "
                f"{SETTLE_SECONDS:g} s; their records have no results line and no STATE was "
                "emitted over them (a create among them is found again by the next run, as "
                "after a timeout)"
            )
        return (
            f"Stopped by {name} before the end of the input: {done} records settled (see the "
            f"results file); {outcome}. The run did not finish: run it again to load the rest."
        )

    def _end_run(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.progress.stop()
        self.run.dispatcher.close()
        self.run.webhook.close(self.run.deadline)
        self.run.results.close()
        if self.run.ledger is not None:
            self.run.ledger.close()

    @classmethod
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> _ConfigInput:
        """Read the `--config` files as the SDK does; one that cannot be read ends the run
        with a message naming the file (never its content: it holds the API key)."""
        for path in value:
            if path == "ENV":
                continue
            try:
                loaded = json.loads(Path(path).read_text(encoding="utf-8"))
            except FileNotFoundError:
                problem = "does not exist"
            except IsADirectoryError:
                problem = "is a directory"
            except OSError as exc:
                problem = f"cannot be read ({exc.strerror})"
            except UnicodeDecodeError:
                problem = "is not UTF-8 text"
            except json.JSONDecodeError as exc:
                problem = f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            else:
                if isinstance(loaded, dict):
                    continue
                problem = "is not a JSON object of settings"
            cls.logger.error(
                "The config file '%s' given with --config %s. Give the path of a JSON file "
                'holding an object of settings ({"subdomain": ..., "streams": ...}), or '
                "--config ENV to read TARGET_AHA_* environment variables.",
                path, problem,
            )
            ctx.exit(1)
        return super().cb_config(ctx, param, value)

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
    def invoke(  # type: ignore[override]
        cls,
        *,
        test: bool = False,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        file_input: t.IO[str] | None = None,
    ) -> None:
        """Run the CLI (as the SDK's `Target.invoke`, loading through `load`); errors written
        for users are printed without a traceback.

        Every log line goes through the redactor (installed here, once the SDK's logging is
        set up), and so does the traceback of an error nobody worded.
        """
        redact.install()
        threading.excepthook = _log_thread_error
        try:
            if test:
                cls._preflight(config)
            super(Target, cls).invoke(about=about, about_format=about_format)
            cls.print_version(print_fn=cls.logger.info)
            config = config or _ConfigInput()
            target = cls(
                config=config.config, validate_config=True, parse_env_config=config.parse_env
            )
            target.load(file_input)
        except TargetAhaError as exc:
            cls.logger.error("%s", REDACTOR(str(exc)))
            sys.stderr.flush()
            sys.exit(exc.exit_code)
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
            open_run=False,
        )
        passed = preflight(
            target.client(), target.gate(), target.destinations(),
            lambda line: print(REDACTOR(line)),
        )
        sys.exit(0 if passed else 1)


def _log_thread_error(args: threading.ExceptHookArgs) -> None:
    """An error that escapes a thread is logged (redacted), not printed raw by Python."""
    if args.exc_value is not None:
        TargetAha.logger.error(
            "Unexpected error in thread %s", args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )
