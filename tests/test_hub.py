"""The Meltano Hub definition docs/hub/target-aha.yml: in sync with --about, usable by Meltano.

The first tests compare the file with `target-aha --about --format=json` (names, kinds,
defaults, capabilities). The last one is a real Meltano run in a throwaway project:
`meltano add --from-ref docs/hub/target-aha.yml`, then this checkout installed as the plugin,
`meltano invoke target-aha --about`, `meltano config`, and a dry run through `meltano invoke`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXECUTABLE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli below Python 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
HUB_FILE = REPO / "docs" / "hub" / "target-aha.yml"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

# What the Hub's JSON schemas (meltano/hub, schemas/plugin_definitions/loaders.schema.json and
# schemas/common/base_setting.schema.json) allow in a loader definition and in a setting.
HUB_LOADER_KEYS = {
    "capabilities", "name", "pip_url", "variant", "description", "executable", "repo",
    "namespace", "logo_url", "label", "settings", "docs", "python", "settings_group_validation",
    "commands", "dialect", "target_schema", "hidden", "requires", "maintenance_status",
    "quality", "domain_url", "keywords", "definition", "next_steps", "settings_preamble",
    "usage", "prereq", "supported_python_versions", "log_parser",
}
HUB_SETTING_KEYS = {
    "name", "aliases", "label", "value", "placeholder", "kind", "description", "tooltip",
    "documentation", "env", "value_processor", "value_post_processor", "oauth", "options",
    "docs", "hidden", "sensitive",
}
HUB_KINDS = {
    "oauth", "hidden", "password", "date_iso8601", "file", "email", "integer", "options",
    "object", "array", "boolean", "string", "decimal",
}
HUB_LOADER_CAPABILITIES = {
    "about", "stream-maps", "activate-version", "batch", "soft-delete", "hard-delete",
    "datatype-failsafe", "schema-flattening", "target-schema", "validate-records",
    "structured-logging",
}
# Settings whose --about default is not a constant: user_agent's carries the installed version,
# so the Hub file leaves it to target-aha instead of pinning one version in every project.
DEFAULT_NOT_PINNED = {"user_agent"}


def hub() -> dict[str, Any]:
    return yaml.safe_load(HUB_FILE.read_text())


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    out = subprocess.run([EXECUTABLE, "--about", "--format=json"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return json.loads(out)


def schema_types(prop: dict[str, Any]) -> set[str]:
    types = prop.get("type")
    types = [types] if isinstance(types, str) else (types or [])
    return set(types) - {"null"}


def expected_settings(about: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """--about's settings as the Hub lists them: an object with declared sub-properties by its
    leaves (`faker_config.seed`), as the Hub's generator does, except stream_maps."""
    out: dict[str, dict[str, Any]] = {}
    for name, prop in about["settings"]["properties"].items():
        if "object" in schema_types(prop) and prop.get("properties") and name != "stream_maps":
            for sub, sub_prop in prop["properties"].items():
                out[f"{name}.{sub}"] = sub_prop
        else:
            out[name] = prop
    return out


def expected_kind(prop: dict[str, Any]) -> str:
    """The Meltano kind of a JSON schema property."""
    types = schema_types(prop) or {t for alt in prop.get("oneOf", []) for t in schema_types(alt)}
    if prop.get("secret"):
        return "password"
    if prop.get("enum"):
        return "options"
    for json_type, kind in (("boolean", "boolean"), ("integer", "integer"),
                            ("number", "decimal"), ("object", "object"), ("array", "array")):
        if types == {json_type}:
            return kind
    if "array" in types:  # a string or a list of them (faker_config.locale)
        return "array"
    if "string" in types:  # a string or another scalar (faker_config.seed)
        return "string"
    raise AssertionError(f"no kind for {prop}")


def test_hub_file_is_a_hub_loader_definition() -> None:
    plugin = hub()
    assert set(plugin) <= HUB_LOADER_KEYS, set(plugin) - HUB_LOADER_KEYS
    assert plugin["name"] == PROJECT["name"] == "target-aha"
    assert plugin["namespace"] == "target_aha"
    assert plugin["variant"] == "target-aha"
    assert plugin["label"] == "Aha!"
    assert plugin["pip_url"] == PROJECT["name"]
    assert plugin["executable"] in PROJECT["scripts"]
    assert plugin["repo"].startswith("https://github.com/")
    assert plugin["domain_url"] == "https://www.aha.io"
    assert plugin["maintenance_status"] == "active"
    assert plugin["quality"] in {"gold", "silver", "bronze", "unknown"}
    assert plugin["description"].strip()
    assert {"meltano_sdk", "aha"} <= set(plugin["keywords"])
    assert plugin["settings_group_validation"] == [["subdomain", "api_key"],
                                                   ["base_url", "api_key"]]
    names = [s["name"] for s in plugin["settings"]]
    assert names == sorted(names), "settings are listed in alphabetical order, like the Hub's"
    assert len(names) == len(set(names))
    for group in plugin["settings_group_validation"]:
        assert set(group) <= set(names), group
    for setting in plugin["settings"]:
        assert set(setting) <= HUB_SETTING_KEYS, setting["name"]
        assert setting["kind"] in HUB_KINDS, setting["name"]
        assert setting.get("label", "").strip(), setting["name"]
        assert setting.get("description", "").strip(), setting["name"]


