"""The settings schema, and the checks that keep a configuration from passing in silence.

The schema is also what Meltano sees: `--about` publishes it, the Hub's refresh job rebuilds the
plugin's settings from it (name, `title` as the label, description, kind from the type), and
Meltano casts each value by that kind. So every number is an integer: Meltano reads an integer
setting from the environment and writes it with `meltano config set` as a plain number, while a
`decimal` one crashes Meltano 4.4 when it comes from the environment (`Decimal is not JSON
serializable`) and is written as `!!float '3'`.
"""

from __future__ import annotations

import difflib
import math
import os
import typing as t
from decimal import Decimal

from singer_sdk import typing as th

from target_aha import sdk_compat
from target_aha.entry_schema import STREAM_ENTRY
from target_aha.errors import ConfigError

USER_AGENT = "target-aha"
"""The default `user_agent`; the installed version is added when it is sent (`user_agent`)."""

SETTINGS = th.PropertiesList(
    th.Property(
        "subdomain", th.StringType, title="Subdomain",
        description="Aha! account subdomain: `mycompany` for https://mycompany.aha.io. "
        "One of subdomain and base_url is required.",
    ),
    th.Property(
        "base_url", th.StringType, title="Base URL",
        description="API root, default https://{subdomain}.aha.io/api/v1. For a custom "
        "domain or the local sandbox; plain http:// only for loopback hosts.",
    ),
    th.Property(
        "api_key", th.StringType, secret=True, title="API key",
        description="Aha! API key or OAuth2 access token, sent as `Authorization: Bearer`. "
        "Required unless dry_run.",
    ),
    th.Property(
        "streams", th.ObjectType(additional_properties=STREAM_ENTRY), default={},
        title="Streams",
        description="Stream name -> destination: {\"endpoint\": <template or custom>, "
        "parameters such as release_id (a literal, a {field} placeholder or a reference "
        "{\"ref\": <stream>, \"key\": <template>}), references (body fields set by reference), "
        "key_property, exclude_attributes, request_headers, response_webhook_url, write_mode, "
        "update_fields (changed or all)}. A custom endpoint takes method, url, content_format, "
        "wrap_key, allow_other_hosts, batch.",
    ),
    th.Property(
        "user_agent", th.StringType, default=USER_AGENT, title="User-Agent",
        description="User-Agent header sent to Aha!; the default is sent as "
        "target-aha/<installed version>.",
    ),
    th.Property(
        "disable_mailers", th.BooleanType, default=True, title="Disable mailers",
        description="Add disable_mailers=true to write requests so a bulk load does not "
        "e-mail watchers.",
    ),
    th.Property(
        "max_requests_per_second", th.IntegerType(minimum=1), default=20,
        title="Max requests per second",
        description="Client-side rate limit, shared by all streams of the run (whole "
        "requests; for less than one a second, use max_requests_per_minute).",
    ),
    th.Property(
        "max_requests_per_minute", th.IntegerType(minimum=1), default=300,
        title="Max requests per minute",
        description="Second client-side rate limit window, shared by all streams (30 is one "
        "request every 2 seconds).",
    ),
    th.Property(
        "max_concurrency", th.IntegerType(minimum=1), default=8, title="Max concurrency",
        description="Requests in flight at once.",
    ),
    th.Property(
        "request_timeout", th.IntegerType(minimum=1), default=60, title="Request timeout",
        description="Seconds for one whole HTTP request, from connecting to the last "
        "byte of the answer.",
    ),
    th.Property(
        "max_retries", th.IntegerType(minimum=0), default=8, title="Max retries",
        description="Retries of one request on 429, 5xx, timeouts and connection errors.",
    ),
    th.Property(
        "on_record_error", th.StringType(allowed_values=["fail", "skip"]), default="fail",
        title="On record error",
        description="What a record Aha! rejects (400/404/422) does: stop the run (fail) or "
        "log it as rejected in the results and go on (skip).",
    ),
    th.Property(
        "results_path", th.StringType, title="Results path",
        description="JSON Lines file, appended to, with one line per record read.",
    ),
    th.Property(
        "ledger_path", th.StringType, default=".target-aha/ledger.sqlite", title="Ledger path",
        description="The key ledger (SQLite file or postgresql:// URL, which needs "
        "target-aha[postgres]); empty turns it off.",
    ),
    th.Property(
        "verify_ledger", th.BooleanType, default=False, title="Verify ledger",
        description="Before a load, check the key ledger against Aha! as --verify-ledger "
        "does (GET requests only, about one per 200 objects) and forget the rows whose "
        "objects were deleted in Aha!, so this run creates them again.",
    ),
    th.Property(
        "response_webhook_url", th.StringType, title="Response webhook URL",
        description="POST each Aha! response here; a stream may override it.",
    ),
    th.Property(
        "dry_run", th.BooleanType, default=False, title="Dry run",
        description="Send nothing to Aha!; print each request that would be sent on stderr.",
    ),
    th.Property(
        "state_interval_seconds", th.IntegerType(minimum=1), default=60,
        title="STATE interval (seconds)",
        description="Settle all in-flight work and emit STATE at least this often.",
    ),
    th.Property(
        "progress_interval_seconds", th.IntegerType(minimum=1), default=30,
        title="Progress interval (seconds)",
        description="Log a progress line (records read, requests sent and their rate, "
        "unchanged, rejected, 429s) this often.",
    ),
    th.Property(
        "add_record_metadata", th.BooleanType, title="Add record metadata",
        description="Singer SDK setting: add _sdc_* metadata fields (_sdc_extracted_at, ...) "
        "to records. target-aha never sends _sdc_* fields to Aha! unless a stream map renames "
        "them.",
    ),
    th.Property(
        "batch_size_rows", th.IntegerType(minimum=1), title="Batch size rows",
        description="Singer SDK setting: records per SDK batch; target-aha settles every "
        "record of a batch (and may emit STATE) when it is full. Not the size of a custom "
        "endpoint's batch (streams.<name>.batch.size).",
    ),
).to_dict()
OWN_SETTINGS: tuple[str, ...] = tuple(SETTINGS["properties"])
"""target-aha's own settings, taken before the SDK adds its built-in ones to the schema (it
does so in place, on the class's dict, whenever a target is built or reads its environment)."""

