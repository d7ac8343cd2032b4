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
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
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
HUB_DIR = REPO / "docs" / "hub"
HUB_FILE = HUB_DIR / "target-aha.yml"
REGENERATE = HUB_DIR / "regenerate.py"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
REPOSITORY = PROJECT["urls"]["Repository"]
OWNER = REPOSITORY.removeprefix("https://github.com/").split("/")[0]
# The Hub's yamllint configuration (meltano/hub .yamllint.yaml), which its CI applies to
# every changed file under _data/.
HUB_YAMLLINT = """\
extends: default
rules:
  braces:
    forbid: non-empty
  document-start:
    present: false
  indentation:
    indent-sequences: false
    spaces: 2
  key-ordering: enable
  line-length: disable
  trailing-spaces: disable
  truthy: disable
"""

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
    # The Hub's refresh makes every JSON number an `integer` setting.
    for json_type, kind in (("boolean", "boolean"), ("integer", "integer"),
                            ("number", "integer"), ("object", "object"), ("array", "array")):
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
    # The Hub names a variant after the repository's owner (its maintainer), lower-cased.
    assert plugin["variant"] == OWNER.lower()
    assert plugin["label"] == "Aha!"
    assert plugin["pip_url"] == PROJECT["name"]
    assert plugin["executable"] in PROJECT["scripts"]
    assert plugin["repo"] == REPOSITORY
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPOSITORY), REPOSITORY
    # A loader's logo is under the Hub's loaders/ logos, and ships here at the same path.
    assert plugin["logo_url"].startswith("/assets/logos/loaders/"), plugin["logo_url"]
    logo = HUB_DIR / "static" / plugin["logo_url"].lstrip("/")
    assert ET.parse(logo).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert plugin["domain_url"] == "https://www.aha.io"
    # An SDK plugin with structured logging names the SDK's log parser, as the Hub's own
    # generator writes it (Meltano then configures the SDK's JSON log format).
    assert "structured-logging" in plugin["capabilities"]
    assert plugin["log_parser"] == "singer-sdk"
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
    yamllint(HUB_FILE, *sorted((HUB_DIR / "_data").glob("*.yml")))
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
        if "default" in prop and prop["default"] is not None:
            assert setting.get("value") == prop["default"], (name, setting.get("value"))
        else:
            assert "value" not in setting, name
        # Sensitive exactly where --about says secret (the Hub decides by the setting's name,
        # so a secret named otherwise would be shown in clear on the Hub).
        assert bool(setting.get("sensitive")) == bool(prop.get("secret")), name
        assert setting["label"] == prop.get("title", setting["label"]), name


