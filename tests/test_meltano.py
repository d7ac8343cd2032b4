"""Meltano end to end: the repository's meltano.yml, `meltano run` and `meltano invoke`.

These run the real Meltano (from .venv-meltano, which `make install` creates, or
$MELTANO_EXECUTABLE) with the plugins `meltano install` put under .meltano/, against a
sandbox per test. Each test has its own Meltano system database (so its own state), its own
key ledger and results file, so runs never see each other's or a developer's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from target_aha.sandbox import Sandbox
from target_aha.settings import OWN_SETTINGS
from tests.conftest import TOKEN, find_meltano

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "demo" / "data"
# Settings of spec §2 (target-aha's own; the SDK adds its own beside them).
SPEC_SETTINGS = {
    "subdomain", "base_url", "api_key", "streams", "user_agent", "disable_mailers",
    "max_requests_per_second", "max_requests_per_minute", "max_concurrency", "request_timeout",
    "max_retries", "on_record_error", "results_path", "ledger_path", "response_webhook_url",
    "dry_run", "state_interval_seconds",
}


MELTANO = find_meltano()
pytestmark = [pytest.mark.meltano, pytest.mark.skipif(
    MELTANO is None,
    reason="Meltano is not installed: `make install` puts it in .venv-meltano "
    "(or set MELTANO_EXECUTABLE)",
)]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


Project = TypeVar("Project", bound="MeltanoProject")


@dataclass
class MeltanoProject:
    """A Meltano project directory and the environment its commands run in: a system
    database, key ledger and results of its own and no TARGET_AHA_*, TAP_JSONL* or MELTANO_*
    from outside, so runs never see each other's state or a developer's."""

    root: Path
    env: dict[str, str]

    @classmethod
    def isolated(cls: type[Project], root: Path, state: Path, **env: str) -> Project:
        """`root`'s meltano.yml; its system database and ledger under `state`; then `env`."""
        outside = {k: v for k, v in os.environ.items()
                   if not k.startswith(("TARGET_AHA_", "TAP_JSONL", "MELTANO_"))}
        return cls(root, outside | {
            "MELTANO_DATABASE_URI": f"sqlite:///{state / 'meltano.db'}",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TARGET_AHA_LEDGER_PATH": str(state / "ledger.sqlite"),
        } | env)

    def run(self, *args: str, env: dict[str, str] | None = None, input: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """`meltano ARGS` in the project, `env` over its environment, `input` on stdin."""
        assert MELTANO is not None
        stdin: dict[str, Any] = {"stdin": subprocess.DEVNULL} if input is None else {
            "input": input}
        return subprocess.run(
            [MELTANO, *args], cwd=self.root, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=300, check=False, **stdin,
        )


@pytest.fixture
def repo_project(tmp_path: Path, sandbox: Sandbox) -> MeltanoProject:
    """This repository's meltano.yml (environment dev) loading into the test's sandbox, with
    its own state, ledger and results file."""
    return MeltanoProject.isolated(
        REPO, tmp_path, MELTANO_ENVIRONMENT="dev", TARGET_AHA_API_KEY=TOKEN,
        TARGET_AHA_RESULTS_PATH=str(tmp_path / "aha-results.jsonl"),
        TARGET_AHA_BASE_URL=sandbox.base_url,
    )


def results_of(project: MeltanoProject) -> list[dict[str, Any]]:
    """The lines of the results file the project's runs wrote."""
    return read_jsonl(Path(project.env["TARGET_AHA_RESULTS_PATH"]))


def singer_input(messages: list[dict[str, Any]]) -> str:
    """Singer messages as a tap writes them, one JSON object per line."""
    return "".join(json.dumps(m) + "\n" for m in messages)


def expected_description(row: dict[str, Any]) -> str:
    """The description meltano.yml's stream map builds from an intake request."""
    body = row["body"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (f"<p>{body}</p><p>Requested by {row['requester_email']} "
            f"(priority: {row['priority']})</p>")


def header(request: dict[str, Any], name: str) -> str | None:
    for key, value in (request.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def test_meltano_run_loads_the_sample_data(sandbox: Sandbox, repo_project: MeltanoProject,
                                           ) -> None:
    intake = read_jsonl(DATA / "intake_requests.jsonl")
    vendors = read_jsonl(DATA / "vendors.jsonl")
    okrs = read_jsonl(DATA / "okrs.jsonl")

    # The job load-aha is `tap-jsonl target-aha tap-jsonl--vendors target-aha
    # tap-jsonl--okrs target-aha`: tap-jsonl reads one stream per extractor.
    run = repo_project.run("run", "load-aha")
    assert run.returncode == 0, run.stderr[-6000:]

    # One feature per intake request, in release PRJ1-R-1, named and described by the stream map.
    features = sandbox.objects("feature")
    assert len(features) == len(intake), [f.get("name") for f in features]
    by_name = {f["name"]: f for f in features}
    assert set(by_name) == {row["title"] for row in intake}
    for row in intake:
        feature = by_name[row["title"]]
        assert feature["description"]["body"] == expected_description(row)  # a note object
        assert feature["release"]["reference_num"] == "PRJ1-R-1"
        assert feature["reference_num"].startswith("PRJ1-")
        for dropped in ("internal_notes", "title", "body", "_sdc_filename",
                        "_sdc_last_modified", "_sdc_stream"):
            assert dropped not in feature, (dropped, feature)

    # Vendors became records of the custom table `vendors`, OKRs became goals of PRJ1.
    records = sandbox.objects("custom_object_record")
    assert len(records) == len(vendors)
    stored = [{f["key"]: f["value"] for f in rec["custom_fields"]} for rec in records]
    assert {s["name"] for s in stored} == {v["name"] for v in vendors}
    assert all(set(s) == {"name", "contact_email", "tier", "since"} for s in stored), stored
    assert {rec["key"] for rec in records} == {"vendors"}
    goals = sandbox.objects("goal")
    assert sorted(g["name"] for g in goals) == sorted(o["objective"] for o in okrs)

    # What Aha! received: every write quiet (disable_mailers) and authenticated by the key.
    writes = [r for r in sandbox.requests() if r["method"] != "GET"]
    assert len(writes) == len(intake) + len(vendors) + len(okrs)
    for request in writes:
        assert request["query"].get("disable_mailers") == "true", request["path"]
        assert header(request, "Authorization") == f"Bearer {TOKEN}"
        assert "internal_notes" not in json.dumps(request["body"])
    # ... and nothing from the notes anywhere in the sandbox.
    everything = json.dumps([features, records, goals])
    for row in intake:
        assert row["internal_notes"] not in everything

    # The results file: one succeeded line per record, keyed by the upstream ids, no token.
    results_path = Path(repo_project.env["TARGET_AHA_RESULTS_PATH"])
    results = read_jsonl(results_path)
    assert len(results) == len(intake) + len(vendors) + len(okrs)
    assert {r["status"] for r in results} == {"succeeded"}, results
    assert sorted(r["key"] for r in results if r["stream"] == "intake_requests") == sorted(
        row["request_id"] for row in intake)
    assert sorted(r["key"] for r in results if r["stream"] == "okrs") == sorted(
        row["okr_id"] for row in okrs)
    assert sorted(r["key"] for r in results if r["stream"] == "vendors") == sorted(
        row["name"] for row in vendors)
    assert all(r["aha_id"] for r in results)
    ref_of = {f["reference_num"] for f in features}
    assert {r["reference_num"] for r in results if r["stream"] == "intake_requests"} == ref_of
    assert TOKEN not in results_path.read_text()



def test_meltano_rerun_sends_nothing_new(sandbox: Sandbox, repo_project: MeltanoProject,
                                         ) -> None:
    # tap-jsonl 0.3.1 reads every file again on every run (it never finds its own bookmark),
    # so what keeps a re-run from duplicating everything in Aha! is target-aha's key ledger:
    # the same records again are `unchanged`, and nothing is sent.
    first = repo_project.run("run", "load-aha")
    assert first.returncode == 0, first.stderr[-6000:]
    created = {kind: len(sandbox.objects(kind))
               for kind in ("feature", "goal", "custom_object_record")}
    sandbox.clear_requests()
    again = repo_project.run("run", "--full-refresh", "load-aha")
    assert again.returncode == 0, again.stderr[-6000:]
    assert [r for r in sandbox.requests() if r["method"] != "GET"] == []
    assert {kind: len(sandbox.objects(kind)) for kind in created} == created
    results = results_of(repo_project)
    second = results[len(results) // 2:]
    assert len(results) == 2 * sum(created.values())
    assert {(r["operation"], r["status"]) for r in second} == {("unchanged", "succeeded")}


def test_plain_tap_target_pair_loads_intake_requests(
    sandbox: Sandbox, repo_project: MeltanoProject,
) -> None:
    # The first thing a user types: one extractor, one loader.
    run = repo_project.run("run", "tap-jsonl", "target-aha")
    assert run.returncode == 0, run.stderr[-6000:]
    titles = {row["title"] for row in read_jsonl(DATA / "intake_requests.jsonl")}
    assert {f["name"] for f in sandbox.objects("feature")} == titles
    assert sandbox.objects("goal") == []
    results = results_of(repo_project)
    assert len(results) == len(titles)
    assert {(r["stream"], r["endpoint"], r["status"]) for r in results} == {
        ("intake_requests", "create_feature", "succeeded")}


def test_meltano_invoke_about_lists_every_setting(repo_project: MeltanoProject) -> None:
    run = repo_project.run("invoke", "target-aha", "--about", "--format=json")
    assert run.returncode == 0, run.stderr[-6000:]
    about = json.loads(run.stdout)
    assert about["name"] == "target-aha"
    settings = about["settings"]["properties"]
    own = set(OWN_SETTINGS)
    assert own >= SPEC_SETTINGS
    missing = own - set(settings)
    assert not missing, f"--about lacks {sorted(missing)}"
    assert settings["api_key"].get("secret") is True
    assert settings["on_record_error"]["enum"] == ["fail", "skip"]
    for sdk_setting in ("stream_maps", "batch_size_rows", "validate_records"):
        assert sdk_setting in settings
    assert set(about["capabilities"]) >= {
        "about", "stream-maps", "schema-flattening", "validate-records"}


def test_meltano_yml_declares_every_target_setting() -> None:
    # Meltano only shows (`meltano config list target-aha`) and reads from TARGET_AHA_* what
    # the loader entry declares: it must declare each of target-aha's own settings.
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-aha"]
    assert loader["namespace"] == "target_aha"
    assert loader["executable"] == "target-aha"
    declared = {s["name"]: s for s in loader["settings"]}
    own = OWN_SETTINGS
    assert set(own) - set(declared) == set()
    for name in own:
        assert declared[name].get("kind"), name
        assert declared[name].get("description"), name
    assert declared["api_key"]["sensitive"] is True
    assert declared["streams"]["kind"] == "object"
    assert declared["disable_mailers"]["kind"] == "boolean"
    assert [o["value"] for o in declared["on_record_error"]["options"]] == ["fail", "skip"]
    assert set(loader["capabilities"]) >= {
        "about", "stream-maps", "schema-flattening", "validate-records"}



# -- A user's own project: the README's entries, `meltano config test`, numbers ---------------

README = REPO / "README.md"
PROCESS_LOOKUP_BUG = "ProcessLookupError"  # Meltano 4.4.1's loader test, see test_config_test_*
TEST_VERDICT = "Test data was written to your target system"  # Meltano's log line for a pass


def readme_loader(marker: str) -> dict[str, Any]:
    """The loader entry of the README's YAML block that contains `marker`, as written there."""
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
                if marker in b]
    parsed = yaml.safe_load(block)
    loaders = parsed["plugins"]["loaders"] if "plugins" in parsed else parsed["loaders"]
    (loader,) = loaders
    return loader


def repo_loader() -> dict[str, Any]:
    """This repository's meltano.yml loader entry (every setting declared with its kind)."""
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    (loader,) = project["plugins"]["loaders"]
    return loader


class UserProject(MeltanoProject):
    """A throwaway Meltano project (own system database) with this checkout installed as
    target-aha; each test writes the loader entry it needs into meltano.yml."""

    def use(self, loader: dict[str, Any], base_url: str) -> None:
        """meltano.yml: the entry as given (pip_url: this checkout, as PyPI has no release
        yet), and an environment that points base_url at the sandbox."""
        entry = {**loader, "pip_url": str(REPO)}
        project = {
            "project_id": "target-aha-user-test",
            "send_anonymous_usage_stats": False,
            "default_environment": "sandbox",
            "environments": [{"name": "sandbox", "config": {"plugins": {"loaders": [
                {"name": "target-aha", "config": {"base_url": base_url}}]}}}],
            "plugins": {"loaders": [entry]},
        }
        (self.root / "meltano.yml").write_text(yaml.safe_dump(project, sort_keys=False))


@pytest.fixture(scope="module")
def user_project(tmp_path_factory: pytest.TempPathFactory) -> UserProject:
    base = tmp_path_factory.mktemp("user-project")
    root = base / "project"
    root.mkdir()
    project = UserProject.isolated(root, base)
    project.use(readme_loader("plugins:\n  loaders:"), "http://127.0.0.1:9/api/v1")
    install = project.run("install", "--plugin-type", "loader", "target-aha")
    assert install.returncode == 0, install.stderr[-6000:]
    return project


def test_readme_entry_receives_the_api_key_from_the_environment(
    sandbox: Sandbox, user_project: UserProject,
) -> None:
    # The README's hand-written entry, verbatim but for pip_url, and `export TARGET_AHA_API_KEY`.
    loader = readme_loader("plugins:\n  loaders:")
    user_project.use(loader, sandbox.base_url)
    run = user_project.run("invoke", "target-aha", "--test", env={"TARGET_AHA_API_KEY": TOKEN})
    assert run.returncode == 0, run.stdout + run.stderr[-6000:]
    assert "PASS  API key for 127.0.0.1" in run.stdout
    assert "PASS  stream 'intake_requests' (create_feature) release_id" in run.stdout
    assert "0 failed" in run.stdout
    assert {r["method"] for r in sandbox.requests()} == {"GET"}

    # Without the declaration (the README's entry before), the key never arrives, and the
    # message says why instead of asking to set what is already set.
    undeclared = {k: v for k, v in loader.items() if k != "settings"}
    user_project.use(undeclared, sandbox.base_url)
    run = user_project.run("invoke", "target-aha", "--test", env={"TARGET_AHA_API_KEY": TOKEN})
    assert run.returncode == 1
    assert ("api_key is not set. TARGET_AHA_API_KEY is set in the environment, but Meltano did "
            "not pass it on") in run.stderr, run.stderr[-3000:]
    assert "meltano add --plugin-type loader target-aha --from-ref" in run.stderr
    assert "Traceback" not in run.stderr


def test_readme_test_example_checks_through_meltano(
    sandbox: Sandbox, user_project: UserProject,
) -> None:
    user_project.use(readme_loader("# meltano invoke target-aha --test"), sandbox.base_url)
    run = user_project.run("invoke", "target-aha", "--test", env={"TARGET_AHA_API_KEY": TOKEN})
    assert run.returncode == 0, run.stdout + run.stderr[-6000:]
    assert "PASS  stream 'intake' (create_feature) release_id: release 'PRJ1-R-1' exists" in (
        run.stdout)


def test_send_test_through_meltano_invoke_reads_standard_input(
    sandbox: Sandbox, user_project: UserProject,
) -> None:
    """`meltano invoke target-aha --send-test < sample.singer`, as the README says (spec §13)."""
    user_project.use(readme_loader("# meltano invoke target-aha --test"), sandbox.base_url)
    sample = [
        {"type": "SCHEMA", "stream": "intake", "key_properties": ["request_id"],
         "schema": {"properties": {"request_id": {"type": "string"},
                                   "name": {"type": "string"}}}},
        *({"type": "RECORD", "stream": "intake",
           "record": {"request_id": f"R{i}", "name": f"request {i}"}} for i in range(3)),
        {"type": "STATE", "value": {"n": 3}},
    ]
    run = user_project.run("invoke", "target-aha", "--send-test",
                           env={"TARGET_AHA_API_KEY": TOKEN},
                           input="".join(json.dumps(m) + "\n" for m in sample))
    assert run.returncode == 0, run.stdout + run.stderr[-6000:]
    shown = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [(e["request"]["method"], e["answer"]["status"]) for e in shown] == [("POST", 200)]
    assert '"STATE"' not in run.stdout and TOKEN not in run.stdout
    assert [o["name"] for o in sandbox.objects("feature")] == ["request 0"]


def test_numbers_round_trip_through_meltano_config_set_and_the_environment(
    sandbox: Sandbox, user_project: UserProject,
) -> None:
    user_project.use(repo_loader(), sandbox.base_url)
    for name, value in (("max_requests_per_minute", "30"), ("request_timeout", "20")):
        done = user_project.run("config", "set", "target-aha", name, value)
        assert done.returncode == 0, done.stderr[-3000:]
    written = (user_project.root / "meltano.yml").read_text()
    assert "!!float" not in written
    config = yaml.safe_load(written)["plugins"]["loaders"][0]["config"]
    assert config["max_requests_per_minute"] == 30
    assert config["request_timeout"] == 20

    numbers = {"TARGET_AHA_MAX_REQUESTS_PER_SECOND": "2", "TARGET_AHA_STATE_INTERVAL_SECONDS": "5",
               "TARGET_AHA_PROGRESS_INTERVAL_SECONDS": "10", "TARGET_AHA_MAX_CONCURRENCY": "2",
               "TARGET_AHA_API_KEY": TOKEN}
    printed = user_project.run("config", "print", "target-aha", env=numbers)
    assert printed.returncode == 0, printed.stderr[-3000:]
    values = json.loads(printed.stdout)
    assert (values["max_requests_per_second"], values["state_interval_seconds"],
            values["progress_interval_seconds"], values["max_requests_per_minute"],
            values["request_timeout"]) == (2, 5, 10, 30, 20)
    run = user_project.run("invoke", "target-aha", "--test", env=numbers)
    assert run.returncode == 0, run.stdout + run.stderr[-6000:]  # no Decimal crash in Meltano
    assert "Decimal" not in run.stderr

    # ... and they reach target-aha, which checks them.
    zero = user_project.run("invoke", "target-aha", "--test",
                            env={**numbers, "TARGET_AHA_STATE_INTERVAL_SECONDS": "0"})
    assert zero.returncode != 0
    assert "state_interval_seconds" in zero.stderr, zero.stderr[-3000:]


def config_test(project: MeltanoProject, env: dict[str, str] | None = None,
                ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`meltano config test target-aha` at debug level, and the loader's lines it logged."""
    run = project.run("--log-level=debug", "config", "test", "target-aha", env=env)
    output = run.stdout + run.stderr
    invoked = output.index("Invoking: ")
    lines = [line.split("[debug    ] meltano      ", 1)[1]
             for line in output[invoked:].splitlines()[1:]
             if "[debug    ] meltano      " in line]
    return run, lines


def test_config_test_passes_with_the_read_only_checks(
    sandbox: Sandbox, repo_project: MeltanoProject,
) -> None:
    run, lines = config_test(repo_project)
    output = run.stdout + run.stderr
    # Meltano's own verdict on what target-aha answered: exit 0 and no line with "error" or
    # "exception" (its rule), so it logs that the test passed.
    assert TEST_VERDICT in output, output[-6000:]
    assert "Process return code: 0" in lines
    # The tree's streams (job load-tree) set 5 parameters by a reference, and a comment's
    # commentable_type has no read: 6 checks are not checkable.
    assert "target-aha --test: 6 passed, 0 failed, 6 not checkable. Nothing was written." in lines
    assert "PASS  stream 'vendors' (create_custom_table_record) custom_table_key: custom table " \
           "'vendors' exists (GET /products/PRJ1/custom_objects/vendors/records answered 200)" \
           in lines
    loader_lines = lines[:lines.index("Process return code: 0")]
    assert not [line for line in loader_lines
                if "error" in line.lower() or "exception" in line.lower()]
    # Nothing was written to Aha!: only GETs, and no test object anywhere.
    assert {r["method"] for r in sandbox.requests()} == {"GET"}
    assert sandbox.objects("feature") == []
    # Meltano 4.4.1 then calls terminate() on the loader that has exited: for any loader, the
    # command usually ends with ProcessLookupError after the verdict (asyncio race in Meltano).
    assert (run.returncode == 0 and "Plugin configuration is valid" in output) or (
        PROCESS_LOOKUP_BUG in output), output[-6000:]


def test_config_test_fails_with_the_test_message(
    sandbox: Sandbox, repo_project: MeltanoProject,
) -> None:
    run, lines = config_test(repo_project, {"TARGET_AHA_API_KEY": "wrong-token"})
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert TEST_VERDICT not in output
    assert "Process return code: 1" in lines
    failed = [line for line in lines if line.startswith("Meltano's loader test failed: ")]
    assert failed == [
        "Meltano's loader test failed: target-aha --test: 0 passed, 1 failed, 11 not checkable. "
        "Fix the FAIL lines and run the test again. (`meltano invoke target-aha --test` shows "
        "the same checks.)"], lines
    assert any(line.startswith("FAIL  API key for 127.0.0.1") and "GET /me answered 401" in line
               for line in lines), lines
    assert "wrong-token" not in output
    assert {r["method"] for r in sandbox.requests()} == {"GET"}


def test_a_run_that_stops_early_under_meltano_says_why_and_leaves_no_open_files(
    sandbox: Sandbox, repo_project: MeltanoProject,
) -> None:
    # A stream without a destination stops the run at its SCHEMA, after the results file and
    # the ledger were opened; Meltano shows Python's warnings, so an unclosed file would show.
    messages = [
        {"type": "SCHEMA", "stream": "backlog", "key_properties": ["id"],
         "schema": {"type": "object", "properties": {"id": {"type": "string"}}}},
        {"type": "RECORD", "stream": "backlog", "record": {"id": "BL-1"}},
    ]
    run = repo_project.run("invoke", "target-aha", input=singer_input(messages))
    assert run.returncode == 1
    assert "Stream 'backlog' has no destination" in run.stderr, run.stderr[-3000:]
    assert "ResourceWarning" not in run.stderr, run.stderr[-3000:]
    assert "unclosed" not in run.stderr
    assert sandbox.requests() == []


def test_a_postgresql_ledger_without_the_extra_says_to_install_it(
    sandbox: Sandbox, repo_project: MeltanoProject,
) -> None:
    # The project's plugin is installed without extras (pip_url: -e .), so no psycopg.
    # A load opens the ledger before reading anything (--test opens none: it writes nothing).
    run = repo_project.run("invoke", "target-aha", env={
        "TARGET_AHA_LEDGER_PATH": "postgresql://aha:secret-pw@127.0.0.1:9/aha"})
    assert run.returncode == 1
    assert "Install target-aha[postgres] (in Meltano: pip_url: target-aha[postgres])" in (
        run.stderr), run.stderr[-3000:]
    assert "secret-pw" not in run.stderr
    assert "Traceback" not in run.stderr
    assert "ResourceWarning" not in run.stderr


def test_readme_custom_and_dry_run_examples_run_through_meltano(
    sandbox: Sandbox, user_project: UserProject,
) -> None:
    # The custom-endpoint example: its checks pass (custom URLs are judged, never called).
    user_project.use(readme_loader("portal_ideas:                       #"), sandbox.base_url)
    run = user_project.run("invoke", "target-aha", "--test", env={"TARGET_AHA_API_KEY": TOKEN})
    assert run.returncode == 0, run.stdout + run.stderr[-6000:]
    assert "PASS  API key" in run.stdout
    assert "stream 'portal_ideas' (custom)" in run.stdout, run.stdout

    # The dry-run example: no key, nothing sent, the batch printed as the one body it would be.
    user_project.use(readme_loader("results_path: output/aha-dry-run.jsonl"), sandbox.base_url)
    sandbox.clear_requests()
    messages = [
        {"type": "SCHEMA", "stream": "crm_accounts", "key_properties": ["account_id"],
         "schema": {"type": "object", "properties": {"account_id": {"type": "string"},
                                                     "name": {"type": "string"}}}},
        *({"type": "RECORD", "stream": "crm_accounts",
           "record": {"account_id": f"A-{i}", "name": f"Account {i}"}} for i in range(3)),
    ]
    dry = user_project.run("invoke", "target-aha", input=singer_input(messages))
    assert dry.returncode == 0, dry.stderr[-6000:]
    printed = [json.loads(line[line.index('{"method"'):]) for line in dry.stderr.splitlines()
               if '{"method"' in line]
    assert [p["body"] for p in printed] == [{"accounts": [
        {"account_id": f"A-{i}", "name": f"Account {i}"} for i in range(3)]}], dry.stderr[-3000:]
    assert sandbox.requests() == []
    results = read_jsonl(user_project.root / "output" / "aha-dry-run.jsonl")
    assert [r["status"] for r in results] == ["dry_run"] * 3