SECONDS = ("request_timeout", "state_interval_seconds", "progress_interval_seconds")
"""Integer settings that a JSON config file may still give with a fraction (0.5 s is harmless).

Meltano sees them as integers; only the rates must be whole (a fractional rate is written with
the minute window).
"""
RATES = {"max_requests_per_second": 60, "max_requests_per_minute": 1}
"""Rate settings and how many per minute one of their unit is (for the refusal message)."""

REFUSED = {
    "load_method": "target-aha does not use the Singer SDK's load_method: keyed records are "
    "always upserted through the key ledger (set streams.<name>.write_mode: create to create "
    "every record instead; ledger_path: \"\" turns upsert off for all streams), and nothing is "
    "ever overwritten or deleted in bulk",
    "faker_config": "stream maps cannot use `fake` in target-aha (the Faker package is not "
    "installed with it), so faker_config would have no effect",
}
"""Settings the Singer SDK would add that target-aha refuses, and why (also in --about)."""


def known_settings(schema: dict[str, t.Any]) -> list[str]:
    """Top-level settings a configuration may give: the schema's properties."""
    return sorted(schema["properties"])


def check_names(config: t.Mapping[str, t.Any], schema: dict[str, t.Any]) -> None:
    """An unknown or refused top-level setting is an error, naming the closest valid one."""
    known = known_settings(schema)
    for name in config:
        if name in REFUSED:
            raise ConfigError(f"{name} is not supported: {REFUSED[name]}. Remove it.")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"Unknown setting {name!r}: {hint}It would be ignored. The settings are: "
                f"{', '.join(known)} (see `target-aha --about`)."
            )


def _finite(value: object) -> t.TypeGuard[float | Decimal]:
    """Whether a value is a float or Decimal that is a number (not NaN, not infinite)."""
    return isinstance(value, (float, Decimal)) and math.isfinite(value)


def fraction(value: object) -> t.TypeGuard[float | Decimal]:
    """Whether a JSON number has a fractional part (3.0 counts as whole)."""
    return _finite(value) and value != int(value)


