"""The private singer-sdk names target-aha relies on (target_aha/sdk_compat.py) still hold.

Each test names one touch point: a new singer-sdk release that renames, removes or changes one
fails here, by name, before a run does. The record validator's errors are the SDK's
`InvalidRecord` family, checked through the target.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from singer_sdk import Target
from singer_sdk.configuration import _dict_config
from singer_sdk.exceptions import InvalidRecord
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.io_base import SingerReader
from singer_sdk.mapper import CustomStreamMap, PluginMapper
from singer_sdk.plugin_base import PluginBase, _ConfigInput
from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.sinks.core import Sink

from target_aha import sdk_compat
from target_aha.errors import InputError
from target_aha.sinks import AhaSink
from target_aha.target import TargetAha
from target_aha.validation import RecordValidator, SchemaMismatch


def params(function: Any) -> list[str]:
    """The parameter names of a function (without self/cls), for comparing signatures."""
    return [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("_process_state_message", ["message_dict"]),
        ("_write_state_message", ["state"]),
        ("_handle_max_record_age", []),
        ("_process_schema_message", ["message_dict"]),
        ("_process_record_message", ["message_dict"]),
        ("_process_activate_version_message", ["message_dict"]),
        ("_assert_sink_exists", ["stream_name"]),
        ("_validate_config", ["raise_errors"]),
        ("get_sink", ["stream_name", "record", "schema", "key_properties"]),
        ("add_sink", ["stream_name", "schema", "key_properties"]),
    ],
)
def test_target_private_methods_keep_their_signatures(name: str, expected: list[str]) -> None:
    method = getattr(Target, name, None)
    assert method is not None, f"singer_sdk.Target.{name} is gone: update sdk_compat.SDKTarget"
    assert params(method) == expected, f"singer_sdk.Target.{name} changed its parameters"


def test_every_private_override_of_sdk_target_is_an_sdk_name() -> None:
    """SDKTarget overrides only private names the SDK has (none invented by a typo)."""
    private = [n for n in vars(sdk_compat.SDKTarget) if n.startswith("_") and not n.startswith("__")
               and n not in ("_abc_impl",)]
    assert private, "SDKTarget overrides no private SDK hook"
    for name in private:
        assert any(name in vars(cls) for cls in Target.__mro__), (
            f"singer_sdk.Target has no {name}: update sdk_compat")


def test_max_record_age_is_the_sdks_drain_clock() -> None:
    assert isinstance(Target._MAX_RECORD_AGE_IN_MINUTES, float), "_MAX_RECORD_AGE_IN_MINUTES"
    source = inspect.getsource(Target._handle_max_record_age)
    assert "_MAX_RECORD_AGE_IN_MINUTES" in source, (
        "Target._handle_max_record_age no longer reads _MAX_RECORD_AGE_IN_MINUTES: "
        "state_interval_seconds would have no effect"
    )


def test_environment_config_is_a_classproperty_of_the_plugin() -> None:
    assert isinstance(PluginBase.__dict__["_env_var_config"], classproperty), "_env_var_config"
    assert isinstance(PluginBase.__dict__["_env_var_prefix"], classproperty), "_env_var_prefix"
    assert TargetAha.env_var_prefix() == "TARGET_AHA_"
    assert params(_dict_config.parse_environment_config)[:2] == ["config_schema", "prefix"], (
        "singer_sdk.configuration._dict_config.parse_environment_config changed"
    )


def test_settings_are_validated_through_validate_config() -> None:
    source = inspect.getsource(PluginBase.__init__)
    assert "self._validate_config(" in source, "PluginBase.__init__ no longer calls it"
    assert "self._config = " in source, "PluginBase keeps the raw settings elsewhere"
    assert params(sdk_compat._format_validation_error) == ["error"], "_format_validation_error"


def test_get_sink_is_the_sdks_own() -> None:
    """`SDKTarget.get_sink` copies the SDK's (`add_sink` is final): a change there must be
    copied too. Update the digest once SDKTarget.get_sink follows the new SDK."""
    source = inspect.getsource(Target.get_sink)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == "d50a023664a5c97b", f"singer_sdk.Target.get_sink changed (digest {digest})"
    assert "_sinks_active" in source and "_sinks_to_clear" in source


def test_invoke_gets_the_keywords_sdk_compat_names() -> None:
    assert params(Target.invoke) == list(sdk_compat.INVOKE_KEYWORDS), "Target.invoke keywords"
    assert params(PluginBase.invoke) == ["about", "about_format", "kwargs"], "PluginBase.invoke"
    command = TargetAha.get_singer_command()
    given = {p.name for p in command.params if p.expose_value}
    assert given == {*sdk_compat.INVOKE_KEYWORDS, "test", "verify_ledger", "send_test"}, (
        "the SDK's CLI passes other keywords")
    config = _ConfigInput.from_cli_args("ENV")
    assert config.parse_env is True and config.config == {}, "_ConfigInput changed"


def test_the_reader_loop_target_aha_replaces() -> None:
    assert params(GenericSingerReader.process_lines) == ["file_input", "callbacks"]
    assert "self._current_message = line" in inspect.getsource(
        GenericSingerReader.process_lines), "the SDK's reader no longer notes its line"
    assert issubclass(TargetAha.message_reader_class, SingerReader)


def test_stream_map_evaluation_frames() -> None:
    assert {"expr", "property_name"} <= set(params(CustomStreamMap._eval)), "_eval"
    assert "expr" in params(PluginMapper._eval_stream), "PluginMapper._eval_stream"
    assert sdk_compat.MAP_EVAL_CODE is CustomStreamMap._eval.__code__


def test_the_sdks_validation_log_line() -> None:
    source = inspect.getsource(Sink._validate_and_parse)
    assert f'"{sdk_compat.VALIDATION_FAILED}"' in source, "the SDK logs another line"
    assert "fail_on_record_validation_exception" in source
    assert "except InvalidRecord" in source


def test_built_target_has_the_sdks_sink_registry(tmp_path: Path) -> None:
    target = TargetAha(config={"subdomain": "x", "dry_run": True, "ledger_path": ""})
    assert isinstance(target._sinks_active, dict), "_sinks_active"
    assert isinstance(target._sinks_to_clear, list), "_sinks_to_clear"


def test_a_mismatch_is_the_sdks_invalid_record() -> None:
    validator = RecordValidator({"properties": {"n": {"type": "integer"}}},
                                validate_formats=False)
    with pytest.raises(InvalidRecord) as caught:
        validator.validate({"n": "x"})
    assert isinstance(caught.value, SchemaMismatch)
    assert str(caught.value) == "the record.n must be integer"


SCHEMA = {"type": "SCHEMA", "stream": "create_team", "key_properties": ["id"],
          "schema": {"properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                    "n": {"type": "integer"}}}}


def load(tmp_path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dry-run `records` in-process; the results file's lines."""
    results = tmp_path / "results.jsonl"
    target = TargetAha(config={"subdomain": "x", "dry_run": True, "ledger_path": "",
                               "results_path": str(results)})
    lines = [SCHEMA, *({"type": "RECORD", "stream": "create_team", "record": r}
                       for r in records)]
    target.listen(io.StringIO("".join(json.dumps(m) + "\n" for m in lines)))
    return [json.loads(line) for line in results.read_text().splitlines()]