def test_hub_settings_are_exactly_what_about_lists(about: dict[str, Any]) -> None:
    declared = {s["name"]: s for s in hub()["settings"]}
    expected = expected_settings(about)
    assert set(declared) == set(expected), (
        f"docs/hub/target-aha.yml lacks {sorted(set(expected) - set(declared))}, "
        f"has extra {sorted(set(declared) - set(expected))}")
    for name, prop in expected.items():
        setting = declared[name]
        assert setting["kind"] == expected_kind(prop), (name, setting["kind"], prop)
        if prop.get("enum"):
            assert [o["value"] for o in setting["options"]] == prop["enum"], name
            assert all(o.get("label") for o in setting["options"]), name
        # `value` is the Hub's default: --about's, and none where --about has none.
        if name in DEFAULT_NOT_PINNED:
            assert "value" not in setting, name
        elif "default" in prop and prop["default"] is not None:
            assert setting.get("value") == prop["default"], (name, setting.get("value"))
        else:
            assert "value" not in setting, name
        # Sensitive exactly where --about says secret.
        assert bool(setting.get("sensitive")) == bool(prop.get("secret")), name


def test_api_key_is_a_sensitive_password() -> None:
    declared = {s["name"]: s for s in hub()["settings"]}
    assert declared["api_key"]["kind"] == "password"
    assert declared["api_key"]["sensitive"] is True
    assert [o["value"] for o in declared["on_record_error"]["options"]] == ["fail", "skip"]


def test_hub_capabilities_and_pythons_are_abouts(about: dict[str, Any]) -> None:
    plugin = hub()
    assert sorted(plugin["capabilities"]) == sorted(about["capabilities"])
    assert set(plugin["capabilities"]) <= HUB_LOADER_CAPABILITIES
    assert {"about", "stream-maps", "schema-flattening", "validate-records"} <= set(
        plugin["capabilities"])
    assert plugin["supported_python_versions"] == about["supported_python_versions"]


def test_hub_file_agrees_with_the_projects_meltano_yml() -> None:
    # The repository's meltano.yml declares (some of) the same settings: same kinds.
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-aha"]
    declared = {s["name"]: s for s in hub()["settings"]}
    assert loader["namespace"] == hub()["namespace"]
    assert loader["executable"] == hub()["executable"]
    for setting in loader.get("settings", []):
        if setting["name"] in declared:
            ours = declared[setting["name"]]
            assert setting["kind"] == ours["kind"], setting["name"]
            assert bool(setting.get("sensitive")) == bool(ours.get("sensitive")), setting["name"]


# --- A real Meltano project ---------------------------------------------------------------


