"""Packaging: the sdist and wheel a release would upload, and the wheel installed as a user would.

The distributions are built with `python -m build` (from the dev dependency group: sdist, then
the wheel from the sdist, so a file the sdist forgets breaks the wheel). The wheel is then
installed with pip into a fresh virtualenv and run from outside the checkout: `--version`,
`--about`, and a load into the sandbox it ships.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement  # pytest depends on packaging
from packaging.version import Version

from tests.conftest import EXECUTABLE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli below Python 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
NAME, VERSION = PROJECT["name"], PROJECT["version"]
DIST = NAME.replace("-", "_")  # target_aha: the file-name form of the distribution name
PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14"]
# What the sdist ships besides what every hatchling sdist has (pyproject.toml, PKG-INFO,
# .gitignore).
SDIST_PATHS = PYPROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]["only-include"]
# Never in a distribution: local state, caches, virtualenvs, build output.
NEVER = (".git/", ".venv/", ".venv-meltano/", ".meltano/", "output/", "dist/", "build/",
         ".target-aha/", ".pytest_cache/", ".ruff_cache/", ".mypy_cache/", "__pycache__/")
TIMEOUT = 600


def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False, **kwargs)
    assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-6000:])
    return proc


@dataclass
class Dists:
    sdist: Path
    wheel: Path

    def sdist_names(self) -> list[str]:
        """Paths inside the sdist, without its `target_aha-<version>/` prefix."""
        with tarfile.open(self.sdist) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
        prefix = f"{DIST}-{VERSION}/"
        assert all(n.startswith(prefix) for n in names), names
        return [n[len(prefix):] for n in names]

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as whl:
            return whl.namelist()

    def wheel_text(self, name: str) -> str:
        with zipfile.ZipFile(self.wheel) as whl:
            return whl.read(f"{DIST}-{VERSION}.dist-info/{name}").decode()


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """`python -m build` of this checkout: an sdist, then a wheel built from the sdist."""
    base = tmp_path_factory.mktemp("packaging")
    out = base / "dist"
    run([sys.executable, "-m", "build", "--outdir", out, REPO], cwd=base)
    sdists = list(out.glob("*.tar.gz"))
    wheels = list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return Dists(sdists[0], wheels[0])


@pytest.fixture(scope="module")
def venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the wheel (and its dependencies) installed by pip."""
    path = tmp_path_factory.mktemp("wheel-venv") / "venv"
    run([sys.executable, "-m", "venv", path])
    run([path / "bin" / "python", "-m", "pip", "install", "--quiet", dists.wheel])
    return path


@pytest.mark.packaging
def test_file_names_carry_the_pyproject_version(dists: Dists) -> None:
    assert dists.sdist.name == f"{DIST}-{VERSION}.tar.gz"
    assert dists.wheel.name == f"{DIST}-{VERSION}-py3-none-any.whl"


@pytest.mark.packaging
def test_sdist_has_the_sources_and_no_local_state(dists: Dists) -> None:
    names = dists.sdist_names()
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= set(names)
    package = {n for n in names if n.startswith("target_aha/")}
    assert {"target_aha/__init__.py", "target_aha/target.py",
            "target_aha/sandbox/__main__.py"} <= package
    tracked = git_files("target_aha")
    if tracked is not None:
        assert tracked <= package, sorted(tracked - package)
    leaked = [n for n in names if any(n.startswith(p) or f"/{p}" in n for p in NEVER)
              or n.endswith((".pyc", ".sqlite"))]
    assert not leaked, leaked