def test_a_record_that_does_not_match_stops_the_run_worded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(InputError) as caught:
        load(tmp_path, [{"id": "a", "name": "A", "n": "x"}])
    assert str(caught.value).startswith(
        "Input line 2 cannot be loaded: stream 'create_team', record #1 (key 'a'): the "
        "record.n must be integer.")
    assert not [r for r in caplog.records if r.msg == sdk_compat.VALIDATION_FAILED], (
        "the SDK's traceback of a mismatch the target words is not logged"
    )


def test_fail_on_record_validation_exception_false_loads_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(AhaSink, "fail_on_record_validation_exception", False)
    with caplog.at_level(logging.ERROR):
        lines = load(tmp_path, [{"id": "a", "name": "A", "n": "x"}, {"id": "b", "name": "B"}])
    assert [line["key"] for line in lines] == ["a", "b"]
    assert [r for r in caplog.records if r.msg == sdk_compat.VALIDATION_FAILED]


def test_building_the_target_opens_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    before = set(threading.enumerate())
    target = TargetAha(config={"subdomain": "x", "api_key": "k",
                               "streams": {"s": {"endpoint": "create_team"}}})
    assert list(tmp_path.iterdir()) == [], "building the target created files"
    assert set(threading.enumerate()) == before, "building the target started threads"
    assert target.current_run() is None
    target.end_run()  # nothing to release
    assert list(tmp_path.iterdir()) == []