def find_meltano() -> str | None:
    """$MELTANO_EXECUTABLE, else the project's .venv-meltano, else meltano on PATH
    (as tests/test_meltano.py finds it)."""
    candidates = [os.environ.get("MELTANO_EXECUTABLE"),
                  str(REPO / ".venv-meltano" / "bin" / "meltano"),
                  shutil.which("meltano")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


MELTANO = find_meltano()
needs_meltano = pytest.mark.skipif(
    MELTANO is None,
    reason="Meltano is not installed: `make install` puts it in .venv-meltano "
    "(or set MELTANO_EXECUTABLE)",
)
SECRET = "hub-test-secret-token"
DECIMAL_ENV_BUG = "Object of type Decimal is not JSON serializable"


def test_usage_names_the_decimal_settings() -> None:
    # The Hub page's note on Meltano's decimal-from-env bug names every decimal setting.
    usage = hub()["usage"]
    decimals = {s["name"] for s in hub()["settings"] if s["kind"] == "decimal"}
    assert decimals
    for name in decimals:
        assert name in usage, name


@needs_meltano
def test_meltano_adds_installs_and_runs_the_hub_definition(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "meltano.yml").write_text(
        "project_id: target-aha-hub-test\n"
        "send_anonymous_usage_stats: false\n"
        "default_environment: dev\n"
        "environments:\n- name: dev\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_AHA_", "MELTANO_"))}
    env.update({
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    })

    def meltano(*args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
        assert MELTANO is not None
        run = subprocess.run(
            [MELTANO, *args], cwd=project, env={**env, **(extra_env or {})}, input=stdin,
            capture_output=True, text=True, timeout=300, check=False,
            **({} if stdin is not None else {"stdin": subprocess.DEVNULL}),
        )
        assert run.returncode == 0, (args, run.stdout[-3000:], run.stderr[-6000:])
        return run

    # 1. Add the loader from the Hub file, as a user would (`meltano add loader target-aha` in
    #    Meltano 4 would read `loader` as a second plugin name: the type goes in --plugin-type).
    meltano("add", "--plugin-type", "loader", "target-aha", "--from-ref", str(HUB_FILE),
            "--no-install")
    config = yaml.safe_load((project / "meltano.yml").read_text())
    assert list(config["plugins"]) == ["loaders"], config["plugins"].keys()
    (loader,) = config["plugins"]["loaders"]
    assert loader["name"] == "target-aha"
    assert loader["pip_url"] == "target-aha"
    assert [s["name"] for s in loader["settings"]] == [s["name"] for s in hub()["settings"]]

    # 2. Install this checkout instead of the release on PyPI (same build, from source).
    loader["pip_url"] = str(REPO)
    (project / "meltano.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    meltano("install", "--plugin-type", "loader", "target-aha")

    # 3. The installed plugin describes itself: every setting the Hub file lists.
    about = json.loads(meltano("invoke", "target-aha", "--about", "--format=json").stdout)
    assert about["name"] == "target-aha"
    assert about["version"] == PROJECT["version"]
    top_level = {s["name"].split(".")[0] for s in hub()["settings"]}
    assert set(about["settings"]["properties"]) == top_level
    assert sorted(about["capabilities"]) == sorted(hub()["capabilities"])

    # 4. Meltano's settings: the API key is sensitive (kept in .env, redacted when printed),
    #    and the setting groups are the Hub file's.
    set_key = meltano("config", "set", "target-aha", "api_key", SECRET)
    assert SECRET not in set_key.stdout + set_key.stderr
    assert f"TARGET_AHA_API_KEY='{SECRET}'" in (project / ".env").read_text()
    assert SECRET not in (project / "meltano.yml").read_text()
    listed = meltano("config", "list", "target-aha").stdout
    assert "api_key, subdomain" in listed and "api_key, base_url" in listed, listed
    printed = json.loads(meltano("config", "print", "target-aha").stdout)
    assert SECRET not in json.dumps(printed)
    assert printed["on_record_error"] == "fail"

    # 5. A dry run through Meltano: the Hub's defaults, a decimal set in meltano.yml, and
    #    env vars named TARGET_AHA_<SETTING> (string, boolean, integer, object) reach target-aha
    #    and pass its validation; the key comes from .env.
    meltano("config", "set", "target-aha", "max_requests_per_second", "2.5")
    messages = [
        {"type": "SCHEMA", "stream": "ideas", "key_properties": ["id"],
         "schema": {"type": "object", "properties": {"id": {"type": "string"},
                                                     "name": {"type": "string"}}}},
        {"type": "RECORD", "stream": "ideas", "record": {"id": "I-1", "name": "Dark mode"}},
    ]
    run = meltano(
        "invoke", "target-aha",
        stdin="".join(json.dumps(m) + "\n" for m in messages),
        extra_env={
            "TARGET_AHA_SUBDOMAIN": "mycompany",
            "TARGET_AHA_DRY_RUN": "true",
            "TARGET_AHA_MAX_CONCURRENCY": "3",
            "TARGET_AHA_STREAMS": json.dumps(
                {"ideas": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}}),
            "TARGET_AHA_RESULTS_PATH": str(tmp_path / "results.jsonl"),
            "TARGET_AHA_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        },
    )
    # Meltano relays the plugin's stderr through its own log lines: find the JSON in them.
    requests = [json.loads(line[line.index('{"method"'):]) for line in run.stderr.splitlines()
                if '{"method"' in line]
    assert len(requests) == 1, run.stderr[-6000:]
    (request,) = requests
    assert request["method"] == "POST"
    assert request["url"].startswith("https://mycompany.aha.io/api/v1/releases/PRJ1-R-1/features")
    assert request["body"] == {"feature": {"id": "I-1", "name": "Dark mode"}}
    assert SECRET not in run.stdout + run.stderr
    (result,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert result["key"] == "I-1"

    # 6. Meltano 4.4 cannot pass a decimal setting from an environment variable (it writes the
    #    plugin's config with a JSON encoder that knows no Decimal): the Hub page says so, and
    #    this notices when a Meltano release fixes it.
    assert MELTANO is not None
    env_decimal = subprocess.run(
        [MELTANO, "invoke", "target-aha", "--about", "--format=json"], cwd=project,
        env={**env, "TARGET_AHA_REQUEST_TIMEOUT": "30"}, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL, check=False,
    )
    if env_decimal.returncode == 0:
        pytest.fail("This Meltano passes decimal settings from env vars: drop the note on it "
                    "from `usage` in docs/hub/target-aha.yml (and this check)")
    assert DECIMAL_ENV_BUG in env_decimal.stderr, env_decimal.stderr[-3000:]
    assert DECIMAL_ENV_BUG in hub()["usage"]