def check_numbers(config: dict[str, t.Any], schema: dict[str, t.Any]) -> None:
    """Whole numbers become ints; a fractional rate is refused with the minute-window way to say it.

    A JSON config file's 3.0 (read as a float or Decimal) is 3 for every integer setting. A
    fractional number of seconds is accepted, once it is > 0.
    """
    for name, spec in schema["properties"].items():
        value = config.get(name)
        if "integer" in _types(spec) and _finite(value) and not fraction(value):
            config[name] = int(value)
    for name, per_minute in RATES.items():
        value = config.get(name)
        if fraction(value):
            minute = float(value) * per_minute
            raise ConfigError(
                f"{name} must be a whole number of requests ({value} was given). For a rate "
                f"with a fraction, give max_requests_per_minute instead: {minute:g} a minute "
                f"is {value} {'a second' if per_minute == 60 else 'a minute'}"
                + (" (round it to a whole number)." if minute != int(minute) else ".")
            )
    for name in SECONDS:
        value = config.get(name)
        if fraction(value) and not value > 0:
            raise ConfigError(f"{name} must be greater than 0 ({value} was given).")


def validation_schema(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """The published schema, with the seconds settings accepting a fraction above 0, and
    `streams` checked only as an object: its entries are checked by destination.py, whose
    messages name the stream and say what the endpoint takes."""
    properties = dict(schema["properties"])
    properties["streams"] = {**properties["streams"], "additionalProperties": True}
    for name in SECONDS:
        properties[name] = {**properties[name], "type": ["number", "null"],
                            "exclusiveMinimum": 0}
        properties[name].pop("minimum", None)
    return {**schema, "properties": properties}


def environment_config(schema: dict[str, t.Any], prefix: str) -> dict[str, t.Any]:
    """TARGET_AHA_* variables, read as the SDK reads them, except numbers.

    The SDK turns an integer setting's variable into `int(text)`, so TARGET_AHA_MAX_RETRIES=x
    would end in a traceback and TARGET_AHA_REQUEST_TIMEOUT=0.5 could not be given. Numbers are
    read here: whole ones as int, others with a fraction as float (which `check_numbers` and
    validation judge as they judge a JSON config), anything else left as text for validation
    to name the setting.
    """
    numeric = {
        name for name, spec in schema["properties"].items()
        if "integer" in _types(spec)
    }
    as_text = {
        **schema,
        "properties": {
            name: ({"type": ["string"]} if name in numeric else spec)
            for name, spec in schema["properties"].items()
        },
    }
    config = sdk_compat.environment_config(as_text, prefix)
    for name in numeric & set(config):
        config[name] = _number(config[name])
    return config


def _types(spec: dict[str, t.Any]) -> list[str]:
    types = spec.get("type") or []
    return [types] if isinstance(types, str) else list(types)


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            pass
    return text


def user_agent(setting: str, version: str) -> str:
    """The User-Agent sent: the default gets the installed version, any other value is kept."""
    return f"{USER_AGENT}/{version}" if setting == USER_AGENT else setting


def under_meltano() -> bool:
    """Whether Meltano started this process (it sets MELTANO_* variables for its plugins)."""
    return "MELTANO_PROJECT_ROOT" in os.environ


def missing_api_key(prefix: str) -> str:
    """What to do when api_key is not set, for the way target-aha was started.

    Under Meltano, an exported TARGET_AHA_API_KEY reaches the loader only if its meltano.yml
    entry declares the setting, so telling that user to set the variable would be wrong.
    """
    variable = f"{prefix}API_KEY"
    exported = bool(os.environ.get(variable))
    if not under_meltano():
        if exported:
            return (
                f"api_key is not set. {variable} is set in the environment, but target-aha "
                "reads environment variables only with --config=ENV (add it beside your "
                "--config file); or put api_key in the config file."
            )
        return (
            "Set api_key (an Aha! API key or OAuth2 token) in the config file, or run with "
            f"--config=ENV and {variable}, or set dry_run: true to only print the requests."
        )
    passed_over = (
        f"{variable} is set in the environment, but Meltano did not pass it on: "
        if exported else ""
    )
    return (
        f"api_key is not set. {passed_over}Meltano passes {variable} (from the environment or "
        "the project's .env) only for a setting the loader's meltano.yml entry declares. "
        "Add it to the entry's settings (`- name: api_key` with `kind: password` and "
        "`sensitive: true`), or add the loader from its Hub definition, which declares every "
        "setting (meltano add --plugin-type loader target-aha --from-ref "
        "docs/hub/target-aha.yml); or set dry_run: true to only print the requests."
    )
