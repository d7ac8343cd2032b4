"""What the settings schema cannot say: secrets, combinations, the account's URL.

Run before the SDK's own validation (`check_given`: its messages would quote a secret's value)
and after it (`check_combined`: once defaults are filled in), each failing with a
`ConfigError` that names the setting and what to write instead.
"""

from __future__ import annotations

import re
import typing as t

from target_aha import settings
from target_aha.destination import parse_webhook_url
from target_aha.errors import ConfigError
from target_aha.redact import REDACTOR
from target_aha.settings import SETTINGS
from target_aha.urls import check_header, parse_http_url

SECRET_SETTINGS = tuple(
    name for name, spec in SETTINGS["properties"].items() if spec.get("secret")
)
"""Settings whose values are never shown, not even by config validation."""
DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
"""What `subdomain` must be: one DNS label (it becomes https://{subdomain}.aha.io)."""


def check_given(config: dict[str, t.Any], schema: dict[str, t.Any]) -> None:
    """The settings as given, before the schema is checked; the secrets known to the redactor.

    A secret setting of the wrong type is reported here, by name only: the SDK's message
    would quote the value. An unknown setting, one target-aha refuses, or a rate with a
    fraction is an error here too; whole numbers written as floats become ints in `config`.
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
    settings.check_names(config, schema)
    settings.check_numbers(config, schema)


def check_combined(config: t.Mapping[str, t.Any], base_url: str, user_agent: str,
                   env_var_prefix: str) -> None:
    """Required combinations, the API key's characters, the URLs and the User-Agent."""
    if not config.get("subdomain") and not config.get("base_url"):
        raise ConfigError(
            "Set subdomain (mycompany for https://mycompany.aha.io) or base_url "
            "(for a custom domain or the local sandbox)."
        )
    if not config.get("api_key") and not config.get("dry_run"):
        raise ConfigError(settings.missing_api_key(env_var_prefix))
    api_key = config.get("api_key") or ""
    if any(not (" " <= c <= "~") for c in api_key):
        raise ConfigError(
            "api_key contains a line break or another control character, or a non-ASCII "
            "character (the key is not shown); copy the key again without the line "
            "break (a file read into TARGET_AHA_API_KEY often ends with one)."
        )
    check_header("User-Agent", user_agent, "user_agent")
    subdomain = config.get("subdomain")
    if not config.get("base_url") and not DNS_LABEL.fullmatch(subdomain or ""):
        raise ConfigError(
            f"subdomain {subdomain!r} is not an Aha! account name: it must be one DNS "
            "label (letters, digits and hyphens, at most 63, no hyphen first or last), "
            "mycompany for https://mycompany.aha.io; for another domain set base_url."
        )
    parse_http_url(base_url, "base_url")
    if "?" in base_url:  # even an empty one: every path would end up in the query
        raise ConfigError(
            "base_url has a ?query; give the API root only, such as "
            "https://mycompany.aha.io/api/v1."
        )
    parse_webhook_url(config.get("response_webhook_url"), "response_webhook_url")
