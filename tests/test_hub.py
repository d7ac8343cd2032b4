"""The Meltano Hub definition docs/hub/target-aha.yml: in sync with --about, usable by Meltano.

The first tests compare the file with `target-aha --about --format=json` (names, kinds,
defaults, capabilities). The others drive the real Meltano in one throwaway project:
`meltano add --from-ref docs/hub/target-aha.yml`, this checkout installed as the plugin, then
`meltano invoke target-aha --about`, `meltano config`, and a dry run through `meltano invoke`.
They are skipped only when no Meltano is found (as in tests/test_meltano.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXECUTABLE, find_meltano

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
    # Either subdomain or base_url, and the API key.
    assert {frozenset(g) for g in plugin["settings_group_validation"]} == {
        frozenset({"subdomain", "api_key"}), frozenset({"base_url", "api_key"})}
    names = [s["name"] for s in plugin["settings"]]
    assert len(names) == len(set(names))
    for group in plugin["settings_group_validation"]:
        assert set(group) <= set(names), group
    for setting in plugin["settings"]:
        assert set(setting) <= HUB_SETTING_KEYS, setting["name"]
        assert setting["kind"] in HUB_KINDS, setting["name"]
        assert setting.get("label", "").strip(), setting["name"]
        assert setting.get("description", "").strip(), setting["name"]


def test_hub_file_is_formatted_like_the_hubs() -> None:
    # The Hub's linter (hub-utils yaml_lint.py, yamllint with key-ordering) wants every
    # mapping's keys, the settings (by name), the capabilities and each setting group sorted.
    plugin = hub()

    def check_sorted(node: Any, where: str) -> None:
        if isinstance(node, dict):
            assert list(node) == sorted(node), f"keys of {where} are not sorted"
            for key, value in node.items():
                check_sorted(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                check_sorted(item, f"{where}[{i}]")

    check_sorted(plugin, "target-aha.yml")
    names = [s["name"] for s in plugin["settings"]]
    assert names == sorted(names)
    assert plugin["capabilities"] == sorted(plugin["capabilities"])
    for group in plugin["settings_group_validation"]:
        assert group == sorted(group), group


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
    assert declared["api_key"].get("sensitive") is True
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


MELTANO = find_meltano()
needs_meltano = pytest.mark.skipif(
    MELTANO is None,
    reason="Meltano is not installed: `make install` puts it in .venv-meltano "
    "(or set MELTANO_EXECUTABLE)",
)
SECRET = "hub-test-secret-token"
@dataclass
class MeltanoProject:
    """A throwaway Meltano project with its own system database."""

    root: Path
    env: dict[str, str]
    added: dict[str, Any] = field(default_factory=dict)  # meltano.yml right after `meltano add`

    def run(self, *args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        assert MELTANO is not None
        run = subprocess.run(
            [MELTANO, *args], cwd=self.root, env={**self.env, **(extra_env or {})},
            input=stdin if stdin is not None else "", capture_output=True, text=True,
            timeout=300, check=False,
        )
        if check:
            assert run.returncode == 0, (args, run.stdout[-3000:], run.stderr[-6000:])
        return run


@pytest.fixture(scope="module")
def hub_project(tmp_path_factory: pytest.TempPathFactory) -> MeltanoProject:
    """A project to which `meltano add --from-ref docs/hub/target-aha.yml` added the loader,
    then installed from this checkout."""
    base = tmp_path_factory.mktemp("hub-project")
    root = base / "project"
    root.mkdir()
    (root / "meltano.yml").write_text(
        "project_id: target-aha-hub-test\n"
        "send_anonymous_usage_stats: false\n"
        "default_environment: dev\n"
        "environments:\n- name: dev\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_AHA_", "MELTANO_"))}
    env.update({
        "MELTANO_DATABASE_URI": f"sqlite:///{base / 'meltano.db'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    })
    project = MeltanoProject(root, env)
    # As a user would add it. (`meltano add loader target-aha` reads `loader` as a second
    # plugin name in Meltano 4, adding a utility too: the type goes in --plugin-type.)
    project.run("add", "--plugin-type", "loader", "target-aha", "--from-ref", str(HUB_FILE),
                "--no-install")
    project.added = yaml.safe_load((root / "meltano.yml").read_text())
    # Install this checkout instead of the release on PyPI (built from source, not editable).
    config = yaml.safe_load((root / "meltano.yml").read_text())
    config["plugins"]["loaders"][0]["pip_url"] = str(REPO)
    (root / "meltano.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.run("install", "--plugin-type", "loader", "target-aha")
    return project


@needs_meltano
def test_meltano_add_from_ref_adds_the_loader(hub_project: MeltanoProject) -> None:
    plugins = hub_project.added["plugins"]
    assert list(plugins) == ["loaders"], list(plugins)
    (loader,) = plugins["loaders"]
    assert loader["name"] == "target-aha"
    assert loader["pip_url"] == "target-aha"
    assert [s["name"] for s in loader["settings"]] == [s["name"] for s in hub()["settings"]]


@needs_meltano
def test_meltano_invoke_about_lists_the_hub_settings(hub_project: MeltanoProject) -> None:
    run = hub_project.run("invoke", "target-aha", "--about", "--format=json")
    about = json.loads(run.stdout)
    assert about["name"] == "target-aha"
    assert about["version"] == PROJECT["version"]
    assert set(about["settings"]["properties"]) == {
        s["name"].split(".")[0] for s in hub()["settings"]}
    assert sorted(about["capabilities"]) == sorted(hub()["capabilities"])


@needs_meltano
def test_meltano_keeps_the_api_key_secret(hub_project: MeltanoProject) -> None:
    root = hub_project.root
    set_key = hub_project.run("config", "set", "target-aha", "api_key", SECRET)
    assert SECRET not in set_key.stdout + set_key.stderr
    assert f"TARGET_AHA_API_KEY='{SECRET}'" in (root / ".env").read_text()
    assert SECRET not in (root / "meltano.yml").read_text()
    listed = hub_project.run("config", "list", "target-aha").stdout
    assert "api_key, subdomain" in listed, listed  # the Hub file's setting groups
    assert "api_key, base_url" in listed, listed
    printed = json.loads(hub_project.run("config", "print", "target-aha").stdout)
    assert SECRET not in json.dumps(printed)
    assert printed["on_record_error"] == "fail"  # the Hub file's default


@needs_meltano
def test_meltano_dry_run_with_the_hub_settings(
    hub_project: MeltanoProject, tmp_path: Path,
) -> None:
    # The Hub's defaults, a number set in meltano.yml, and env vars named TARGET_AHA_<SETTING>
    # (string, boolean, integer, object) reach target-aha and pass its validation; the API key
    # comes from .env.
    hub_project.run("config", "set", "target-aha", "api_key", SECRET)
    hub_project.run("config", "set", "target-aha", "max_requests_per_second", "3")
    messages = [
        {"type": "SCHEMA", "stream": "ideas", "key_properties": ["id"],
         "schema": {"type": "object", "properties": {"id": {"type": "string"},
                                                     "name": {"type": "string"}}}},
        {"type": "RECORD", "stream": "ideas", "record": {"id": "I-1", "name": "Dark mode"}},
    ]
    run = hub_project.run(
        "invoke", "target-aha",
        stdin="".join(json.dumps(m) + "\n" for m in messages),
        extra_env={
            "TARGET_AHA_SUBDOMAIN": "mycompany",
            "TARGET_AHA_DRY_RUN": "true",
            "TARGET_AHA_MAX_CONCURRENCY": "3",
            "TARGET_AHA_REQUEST_TIMEOUT": "30",
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


def test_hub_settings_have_no_decimal_kind() -> None:
    # Meltano 4.4 cannot pass a `decimal` setting from the environment (its JSON encoder knows
    # no Decimal) and writes one set with `meltano config set` as !!float: none may be decimal.
    assert [s["name"] for s in hub()["settings"] if s["kind"] == "decimal"] == []