@pytest.mark.packaging
def test_sdist_ships_exactly_the_listed_files(dists: Dists) -> None:
    # pyproject's sdist list, nothing else: not the demo, tests, benchmarks, Makefile or
    # meltano.yml, nor a file that lies untracked in the tree (one used to be shipped).
    assert SDIST_PATHS == ["target_aha", "docs", "README.md", "LICENSE"]
    names = set(dists.sdist_names())
    listed = {n for n in names if any(n == p or n.startswith(f"{p}/") for p in SDIST_PATHS)}
    # hatchling adds .gitignore to every sdist (it tells what the build left out).
    assert names - listed == {"pyproject.toml", "PKG-INFO", ".gitignore"}, sorted(names - listed)
    tracked = set().union(*(git_files(p) or set() for p in SDIST_PATHS))
    if git_files(".") is not None:
        assert listed == tracked, (f"not tracked by git: {sorted(listed - tracked)}; "
                                   f"missing: {sorted(tracked - listed)}")


@pytest.mark.packaging
def test_untracked_files_stay_out_of_the_sdist(tmp_path: Path) -> None:
    # A stray file beside the sources (an editor's scratch copy, a local note) is not shipped.
    tree = tmp_path / "tree"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(*[p.rstrip("/") for p in NEVER]))
    (tree / "scratch.py").write_text("secret = 'do not ship'\n")
    (tree / "notes").mkdir()
    (tree / "notes" / "todo.md").write_text("local\n")
    out = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out, tree], cwd=tmp_path)
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    assert not {"scratch.py", "notes/todo.md"} & names, sorted(names)
    assert "target_aha/target.py" in names


@pytest.mark.packaging
def test_wheel_has_the_package_only(dists: Dists) -> None:
    names = dists.wheel_names()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"target_aha", f"{DIST}-{VERSION}.dist-info"}, top
    for unwanted in ("tests/", "benchmarks/", "demo/", "docs/"):
        assert not [n for n in names if n.startswith(unwanted)], unwanted
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    # Every file of the package in the sdist made it into the wheel (sandbox included).
    in_sdist = {n for n in dists.sdist_names() if n.startswith("target_aha/")}
    assert {n for n in names if n.startswith("target_aha/")} == in_sdist


@pytest.mark.packaging
def test_wheel_metadata(dists: Dists) -> None:
    meta = email.parser.Parser().parsestr(dists.wheel_text("METADATA"))
    assert meta["Name"] == NAME
    assert meta["Version"] == VERSION
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier") or []
    for python in PYTHONS:
        assert f"Programming Language :: Python :: {python}" in classifiers, python
    assert sorted(classifiers) == sorted(PROJECT["classifiers"])
    for required in ("Programming Language :: Python :: 3 :: Only",
                     "Operating System :: OS Independent"):
        assert required in classifiers, required
    for prefix in ("Development Status :: ", "Intended Audience :: ", "Topic :: "):
        assert any(c.startswith(prefix) for c in classifiers), prefix
    assert meta["Author"] == PROJECT["authors"][0]["name"]
    assert meta["License-Expression"] == "Apache-2.0"
    # Every project URL is on the one repository address (the release process's setting).
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert urls == PROJECT["urls"], urls
    assert all(u.startswith(PROJECT["urls"]["Repository"]) for u in urls.values()), urls
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().strip().startswith("# target-aha")  # the README
    # Runtime requirements are pyproject's dependencies; the dev tools are not published.
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    runtime = {(r.name, r.specifier) for r in requires if r.marker is None}
    assert runtime == {(r.name, r.specifier)
                       for r in map(Requirement, PROJECT["dependencies"])}, runtime
    assert meta.get_all("Provides-Extra") == ["postgres"]
    entry_points = dists.wheel_text("entry_points.txt")
    assert re.search(r"^target-aha = target_aha\.cli:main$", entry_points, re.M), (
        entry_points)


def test_dev_tools_are_a_dependency_group() -> None:
    # PEP 735: installed by `make install` (pip --group), never an extra users could pick.
    assert "dev" not in PROJECT.get("optional-dependencies", {})
    dev = {Requirement(r).name for r in PYPROJECT["dependency-groups"]["dev"]}
    assert {"build", "pytest", "ruff", "mypy", "ruamel.yaml", "yamllint"} <= dev, dev
    makefile = (REPO / "Makefile").read_text()
    assert "--group dev" in makefile
    assert "[dev]" not in makefile


