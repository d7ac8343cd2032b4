"""Regenerate target-aha's Meltano Hub files, as the Hub's weekly metadata refresh would.

The Hub (github.com/meltano/hub) rebuilds an SDK plugin's `settings`, `capabilities` and
`supported_python_versions` from `--about --format=json` every week, keeps the rest of the
file, and writes it back with ruamel.yaml. This script does the same from the `target-aha`
installed beside this Python, so the committed files are exactly what the refresh writes, and
derives every release-specific value from pyproject.toml: `repo` and `variant` (the owner of
`[project.urls] Repository`), `name`, `namespace`, `executable`, `pip_url` and the maintainer.

    .venv/bin/python docs/hub/regenerate.py              # rewrite the files under docs/hub/
    .venv/bin/python docs/hub/regenerate.py --check      # exit 1 with a diff when one is stale
    .venv/bin/python docs/hub/regenerate.py --into HUB   # add them to a meltano/hub checkout

Files, and where they go in meltano/hub:
    target-aha.yml                          _data/meltano/loaders/target-aha/<variant>.yml
    _data/maintainers.yml                   an entry of _data/maintainers.yml
    _data/default_variants.yml              an entry of _data/default_variants.yml
    static/assets/logos/loaders/aha.svg     the same path (drawn by hand, not generated)

Edit the hand-written keys (description, usage, keywords, ...) in target-aha.yml, then run
this script: it keeps them and normalises the formatting.
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ruamel.yaml import YAML

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli below Python 3.11, and the dev group brings pytest
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFINITION = HERE / "target-aha.yml"
MAINTAINERS = HERE / "_data" / "maintainers.yml"
DEFAULT_VARIANTS = HERE / "_data" / "default_variants.yml"
LOGO = HERE / "static" / "assets" / "logos" / "loaders" / "aha.svg"
LOGO_URL = "/assets/logos/loaders/aha.svg"
PLUGIN_TYPE = "loaders"

# Capabilities the Hub keeps (hub-utils ALLOWED_CAPABILITIES_TAP | ..._TARGET): others are dropped.
HUB_CAPABILITIES = {
    "about", "activate-version", "batch", "catalog", "datatype-failsafe", "discover",
    "hard-delete", "log-based", "properties", "schema-flattening", "soft-delete", "state",
    "stream-maps", "structured-logging", "test", "validate-records",
}
# A string setting whose name contains one of these is a `password` (and sensitive) on the Hub.
SECRET_WORDS = ("password", "id", "token", "key", "secret")
ACRONYMS = {"Aws": "AWS", "Url": "URL", "Id": "ID", "Db": "Database", "Api": "API",
            "Oauth": "OAuth", "Ssh": "SSH", "Ssl": "SSL", "Gzip": "GZIP", "Jsonl": "JSONL",
            "Sqlalchemy": "SQLAlchemy"}
# Words in which the Hub leaves a period alone (elsewhere "a.b" becomes "a. b").
DOTTED_OK = ("http", "ssh", "ssl", "e.g.", '"', "`", "()", ".com")
GENERATED = (DEFINITION, MAINTAINERS, DEFAULT_VARIANTS)


class Release:
    """The release-specific values, all read from pyproject.toml."""

    def __init__(self, pyproject: dict[str, Any]) -> None:
        project = pyproject["project"]
        self.name: str = project["name"]
        self.repo: str = project["urls"]["Repository"].rstrip("/")
        url = urlparse(self.repo)
        parts = url.path.strip("/").split("/")
        if url.scheme != "https" or url.netloc != "github.com" or len(parts) != 2:
            raise SystemExit(f"[project.urls] Repository must be https://github.com/<owner>/"
                             f"<name>, not {self.repo!r}: the Hub names variants after owners")
        self.owner = parts[0]
        self.variant = self.owner.lower()  # as the Hub's tools spell a variant
        self.maintainer_label: str = project["authors"][0]["name"]
        (self.executable,) = (s for s, ref in project["scripts"].items()
                              if ref.startswith(self.name.replace("-", "_") + "."))

    @property
    def namespace(self) -> str:
        """The Python package name Meltano uses for the plugin's state and env prefix."""
        return self.name.replace("-", "_")


def label(name: str) -> str:
    """A setting's label when --about gives it no `title`, spelled as the Hub spells it."""
    titled = []
    for word in re.split(r"[_\-. ]", name):
        spelled = word.title()
        for short, long in ACRONYMS.items():
            spelled = spelled.replace(short, long)
        titled.append(spelled)
    return " ".join(titled)