def test_hub_files_are_what_the_hubs_refresh_would_write() -> None:
    # The Hub's weekly refresh rebuilds settings, capabilities and Python versions from
    # --about and rewrites the file: regenerating must give the committed files byte for byte.
    run = subprocess.run([sys.executable, REGENERATE, "--check"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]


def test_hub_file_does_not_change_with_the_version() -> None:
    # A release must not rewrite the Hub file: no default may carry the version.
    for setting in hub()["settings"]:
        assert PROJECT["version"] not in str(setting.get("value", "")), setting["name"]


def test_hub_entries_name_the_variant_and_its_maintainer() -> None:
    maintainers = yaml.safe_load((HUB_DIR / "_data" / "maintainers.yml").read_text())
    assert maintainers == {OWNER.lower(): {
        "label": PROJECT["authors"][0]["name"], "name": OWNER.lower(),
        "url": f"https://github.com/{OWNER}"}}
    defaults = yaml.safe_load((HUB_DIR / "_data" / "default_variants.yml").read_text())
    assert defaults == {"loaders": {"target-aha": hub()["variant"]}}


@pytest.mark.slow
def test_regenerate_into_a_hub_checkout(tmp_path: Path) -> None:
    # `--into` adds the files where the Hub's CI looks: the definition in a directory named
    # after the plugin (yaml_check_names), the variant among the maintainers
    # (maintainers_validate), both data files still sorted, all clean under the Hub's yamllint.
    hub_root = tmp_path / "hub"
    (hub_root / "_data").mkdir(parents=True)
    (hub_root / "_data" / "maintainers.yml").write_text(
        "meltanolabs:\n  label: Meltano Labs\n  name: meltanolabs\n"
        "  url: https://github.com/MeltanoLabs\n"
        "zzz:\n  label: Z\n  name: zzz\n  url: https://github.com/zzz\n")
    (hub_root / "_data" / "default_variants.yml").write_text(
        "extractors:\n  tap-aha: airbyte\nloaders:\n  target-csv: meltanolabs\n"
        "  target-zzz: zzz\n")
    run = subprocess.run([sys.executable, REGENERATE, "--into", hub_root],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    variant = hub()["variant"]
    definition = hub_root / "_data" / "meltano" / "loaders" / "target-aha" / f"{variant}.yml"
    assert definition.read_text() == HUB_FILE.read_text()
    assert yaml.safe_load(definition.read_text())["name"] == definition.parent.name
    assert (hub_root / "static" / hub()["logo_url"].lstrip("/")).is_file()
    maintainers = yaml.safe_load((hub_root / "_data" / "maintainers.yml").read_text())
    assert list(maintainers) == sorted(maintainers) == sorted(["meltanolabs", "zzz", variant])
    defaults = yaml.safe_load((hub_root / "_data" / "default_variants.yml").read_text())
    assert defaults["extractors"] == {"tap-aha": "airbyte"}
    assert list(defaults["loaders"]) == ["target-aha", "target-csv", "target-zzz"]
    assert defaults["loaders"]["target-aha"] == variant
    yamllint(definition, hub_root / "_data" / "maintainers.yml",
             hub_root / "_data" / "default_variants.yml")
    # Run again: nothing changes (the entries are there already).
    before = {p: p.read_text() for p in (hub_root / "_data").glob("*.yml")}
    again = subprocess.run([sys.executable, REGENERATE, "--into", hub_root],
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.read_text() for p in before} == before
    # Another variant that is already the default is not replaced.
    (hub_root / "_data" / "default_variants.yml").write_text(
        "loaders:\n  target-aha: someone-else\n")
    refused = subprocess.run([sys.executable, REGENERATE, "--into", hub_root],
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0
    assert "already 'someone-else'" in refused.stderr, refused.stderr


def yamllint(*paths: Path) -> None:
    """Lint with the Hub's yamllint rules; fail with its report."""
    run = subprocess.run([sys.executable, "-m", "yamllint", "-f", "parsable", "-d",
                          HUB_YAMLLINT, *map(str, paths)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_api_key_is_a_sensitive_password() -> None:
    declared = {s["name"]: s for s in hub()["settings"]}
    assert declared["api_key"]["kind"] == "password"
    assert declared["api_key"].get("sensitive") is True
    assert [o["value"] for o in declared["on_record_error"]["options"]] == ["fail", "skip"]


def test_hub_capabilities_and_pythons_are_abouts(about: dict[str, Any]) -> None:
    plugin = hub()
    assert sorted(plugin["capabilities"]) == sorted(about["capabilities"])
    assert set(plugin["capabilities"]) <= HUB_LOADER_CAPABILITIES
    assert {"about", "stream-maps", "schema-flattening", "structured-logging",
            "validate-records"} <= set(plugin["capabilities"])
    assert plugin["supported_python_versions"] == about["supported_python_versions"]
    # The classifiers say which Pythons; the SDK reads them into --about.
    assert plugin["supported_python_versions"] == [
        c.rsplit(" ", 1)[1] for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert "3.14" in plugin["supported_python_versions"]


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


def code_blocks(path: Path, heading: str, language: str) -> list[str]:
    """The `language` code blocks of one section (from `heading` to the next heading)."""
    text = path.read_text()
    start = text.index(f"\n{heading}\n")
    level = heading.index(" ")  # a heading of this level or above ends the section
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, start + len(heading) + 2)
    section = text[start:end.start() if end else None]
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.M | re.S)


README = REPO / "README.md"
INSTALL = "### Install: which `pip_url`"


def pip_url_forms() -> dict[str, str]:
    """The README's install table: pip_url -> when to use it."""
    text = README.read_text()
    section = text[text.index(INSTALL):]
    section = section[:section.index("\n#", 1)]
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, re.M))
    assert rows.pop("pip_url") == "when"  # the header
    return rows


def test_readme_pip_url_forms() -> None:
    # Until the first PyPI release: a clone beside the project, or the tagged release from the
    # repository (the one address pyproject.toml gives); afterwards the Hub's `target-aha`.
    forms = pip_url_forms()
    assert list(forms) == ["../target-aha", f"git+{REPOSITORY}.git@v{PROJECT['version']}",
                           hub()["pip_url"]], forms
    assert "PyPI" in forms["target-aha"]


def test_hub_readme_commands_are_the_readmes() -> None:
    # docs/hub/README.md shows the same add and install commands that the Meltano tests run
    # from the README (hub_project), plus `meltano config list`, which one of them runs.
    ours = code_blocks(HUB_DIR / "README.md", "## Use the definition without the Hub", "sh")
    readme = code_blocks(README, INSTALL, "sh")
    assert ours[0] == readme[0]
    assert ours[1] == readme[1] + "meltano config list target-aha\n"


def run_snippet(project: MeltanoProject, snippet: str) -> None:
    """Run a README shell snippet verbatim in the project, with this Meltano first on PATH."""
    assert MELTANO is not None
    path = os.pathsep.join([str(Path(MELTANO).parent), project.env.get("PATH", "")])
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet], cwd=project.root,
                         env={**project.env, "PATH": path}, capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, (snippet, run.stdout[-3000:], run.stderr[-6000:])


@pytest.fixture(scope="module")
def hub_project(tmp_path_factory: pytest.TempPathFactory) -> MeltanoProject:
    """A project set up as the README's install section says, with this checkout as the clone
    beside it: `meltano add --from-ref ../target-aha/docs/hub/target-aha.yml`, `pip_url` set
    to the clone, `meltano install`."""
    base = tmp_path_factory.mktemp("hub-project")
    (base / "target-aha").symlink_to(REPO, target_is_directory=True)
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
    add, install = code_blocks(README, INSTALL, "sh")
    run_snippet(project, add)
    project.added = yaml.safe_load((root / "meltano.yml").read_text())
    # "change the added entry's `pip_url: target-aha` to" the clone's form of the table.
    text = (root / "meltano.yml").read_text()
    assert text.count("pip_url: target-aha\n") == 1, text
    clone = next(iter(pip_url_forms()))
    (root / "meltano.yml").write_text(text.replace("pip_url: target-aha\n",
                                                   f"pip_url: {clone}\n"))
    run_snippet(project, install)
    return project


@needs_meltano
@pytest.mark.meltano
def test_meltano_add_from_ref_adds_the_loader(hub_project: MeltanoProject) -> None:
    plugins = hub_project.added["plugins"]
    assert list(plugins) == ["loaders"], list(plugins)
    (loader,) = plugins["loaders"]
    assert loader["name"] == "target-aha"
    assert loader["pip_url"] == "target-aha"
    assert [s["name"] for s in loader["settings"]] == [s["name"] for s in hub()["settings"]]


@needs_meltano
@pytest.mark.meltano
def test_meltano_invoke_about_lists_the_hub_settings(hub_project: MeltanoProject) -> None:
    run = hub_project.run("invoke", "target-aha", "--about", "--format=json")
    about = json.loads(run.stdout)
    assert about["name"] == "target-aha"
    assert about["version"] == PROJECT["version"]
    assert set(about["settings"]["properties"]) == {
        s["name"].split(".")[0] for s in hub()["settings"]}
    assert sorted(about["capabilities"]) == sorted(hub()["capabilities"])


@needs_meltano
@pytest.mark.meltano
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
@pytest.mark.meltano
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


def test_usage_snippet_is_a_working_config(tmp_path: Path) -> None:
    # The Hub page's `usage` example, as the plugin's config (a dry run, so no key is needed):
    # one record of its stream becomes one create in its release.
    (block,) = re.findall(r"^```yaml\n(.*?)^```", hub()["usage"], re.M | re.S)
    config = yaml.safe_load(block)["config"]
    config.update({"dry_run": True, "results_path": str(tmp_path / "results.jsonl"),
                   "ledger_path": str(tmp_path / "ledger.sqlite")})
    (tmp_path / "config.json").write_text(json.dumps(config))
    messages = [
        {"type": "SCHEMA", "stream": "intake_requests", "key_properties": ["request_id"],
         "schema": {"type": "object", "properties": {"request_id": {"type": "string"},
                                                     "name": {"type": "string"}}}},
        {"type": "RECORD", "stream": "intake_requests",
         "record": {"request_id": "R-1", "name": "Dark mode"}},
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_AHA_")}
    run = subprocess.run([EXECUTABLE, "--config", str(tmp_path / "config.json")], cwd=tmp_path,
                         input="".join(json.dumps(m) + "\n" for m in messages), env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    requests = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert [(r["method"], r["url"].split("?")[0]) for r in requests] == [
        ("POST", "https://mycompany.aha.io/api/v1/releases/PRJ1-R-1/features")]


@needs_meltano
@pytest.mark.meltano
def test_meltano_round_trips_the_hub_numbers(hub_project: MeltanoProject) -> None:
    # Every number is an `integer` setting in the Hub file: `meltano config set` stores a
    # plain number, and one from the environment reaches target-aha (Meltano 4.4 crashed on
    # `decimal` settings from the environment: "Decimal is not JSON serializable").
    numbers = [s["name"] for s in hub()["settings"] if s["kind"] in {"integer", "decimal"}]
    assert "request_timeout" in numbers
    assert {s["kind"] for s in hub()["settings"] if s["name"] in numbers} == {"integer"}
    hub_project.run("config", "set", "target-aha", "request_timeout", "30")
    stored = yaml.safe_load((hub_project.root / "meltano.yml").read_text())
    (loader,) = stored["plugins"]["loaders"]
    assert loader["config"]["request_timeout"] == 30
    assert "!!" not in (hub_project.root / "meltano.yml").read_text()
    printed = json.loads(hub_project.run(
        "config", "print", "target-aha",
        extra_env={"TARGET_AHA_MAX_REQUESTS_PER_MINUTE": "120"}).stdout)
    assert (printed["request_timeout"], printed["max_requests_per_minute"]) == (30, 120)
    run = hub_project.run("invoke", "target-aha", "--about", "--format=json",
                          extra_env={"TARGET_AHA_MAX_REQUESTS_PER_MINUTE": "120"})
    assert json.loads(run.stdout)["name"] == "target-aha"