def test_build_backend_floor_supports_license_files() -> None:
    # license-files (PEP 639) needs hatchling 1.27; an older floor lets pip pick one that
    # fails on it.
    (requirement,) = (Requirement(r) for r in PYPROJECT["build-system"]["requires"])
    assert requirement.name == "hatchling"
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert floors and min(floors) >= Version("1.27"), requirement
    assert "license-files" in PROJECT


def test_version_has_a_single_source() -> None:
    # pyproject.toml's version is the only one: target_aha reads it from the installed
    # metadata (importlib.metadata), so no module spells it out.
    literal = re.compile(r"""["']v?""" + re.escape(VERSION) + r"""["']""")
    for path in (REPO / "target_aha").rglob("*.py"):
        assert not literal.search(path.read_text()), f"{path} hard-codes the version"


@pytest.mark.packaging
def test_installed_wheel_reports_its_version(venv: Path, tmp_path: Path) -> None:
    # Run from outside the checkout, so nothing can come from the source tree.
    version = run([venv / "bin" / "target-aha", "--version"], cwd=tmp_path).stdout
    assert version.startswith(f"target-aha v{VERSION},"), version
    where = run([venv / "bin" / "python", "-c", "import target_aha; print(target_aha.__file__)"],
                cwd=tmp_path).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where


@pytest.mark.packaging
def test_installed_wheel_about(venv: Path, tmp_path: Path) -> None:
    about = json.loads(run([venv / "bin" / "target-aha", "--about", "--format=json"],
                           cwd=tmp_path).stdout)
    assert about["name"] == NAME
    assert about["version"] == VERSION
    assert about["supported_python_versions"] == PYTHONS  # the SDK reads the classifiers
    assert {"about", "stream-maps", "schema-flattening", "validate-records"} <= set(
        about["capabilities"])
    # The same settings as the development install of this checkout.
    dev = json.loads(run([EXECUTABLE, "--about", "--format=json"]).stdout)
    assert set(about["settings"]["properties"]) == set(dev["settings"]["properties"])


@pytest.mark.packaging
def test_installed_wheel_loads_into_its_sandbox(venv: Path, tmp_path: Path) -> None:
    # The sandbox and the target, both from the wheel: its declared dependencies are enough.
    port_file = tmp_path / "sandbox-url"
    sandbox = subprocess.Popen(
        [venv / "bin" / "python", "-m", "target_aha.sandbox", "--token", "wheel-token",
         "--port-file", port_file],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert sandbox.poll() is None, sandbox.communicate()[1]
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.05)
        config = {
            "base_url": port_file.read_text().strip(), "api_key": "wheel-token",
            "results_path": str(tmp_path / "results.jsonl"),
            "ledger_path": str(tmp_path / "ledger.sqlite"),
            "streams": {"ideas": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}},
        }
        (tmp_path / "config.json").write_text(json.dumps(config))
        messages = [
            {"type": "SCHEMA", "stream": "ideas", "key_properties": ["id"],
             "schema": {"type": "object", "properties": {"id": {"type": "string"},
                                                         "name": {"type": "string"}}}},
            {"type": "RECORD", "stream": "ideas", "record": {"id": "I-1", "name": "Dark mode"}},
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_AHA_")}
        run([venv / "bin" / "target-aha", "--config", tmp_path / "config.json"], cwd=tmp_path,
            env=env, input="".join(json.dumps(m) + "\n" for m in messages))
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
    (result,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert (result["key"], result["status"], result["operation"]) == ("I-1", "succeeded", "create")
    assert result["reference_num"].startswith("PRJ1-")


def git_files(path: str) -> set[str] | None:
    """Files git tracks under `path`, or None when this is not a git checkout."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return None
    out = subprocess.run([git, "ls-files", "-z", "--", path], cwd=REPO, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        return None
    # Only files present in the work tree: a file deleted but not yet committed is not shipped.
    return {n for n in out.stdout.split("\0") if n and (REPO / n).is_file()}