def _spaced(word: str) -> list[str]:
    """One word of a description, with a space after an inner period as the Hub inserts."""
    if "i.e." in word or "e.g." in word or "." not in word or word.startswith("."):
        return [word]
    before, after = word.split(".")[:2]
    if before[-1].isnumeric() and after and after[0].isnumeric():  # 2.5, a version
        return [word]
    if any(keep in word for keep in DOTTED_OK):
        return [word]
    return word.replace(".", ". ").split()


def clean_description(text: str) -> str:
    """A description as the Hub's refresh stores it: whitespace collapsed, sentences capitalised."""
    words = [piece for word in text.split() for piece in _spaced(word)]
    sentences: list[str] = []
    for sentence in " ".join(words).split(". "):
        first, *rest = sentence.split()
        previous = sentences[-1] if sentences else ""
        if not (first[0].isupper() or first[0] == "'" or previous.endswith(("e.g", "i.e"))
                or first.startswith(("tap-", "target-", "http"))):
            first = first.capitalize()
        sentences.append(" ".join([first, *rest]))
    return ". ".join(sentences).replace("Dbt", "dbt")


def _types(prop: dict[str, Any]) -> list[str]:
    types = prop.get("type")
    return [types] if isinstance(types, str) else list(types or [])


def _kind(name: str, prop: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
    """The Meltano kind the Hub gives a JSON schema property, and its options."""
    kind = next((t for t in _types(prop) if t != "null"), None)
    if kind is None:
        kind = "array" if name == "faker_config.locale" else "string"
    if kind == "number":  # the Hub maps every JSON number to an integer setting
        return "integer", None
    if kind != "string":
        return kind, None
    lowered = name.lower()
    if prop.get("format") in ("date-time", "date") or lowered in ("start_date", "end_date"):
        return "date_iso8601", None
    if any(word in lowered for word in SECRET_WORDS) or prop.get("format") == "airbyte_secret":
        return "password", None
    if prop.get("enum"):
        return "options", [{"label": label(v), "value": v} for v in prop["enum"]]
    return "string", None


def _leaves(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any], int]]:
    """(name, property, depth) per setting: an object with declared properties by its leaves."""
    out: list[tuple[str, dict[str, Any], int]] = []
    for key, prop in schema.get("properties", {}).items():
        name = f"{prefix}{key}"
        if "object" in _types(prop) and prop.get("properties") and key != "stream_maps":
            out.extend((n, p, depth + 1) for n, p, depth in _leaves(prop, f"{name}."))
        else:
            out.append((name, prop, 0))
    if schema.get("oneOf"):
        raise SystemExit("settings with a top-level oneOf are not supported by this script")
    return out


def settings_from_about(about: dict[str, Any], existing: list[dict[str, Any]]) -> list[dict]:
    """The `settings` list the Hub's refresh builds from --about, merged with the old one."""
    old = {s["name"]: s for s in existing}
    settings = []
    for name, prop, depth in _leaves(about["settings"]):
        setting: dict[str, Any] = {"name": name, "label": prop.get("title") or label(name)}
        if name == "stream_maps":
            setting["label"] = prop.get("title", "Stream Maps")
            kind, options = "object", None
        else:
            kind, options = _kind(name, prop)
        setting["kind"] = kind
        if options:
            setting["options"] = options
        if name != "stream_maps" and prop.get("default") is not None and kind != "date_iso8601":
            setting["value"] = prop["default"]
        if kind == "password":
            setting["sensitive"] = True
        previous = old.get(name, {})
        description = prop.get("description") or ""
        kept = previous.get("description", "")
        if not description or (len(kept) > len(description) and "\n" in kept):
            setting["description"] = kept
        else:
            # The refresh cleans a description once per step it passes through: three times,
            # and once more per level of nesting. Cleaning is not idempotent ("E.g." -> "E. G.").
            for _ in range(3 + depth):
                description = clean_description(description)
            setting["description"] = description
        if str(previous.get("value", "")).startswith("$MELTANO"):
            setting["value"] = previous["value"]
        for attribute in ("placeholder", "documentation"):
            if previous.get(attribute):
                setting[attribute] = previous[attribute]
        settings.append(dict(sorted(setting.items())))
    return sorted(settings, key=lambda s: s["name"])


def definition(about: dict[str, Any], release: Release, existing: dict[str, Any]) -> dict:
    """The whole plugin definition: --about's parts, pyproject's, and the hand-written rest."""
    plugin = dict(existing)
    plugin["settings"] = settings_from_about(about, existing.get("settings", []))
    plugin["capabilities"] = sorted(c for c in about["capabilities"] if c in HUB_CAPABILITIES)
    pythons = [v for v in about.get("supported_python_versions") or []
               if re.fullmatch(r"3\.\d+", v)]
    if pythons:
        plugin["supported_python_versions"] = pythons
    required = sorted(set(about["settings"].get("required", [])))
    groups = [sorted(g) for g in existing.get("settings_group_validation", [])]
    if required and len(str([required])) > len(str(groups)):
        groups = [required]
    plugin["settings_group_validation"] = groups
    plugin.update({
        "name": release.name, "namespace": release.namespace, "executable": release.executable,
        "pip_url": release.name, "repo": release.repo, "variant": release.variant,
        "logo_url": LOGO_URL,
    })
    return plugin


