"""The command line: `invoke`, `--test`, `--config` files, signals, wind-down and exit codes.

Errors written for users (`TargetAhaError`) are printed as they are and exit with their code;
any other error is printed redacted instead of a raw traceback. A run stopped by SIGTERM or
SIGINT first settles (bounded) what is in flight, then exits 128 + the signal's number.
"""

from __future__ import annotations

import abc
import json
import signal
import sys
import threading
import typing as t
from importlib.metadata import version
from pathlib import Path

import click
from singer_sdk.exceptions import ConfigValidationError

from target_aha import redact
from target_aha.errors import Interrupted, TargetAhaError
from target_aha.redact import REDACTOR
from target_aha.sdk_compat import ConfigInput, SDKTarget
from target_aha.send_test import FirstRecords, SendTestDone

if t.TYPE_CHECKING:
    from target_aha.client import AhaClient
    from target_aha.destination import Destination
    from target_aha.ratelimit import RateGate
    from target_aha.run import Run

VERSION = version("target-aha")


class CommandLine(SDKTarget):
    """The CLI of target-aha's target: the SDK's, plus `--test` and worded errors."""

    send_test: FirstRecords | None = None
    """Under `--send-test`: which records are sent (each stream's first)."""

    @abc.abstractmethod
    def client(self) -> AhaClient:
        """The HTTP client of the account the settings name."""

    @abc.abstractmethod
    def gate(self) -> RateGate:
        """The rate gate of the budget the settings name."""

    @abc.abstractmethod
    def destinations(self) -> dict[str, Destination]:
        """The destinations of the streams configured in `streams`."""

    @abc.abstractmethod
    def open_run(self) -> Run:
        """The run, opened if no sink opened it yet."""

    @abc.abstractmethod
    def current_run(self) -> Run | None:
        """The run, if a sink opened it."""

    @abc.abstractmethod
    def end_run(self) -> None:
        """Release the run's threads and files."""

    def load(self, file_input: t.IO[str] | None = None) -> None:
        """Read the input to its end; a run that ends early first settles what is in flight.

        On a signal or any error, requests in flight get until `run.SETTLE_SECONDS` from now
        to end and write their results lines; whatever still runs is then cut short and stays
        unsettled (no results line, no STATE over it; a create among them is pending in the
        ledger, so the next run finds it). After a signal, STATE is emitted if everything
        read settled in time.
        """
        try:
            try:
                self.listen(file_input)
            except SendTestDone:  # `--send-test` has what it sends: the rest is not read
                self.process_endofpipe()
        except Interrupted as exc:
            opened = self.open_run()  # the message counts what settled (none before a stream)
            settled = opened.wind_down(self.drain_all)
            raise Interrupted(exc.signum, opened.interrupted(exc.signum, settled=settled)) from None
        except BaseException:
            run = self.current_run()
            if run is not None:  # else no stream began: nothing was handed over to settle
                run.wind_down(None)
            raise
        finally:
            self.end_run()

    def _handle_termination(self, signum: int, frame: t.Any) -> None:
        """SIGTERM/SIGINT: stop reading (and a second signal stops settling) at once."""
        raise Interrupted(signum, f"Stopped by {signal.Signals(signum).name}.")

    @classmethod
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> ConfigInput:
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
        command.params.append(
            click.Option(
                ["--verify-ledger"],
                is_flag=True,
                help="List the containers of the objects the key ledger knows (GET requests "
                "only, about one per 200 objects; nothing is written to Aha!), forget the rows "
                "whose objects were deleted in Aha! (the next run creates them again), print "
                "what was found per stream and the cost, and exit.",
            )
        )
        command.params.append(
            click.Option(
                ["--send-test"],
                is_flag=True,
                help="Read Singer input and send the first record of each configured stream "
                "for real (upsert and ledger included, so a later load does not duplicate "
                "it), print each request (credentials masked) and Aha!'s whole answer on "
                "standard output, emit no STATE, and stop.",
            )
        )
        return command

    @classmethod
    def main(cls, *, about: bool, about_format: str | None, config: ConfigInput | None,
             file_input: t.IO[str] | None, options: t.Mapping[str, t.Any]) -> None:
        """Run the CLI (as the SDK's `Target.invoke`, loading through `load`); errors written
        for users are printed without a traceback.

        Every log line goes through the redactor (installed here, once the SDK's logging is
        set up), and so does the traceback of an error nobody worded.
        """
        redact.install()
        threading.excepthook = cls._log_thread_error
        try:
            if options.get("test"):
                cls._preflight(config)
            if options.get("verify_ledger"):
                cls._verify(config)
            cls.answer_about(about=about, about_format=about_format)
            cls.print_version(print_fn=cls.logger.info)
            config = config or ConfigInput()
            target = cls(
                config=config.config, validate_config=True, parse_env_config=config.parse_env
            )
            if options.get("send_test"):
                target.send_test = FirstRecords(target.destinations())
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
    def _preflight(cls, config: ConfigInput | None) -> t.NoReturn:
        """`--test`: load and check the configuration, then run the checks; never returns.

        Building the target opens nothing (no results file, no ledger, no thread)."""
        from target_aha.preflight import preflight  # noqa: PLC0415 - only `--test` checks

        target = cls(
            config=config.config if config else None,
            validate_config=True,
            parse_env_config=bool(config and config.parse_env),
        )
        passed = preflight(
            target.client(), target.gate(), target.destinations(),
            lambda line: print(REDACTOR(line)),
        )
        sys.exit(0 if passed else 1)

    @classmethod
    def _verify(cls, config: ConfigInput | None) -> t.NoReturn:
        """`--verify-ledger`: check the ledger's rows against Aha!, print the report; exit 0."""
        from target_aha.verify import settings_sender, verify_from_settings  # noqa: PLC0415

        target = cls(
            config=config.config if config else None,
            validate_config=True,
            parse_env_config=bool(config and config.parse_env),
        )
        sender = settings_sender(target.config, target.client(), target.gate())
        verify_from_settings(target.config, sender, lambda line: print(REDACTOR(line)))
        sys.exit(0)

    @classmethod
    def _log_thread_error(cls, args: threading.ExceptHookArgs) -> None:
        """An error that escapes a thread is logged (redacted), not printed raw by Python."""
        if args.exc_value is not None:
            cls.logger.error(
                "Unexpected error in thread %s", args.thread.name if args.thread else "?",
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )
