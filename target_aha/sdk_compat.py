"""Every private singer-sdk name target-aha relies on, in one module.

singer-sdk 0.54 offers no public hook for several things target-aha must do: read numbers from
the environment without a traceback, validate settings before the schema's own errors quote a
secret, settle and emit STATE on a clock of its own, build each sink with what it needs, and
word input errors. Each such touch point is here and nowhere else: `SDKTarget` overrides the
SDK's private methods and forwards them to named hooks of target-aha's own, and the module
names the other private values. tests/test_sdk_compat.py checks every one of them against the
installed SDK, so a new SDK release that changes one fails that test by name, not a run.
"""

from __future__ import annotations

import abc
import typing as t

from singer_sdk import Target
from singer_sdk.configuration._dict_config import parse_environment_config
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.io_base import SingerReader
from singer_sdk.mapper import CustomStreamMap, PluginMapper
from singer_sdk.plugin_base import JSONSchemaValidator, _ConfigInput, _format_validation_error

if t.TYPE_CHECKING:
    from singer_sdk.sinks import Sink

ConfigInput = _ConfigInput
"""What the SDK's `--config` callback returns (`config`, `parse_env`), handed to `invoke`."""

environment_config = parse_environment_config
"""The SDK's reading of `<PREFIX>_<SETTING>` environment variables."""

MAP_EVAL_CODE = CustomStreamMap._eval.__code__
"""The frame that evaluates one record's stream-map expression (`expr`, `property_name`)."""
ALIAS_EVAL_CODE = PluginMapper._eval_stream.__code__
"""The frame that evaluates one `__alias__` expression (`expr`)."""

INVOKE_KEYWORDS = ("about", "about_format", "config", "file_input")
"""The keywords the SDK's CLI passes to `Target.invoke`, besides target-aha's own options."""

VALIDATION_FAILED = "Record validation failed"
"""What the SDK's `Sink._validate_and_parse` logs, with a traceback, for an `InvalidRecord`."""


def schema_errors(schema: dict[str, t.Any], config: t.Mapping[str, t.Any]) -> list[str]:
    """The SDK's validation of settings against a schema (filling in defaults), as messages."""
    return [_format_validation_error(e) for e in JSONSchemaValidator(schema).iter_errors(config)]


def note_current_line(reader: SingerReader, text: str) -> None:
    """Tell the SDK's reader the line being handled (its error reports quote it)."""
    reader._current_message = text