def _plain(node: Any) -> Any:
    """Mappings and lists as dicts (keys sorted) and lists, as the Hub re-formats them."""
    if isinstance(node, dict):
        return {k: _plain(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    return node


def hub_yaml(data: dict[str, Any]) -> str:
    """`data` as the Hub writes a file: dumped, read back keeping quotes, sorted, dumped."""
    first = io.StringIO()
    YAML().dump(_plain(data), first)
    reader = YAML()
    reader.preserve_quotes = True
    reader.default_flow_style = False
    out = io.StringIO()
    reader.dump(_plain(reader.load(first.getvalue())), out)
    return out.getvalue()


def about_json() -> dict[str, Any]:
    """`target-aha --about --format=json` of the target-aha installed beside this Python."""
    exe = shutil.which("target-aha", path=str(Path(sys.executable).parent)) or "target-aha"
    out = subprocess.run([exe, "--about", "--format=json"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return json.loads(out)


def render(about: dict[str, Any], pyproject: dict[str, Any], existing: dict[str, Any]) -> dict:
    """Every generated file's path and text."""
    release = Release(pyproject)
    maintainer = {"label": release.maintainer_label, "name": release.variant,
                  "url": f"https://github.com/{release.owner}"}
    return {
        DEFINITION: hub_yaml(definition(about, release, existing)),
        MAINTAINERS: hub_yaml({release.variant: maintainer}),
        DEFAULT_VARIANTS: hub_yaml({PLUGIN_TYPE: {release.name: release.variant}}),
    }


def load_existing() -> dict[str, Any]:
    """The committed definition, read as the Hub reads it (keeping block styles)."""
    return YAML().load(DEFINITION.read_text()) if DEFINITION.exists() else {}


def add_to_hub(hub: Path, files: dict[Path, str]) -> list[Path]:
    """Write the definition and logo into a meltano/hub checkout and merge the two entries."""
    release = Release(tomllib.loads((REPO / "pyproject.toml").read_text()))
    defaults = hub / DEFAULT_VARIANTS.relative_to(HERE)
    current = YAML().load(defaults.read_text())[PLUGIN_TYPE].get(release.name, release.variant)
    if current != release.variant:  # another variant already the default is not replaced
        raise SystemExit(f"{defaults}: the default variant of {release.name} is already "
                         f"{current!r}; leave it, or change it by hand in the pull request")
    target = hub / "_data" / "meltano" / PLUGIN_TYPE / release.name / f"{release.variant}.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(files[DEFINITION])
    logo = hub / "static" / LOGO.relative_to(HERE / "static")
    logo.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LOGO, logo)
    written = [target, logo]
    for ours in (MAINTAINERS, DEFAULT_VARIANTS):
        theirs = hub / ours.relative_to(HERE)
        data = YAML().load(theirs.read_text())
        entry = YAML().load(files[ours])
        if ours is MAINTAINERS:  # an existing entry for the variant is the Hub's: kept
            data = dict(sorted({**entry, **data}.items()))  # the Hub keeps maintainers sorted
        else:  # sorted per plugin type
            data[PLUGIN_TYPE] = dict(sorted({**data[PLUGIN_TYPE], **entry[PLUGIN_TYPE]}.items()))
        out = io.StringIO()
        YAML().dump(data, out)
        theirs.write_text(out.getvalue())
        written.append(theirs)
    return written


def main(argv: list[str] | None = None) -> int:
    """Rewrite, check, or copy into a Hub checkout; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 with a diff when a file is stale")
    parser.add_argument("--into", type=Path, metavar="HUB",
                        help="a meltano/hub checkout to add the files to")
    args = parser.parse_args(argv)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    files = render(about_json(), pyproject, load_existing())
    if args.check:
        stale = False
        for path, text in files.items():
            old = path.read_text() if path.exists() else ""
            if old != text:
                stale = True
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(keepends=True), text.splitlines(keepends=True),
                    str(path.relative_to(REPO)), "regenerated"))
        if stale:
            print("docs/hub is stale: run `.venv/bin/python docs/hub/regenerate.py`",
                  file=sys.stderr)
        return int(stale)
    if args.into:
        for path in add_to_hub(args.into, files):
            print(f"wrote {path}")
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
