"""Settings that would pass in silence: unknown names, SDK settings target-aha refuses, numbers.

Checked in-process (the CLI prints a ConfigError as it is, tests/test_runs.py shows that), and
through `--about`, which is what Meltano and the Hub's refresh job read.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from target_aha.custom import BATCH_ALGORITHMS, CUSTOM_KEYS, METHODS
from target_aha.destination import COMMON_KEYS, WRITE_MODES
from target_aha.endpoints import ENDPOINT_NAMES, TEMPLATES
from target_aha.errors import ConfigError
from target_aha.target import VERSION, TargetAha
from target_aha.wire import CONTENT_TYPES
from tests.conftest import EXECUTABLE, TOKEN

BASE = {"base_url": "http://127.0.0.1:9/api/v1", "api_key": TOKEN, "ledger_path": ""}


def about() -> dict[str, Any]:
    out = subprocess.run([EXECUTABLE, "--about", "--format=json"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return json.loads(out)["settings"]["properties"]


def start(**config: Any) -> TargetAha:
    return TargetAha(config={**BASE, **config})


@pytest.mark.parametrize(
    ("setting", "closest"),
    [("max_concurency", "max_concurrency"), ("ledgerpath", "ledger_path"),
     ("on_record_errors", "on_record_error"), ("stream_map", "stream_maps")],
)
def test_a_misspelled_setting_is_an_error_naming_the_closest(setting: str, closest: str) -> None:
    with pytest.raises(ConfigError) as caught:
        start(**{setting: 2})
    message = str(caught.value)
    assert message.startswith(f"Unknown setting {setting!r}: did you mean {closest}? "), message
    assert "max_concurrency, max_requests_per_minute" in message  # the valid ones listed


def test_an_unknown_setting_with_no_close_name_lists_the_settings() -> None:
    with pytest.raises(ConfigError, match=r"^Unknown setting 'colour': It would be ignored"):
        start(colour="blue")


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [("load_method", "upsert", "keyed records are always upserted through the key ledger"),
     ("load_method", "append-only", "write_mode: create"),
     ("faker_config", {"seed": 1}, "the Faker package is not installed")],
)
def test_sdk_settings_target_aha_does_not_honour_are_refused(
    setting: str, value: Any, reason: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        start(**{setting: value})
    assert str(caught.value).startswith(f"{setting} is not supported: ")
    assert reason in str(caught.value)


def test_about_lists_only_honoured_settings_each_with_a_title_and_description() -> None:
    settings = about()
    assert "load_method" not in settings
    assert "faker_config" not in settings
    for name, spec in settings.items():
        assert spec.get("title"), name
        assert spec.get("description"), name
    assert settings["api_key"]["title"] == "API key"
    assert settings["max_concurrency"]["title"] == "Max concurrency"
    # Every number is an integer: Meltano round-trips integers (a `decimal` setting from the
    # environment crashes Meltano 4.4, and `meltano config set` writes it as !!float).
    numeric = {n for n, s in settings.items() if {"number", "integer"} & set(s["type"])}
    assert numeric >= {"max_requests_per_second", "max_requests_per_minute", "request_timeout",
                       "state_interval_seconds", "progress_interval_seconds", "max_concurrency"}
    assert all("number" not in settings[n]["type"] for n in numeric), numeric
    # The default is the same in every version; the version is added when it is sent.
    assert settings["user_agent"]["default"] == "target-aha"


def test_about_declares_the_shape_of_a_streams_entry() -> None:
    # The keys destination.py and custom.py accept are exactly the keys --about declares.
    entry = about()["streams"]["additionalProperties"]
    params = {p for template in TEMPLATES.values() for p in template.params}
    assert set(entry["properties"]) == COMMON_KEYS | params | CUSTOM_KEYS
    assert entry["required"] == ["endpoint"]
    assert entry["additionalProperties"] is False
    assert entry["properties"]["endpoint"]["enum"] == list(ENDPOINT_NAMES)
    assert entry["properties"]["write_mode"]["enum"] == list(WRITE_MODES)
    assert entry["properties"]["method"]["enum"] == list(METHODS)
    assert entry["properties"]["content_format"]["enum"] == list(CONTENT_TYPES)
    for name, spec in entry["properties"].items():
        assert spec.get("description"), name
    batch = entry["properties"]["batch"]
    assert set(batch["properties"]) == {"size", "algorithm", "property_name", "other_props",
                                        "code"}
    assert batch["properties"]["algorithm"]["enum"] == list(BATCH_ALGORITHMS)
    assert batch["properties"]["other_props"]["additionalProperties"] is True


def test_a_streams_entry_is_still_worded_by_its_own_checks() -> None:
    # The declared shape is published, not used to validate: the entry's own check names the
    # stream and what the endpoint takes.
    with pytest.raises(ConfigError, match=r"^streams\.s has unknown setting\(s\) colour; "):
        start(streams={"s": {"endpoint": "create_feature", "release_id": "R", "colour": 1}})
    with pytest.raises(ConfigError, match=r"^streams\.s\.write_mode must be 'upsert' or "):
        start(streams={"s": {"endpoint": "create_feature", "write_mode": 3}})


def test_user_agent_default_is_sent_with_the_version_and_a_custom_one_as_is() -> None:
    assert start().user_agent == f"target-aha/{VERSION}"
    assert start(user_agent="acme-sync/2").user_agent == "acme-sync/2"


def test_fractional_seconds_from_a_json_config_are_accepted() -> None:
    target = start(request_timeout=Decimal("0.5"), state_interval_seconds=0.25,
                   progress_interval_seconds=1.5)
    assert target.number("request_timeout") == 0.5
    assert target.number("state_interval_seconds") == 0.25


@pytest.mark.parametrize(
    ("config", "expected"),
    [({"max_requests_per_second": 2.5}, "give max_requests_per_minute instead: 150 a minute "
      "is 2.5 a second."),
     ({"max_requests_per_minute": Decimal("0.5")}, "0.5 a minute is 0.5 a minute"),
     ({"max_requests_per_second": 0.7}, "42 a minute is 0.7 a second.")],
)
def test_fractional_rates_are_refused_with_the_minute_window(
    config: dict[str, Any], expected: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        start(**config)
    assert "must be a whole number of requests" in str(caught.value)
    assert expected in str(caught.value)


def test_whole_numbers_written_as_floats_are_whole() -> None:
    target = start(max_requests_per_second=3.0, max_requests_per_minute=Decimal("30"))
    try:
        assert target.open_run().gate is not None
    finally:
        target.end_run()


@pytest.mark.parametrize("value", [0, -1.5, Decimal("0")])
def test_seconds_must_be_above_zero(value: Any) -> None:
    with pytest.raises((ConfigError, ConfigValidationError)):
        start(request_timeout=value)


def test_numbers_from_the_environment_are_read_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TARGET_AHA_MAX_RETRIES", "many")
    monkeypatch.setenv("TARGET_AHA_REQUEST_TIMEOUT", "0.5")
    monkeypatch.setenv("TARGET_AHA_MAX_CONCURRENCY", "3")
    config = TargetAha._env_var_config
    assert config["request_timeout"] == 0.5
    assert config["max_concurrency"] == 3
    with pytest.raises(ConfigValidationError) as caught:
        TargetAha(config={**BASE, **config})
    assert any("max_retries" in error for error in caught.value.errors), caught.value.errors