class SDKTarget(Target):
    """The SDK's `Target`, its private hooks forwarded to named ones target-aha implements."""

    @classproperty
    def _env_var_config(cls) -> dict[str, t.Any]:  # noqa: N805 - the SDK's classproperty
        return cls.environment_settings()

    @classmethod
    @abc.abstractmethod
    def environment_settings(cls) -> dict[str, t.Any]:
        """Settings read from the environment (`--config ENV`, or `parse_env_config`)."""

    @classmethod
    def env_var_prefix(cls) -> str:
        """`TARGET_AHA_`: how the SDK names the environment variables of settings."""
        return t.cast(str, cls._env_var_prefix)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        return self.validate_settings(self._config, raise_errors=raise_errors)

    @abc.abstractmethod
    def validate_settings(self, config: dict[str, t.Any], *, raise_errors: bool) -> list[str]:
        """Check (and fill in the defaults of) the settings as given."""

    def state_every(self, seconds: float) -> None:
        """Drain every sink and emit STATE once records have waited `seconds`."""
        self._MAX_RECORD_AGE_IN_MINUTES = seconds / 60

    def _process_state_message(self, message_dict: dict) -> None:
        # The SDK checks the records' age only after a record: a STATE is a moment too.
        super()._process_state_message(message_dict)
        self._handle_max_record_age()

    def _write_state_message(self, state: dict) -> None:
        if self.emits_state(state):
            super()._write_state_message(state)

    @abc.abstractmethod
    def emits_state(self, state: dict) -> bool:
        """Whether this STATE is written to standard output."""

    def _process_schema_message(self, message_dict: dict) -> None:
        self.read_schema(message_dict, super()._process_schema_message)

    def _process_record_message(self, message_dict: dict) -> None:
        self.read_record(message_dict, super()._process_record_message)

    def _process_activate_version_message(self, message_dict: dict) -> None:
        self.read_activate_version(message_dict, super()._process_activate_version_message)

    @abc.abstractmethod
    def read_schema(self, message: dict, handle: t.Callable[[dict], None]) -> None:
        """A SCHEMA message; `handle` is the SDK's handling of it."""

    @abc.abstractmethod
    def read_record(self, message: dict, handle: t.Callable[[dict], None]) -> None:
        """A RECORD message; `handle` is the SDK's handling of it."""

    @abc.abstractmethod
    def read_activate_version(self, message: dict, handle: t.Callable[[dict], None]) -> None:
        """An ACTIVATE_VERSION message; `handle` is the SDK's handling of it."""

    def assert_sink_exists(self, stream_name: str) -> None:
        """Raise the SDK's `RecordsWithoutSchemaException` if the stream has no SCHEMA yet."""
        self._assert_sink_exists(stream_name)

    def get_sink(
        self,
        stream_name: str,
        *,
        record: dict | None = None,
        schema: dict | None = None,
        key_properties: t.Sequence[str] | None = None,
    ) -> Sink:
        """The SDK's `get_sink`, a new sink built by `create_sink` with what it needs.

        `Target.add_sink` is final and builds every sink from its class with the SDK's four
        arguments, so this is the SDK's own `get_sink` (as `SQLTarget.get_sink` does it),
        adding sinks through `add_built_sink` instead.
        """
        _ = record
        if schema is None:
            return self._sinks_active[stream_name]
        existing_sink = self._sinks_active.get(stream_name)
        if not existing_sink:
            return self.add_built_sink(stream_name, schema, key_properties)
        if (
            existing_sink.original_schema != schema
            or existing_sink.key_properties != key_properties
        ):
            self.logger.info(
                "Schema or key properties for '%s' stream have changed. "
                "Initializing a new '%s' sink...",
                stream_name,
                stream_name,
            )
            self._sinks_to_clear.append(self._sinks_active.pop(stream_name))
            return self.add_built_sink(stream_name, schema, key_properties)
        return existing_sink

    def add_built_sink(
        self, stream_name: str, schema: dict, key_properties: t.Sequence[str] | None
    ) -> Sink:
        """As the SDK's `add_sink`: create the sink, set it up, and make it the stream's."""
        self.logger.debug("Initializing target sink '%s'...", self.name)
        sink = self.create_sink(stream_name, schema, key_properties)
        try:
            sink.setup()
        except Exception:
            self.logger.error("Error initializing target sink '%s'", self.name)
            raise
        self._sinks_active[stream_name] = sink
        return sink

    @abc.abstractmethod
    def create_sink(
        self, stream_name: str, schema: dict, key_properties: t.Sequence[str] | None
    ) -> Sink:
        """A new sink for a stream (its SCHEMA arrived, or changed)."""

    @classmethod
    def invoke(
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: ConfigInput | None = None,
        file_input: t.IO[str] | None = None,
        **options: t.Any,
    ) -> None:
        """The SDK's CLI callback: its keywords (`INVOKE_KEYWORDS`) and target-aha's options."""
        cls.main(about=about, about_format=about_format, config=config,
                 file_input=file_input, options=options)

    @classmethod
    @abc.abstractmethod
    def main(cls, *, about: bool, about_format: str | None, config: ConfigInput | None,
             file_input: t.IO[str] | None, options: t.Mapping[str, t.Any]) -> None:
        """Run the command line; `options` are the target's own (`--test`)."""

    @classmethod
    def answer_about(cls, *, about: bool, about_format: str | None) -> None:
        """`--about`: the SDK's answer (then exit); nothing otherwise.

        This is the plugin's `invoke`, not `Target.invoke`, which would also run the load.
        """
        super(Target, cls).invoke(about=about, about_format=about_format)
