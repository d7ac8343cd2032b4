"""`TargetAha`: the settings, which sink serves a stream, and the run's shared machinery."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import time
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
from singer_sdk.plugin_base import PluginBase, _ConfigInput
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from target_aha.client import AhaClient, check_http_url
from target_aha.destination import Destination, parse_webhook_url
from target_aha.dispatch import Dispatcher, DryRunSender, RateGate, Sender, Unsettled
from target_aha.errors import (
    ConfigError,
    InputError,
    Interrupted,
    SchemaMismatch,
    TargetAhaError,
)
from target_aha.ledger import Ledger, open_ledger
from target_aha.preflight import preflight
from target_aha.progress import Progress
from target_aha.results import Results
from target_aha.sinks import AhaSink, sink_class
from target_aha.transport import WATCHDOG
from target_aha.webhook import Webhook

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink

VERSION = version("target-aha")
SETTLE_SECONDS = 3.0
"""How long a run that ends early (a signal, a fatal error) waits for requests in flight to
end and write their results lines; what is still running then is cut short, unsettled."""

logger = logging.getLogger("target-aha")

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
        description="Seconds for one whole HTTP request, from connecting to the last "
        "byte of the answer.",
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
    deadline: float | None = None
    """Set when the run ends early: waits for work end then (`time.monotonic()` value)."""

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
        # Sinks are drained one after the other in the main thread (they all wait on the one
        # dispatcher anyway), so a signal can always unwind a drain.
        self.max_parallelism = 1
        self._ended = False
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
        """Settle everything, emit the last STATE, then release the run's threads and files.

        If settling fails, `load` first waits (bounded) for what is still in flight, so the
        results file must stay open until then: it closes the run, not this method.
        """
        super().process_endofpipe()
        self._end_run()
        self.logger.info("target-aha finished: %s", self.run.results.summary())

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
        for users are printed without a traceback."""
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
            cls.logger.error("%s", exc)
            sys.stderr.flush()
            sys.exit(exc.exit_code)

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
