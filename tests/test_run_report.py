"""What a run sends and reports: bookkeeping fields, the key `id` warning, the end-of-run
summary (streams, reasons, costs, total failure), crash recovery in the log, run ids."""

from __future__ import annotations

import re
import subprocess

import pytest

from target_aha.sandbox import Sandbox
from tests.conftest import REPO, find_meltano, record, schema, state

README = REPO / "README.md"


def feature_stream(release: str = "PRJ1-R-1", key: str = "id") -> dict:
    return {"endpoint": "create_feature", "release_id": release, "key_property": key}


def bodies(sandbox: Sandbox, method: str) -> list[dict]:
    return [r["body"]["feature"] for r in sandbox.requests() if r["method"] == method]


def test_sdc_fields_are_never_sent_nor_hashed_unless_renamed(
    sandbox: Sandbox, run_target, tmp_path
) -> None:
    # A file tap stamps every row with _sdc_last_modified; the SDK's add_record_metadata adds
    # _sdc_received_at and friends, new on every run. An edit of one row of three must be one
    # update, not three.
    config = {
        "streams": {"f": feature_stream()}, "ledger_path": str(tmp_path / "ledger.sqlite"),
        "add_record_metadata": True,
        "stream_maps": {"f": {"source_file": "_sdc_filename"}},  # mapped in explicitly
    }

    def rows(stamp: str, second_name: str) -> list[dict]:
        fields = ("id", "name", "_sdc_last_modified", "_sdc_filename")
        return [schema("f", {f: {"type": "string"} for f in fields}, ["id"]), *(
            record("f", {"id": f"BL-{i}", "name": name, "_sdc_last_modified": stamp,
                         "_sdc_filename": "backlog.csv"})
            for i, name in enumerate(["a", second_name, "c"]))]

    first = run_target(config, rows("2026-12-01T10:00:00Z", "b"), sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    created = bodies(sandbox, "POST")
    assert len(created) == 3
    for body in created:
        assert not [field for field in body if field.startswith("_sdc_")], body
        assert body["source_file"] == "backlog.csv"
        assert body["id"].startswith("BL-")  # key fields are sent unless excluded

    sandbox.clear_requests()
    second = run_target(config, rows("2026-12-02T09:30:00Z", "b, edited"), sandbox=sandbox)
    assert second.returncode == 0, second.stderr
    edited = next(line["aha_id"] for line in first.results if line["key"] == "BL-1")
    assert [(r["method"], r["path"]) for r in sandbox.requests()] == [
        ("PUT", f"/api/v1/features/{edited}")]
    assert sorted(line["operation"] for line in second.results) == [
        "unchanged", "unchanged", "update"]


def test_key_field_id_in_a_body_is_warned_once_per_stream(run_target) -> None:
    config = {"subdomain": "mycompany", "dry_run": True, "streams": {
        "f": feature_stream(),                                    # id goes into the body
        "g": feature_stream(key="request_id"),                    # another key name
        "h": {**feature_stream(), "exclude_attributes": ["id"]},  # kept out of the body
    }}
    messages = [schema("f"), record("f", {"id": "BL-1", "name": "a"}),
                schema("f"), record("f", {"id": "BL-2", "name": "b"}),  # a second sink
                schema("g"), record("g", {"request_id": "R-1", "name": "c"}),
                schema("h"), record("h", {"id": "H-1", "name": "d"})]
    run = run_target(config, messages)
    assert run.returncode == 0, run.stderr
    warnings = re.findall(r"Stream '(\w+)': its key field 'id' is sent in each create_feature "
                          r"body", run.stderr)
    assert warnings == ["f"], run.stderr
    assert "exclude_attributes" in run.stderr
    assert [p["body"]["feature"] for p in run.dry_run_lines] == [
        {"id": "BL-1", "name": "a"}, {"id": "BL-2", "name": "b"},
        {"request_id": "R-1", "name": "c"}, {"name": "d"}]


def test_skip_with_every_record_rejected_is_a_warning_with_the_reason(
    sandbox: Sandbox, run_target
) -> None:
    messages = [schema("f"), *(record("f", {"request_id": f"R{i}", "name": f"n{i}"})
                               for i in range(4)), state({"n": 1})]
    run = run_target({"streams": {"f": feature_stream("PRJ1-R-9", "request_id")},
                      "on_record_error": "skip", "max_concurrency": 1}, messages,
                     sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    err = run.stderr
    assert re.search(r"WARNING .*Every record of this run was rejected \(4 of 4\): nothing "
                     r"was written to Aha!", err), err
    assert "stream 'f': 4 records; rejected 4 (attempted: create 4)" in err
    assert ("rejected 4 like this one (stream 'f', key 'R0'): POST /releases/PRJ1-R-9/features "
            "answered 404") in err
    assert "4 requests sent (0 retries, 0 x 429, 0 creates recovered" in err
    assert f"results: {run.results_path}" in err
    assert re.search(r"finished run \S+ in \d+\.\d\d s", err)


@pytest.mark.slow
def test_summary_names_each_stream_its_reasons_and_what_the_run_cost(
    sandbox: Sandbox, run_target
) -> None:
    sandbox.configure(rate_per_second=2, send_retry_after=True)  # Aha! will answer 429s
    names = ["ok 1", "FAIL-422", "FAIL-422", "FAIL-400", "ok 2", "ok 3"]
    messages = [schema("f"), *(record("f", {"n": str(i), "name": n}) for i, n in
                               enumerate(names)),
                schema("e"), record("e", {"n": "E1", "name": "an epic"})]
    run = run_target(
        {"streams": {"f": feature_stream(key="n"),
                     "e": {"endpoint": "create_epic", "release_id": "PRJ1-R-404"}},
         "on_record_error": "skip", "max_concurrency": 1, "max_requests_per_second": 50},
        messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    err = run.stderr
    assert "7 records; succeeded 3 (create 3); rejected 4 (attempted: create 4)" in err
    assert "stream 'e': 1 record; rejected 1 (attempted: create 1)" in err
    assert "stream 'f': 6 records; succeeded 3 (create 3); rejected 3 (attempted: create 3)" \
        in err
    reasons = re.findall(r"rejected (\d) like this one \(stream '(\w)', (?:key '(\w+)'|a record "
                         r"without key)\): (POST|PUT) \S+ answered (\d+)", err)
    assert reasons[0] == ("2", "f", "1", "POST", "422"), err  # the most common first
    assert sorted(reasons[1:]) == [("1", "e", "", "POST", "404"), ("1", "f", "3", "POST", "400")]
    assert re.search(r"WARNING .*Every record of stream 'e' was rejected \(1\)", err)
    assert "Every record of this run" not in err
    sent, retries, throttled = map(int, re.search(
        r"(\d+) requests sent \((\d+) retries, (\d+) x 429", err).groups())
    assert sent == len(sandbox.requests())
    answered_429 = sum(r["status"] == 429 for r in sandbox.requests())
    assert throttled == answered_429 >= 1
    assert retries == answered_429


def test_a_create_whose_answer_was_lost_is_adopted_logged_and_counted(
    sandbox: Sandbox, run_target, tmp_path
) -> None:
    # A gateway fails after Aha! committed: the feature exists, the answer is a 502.
    sandbox.configure(commit_error_rate=1.0, error_status=502, faults_on_writes_only=True)
    run = run_target({"streams": {"f": feature_stream(key="request_id")},
                      "ledger_path": str(tmp_path / "ledger.sqlite")},
                     [schema("f"), record("f", {"request_id": "R-1", "name": "lost"})],
                     sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    [feature] = sandbox.objects("feature")
    assert re.search(
        r"stream 'f', record key 'R-1': the answer to an earlier create of this key was lost .*"
        rf"found {feature['reference_num']} \(id {feature['id']}\), new since the create was "
        r"marked pending, and adopted it", run.stderr), run.stderr
    assert "1 creates recovered after a lost answer" in run.stderr
    assert run.results[0]["aha_id"] == feature["id"]


def test_each_results_line_names_its_run_and_dry_runs_are_marked(
    sandbox: Sandbox, run_target, tmp_path
) -> None:
    path = str(tmp_path / "results.jsonl")
    messages = [schema("f"), *(record("f", {"request_id": f"R{i}", "name": f"n{i}"})
                               for i in range(3))]
    config = {"streams": {"f": feature_stream(key="request_id")}, "results_path": path}
    real = run_target(config, messages, sandbox=sandbox)
    dry = run_target({**config, "dry_run": True}, messages, sandbox=sandbox)
    again = run_target(config, messages, sandbox=sandbox)
    for run in (real, dry, again):
        assert run.returncode == 0, run.stderr
    lines = again.results  # the one file, appended to by all three runs
    assert len(lines) == 9
    ids = [line["run_id"] for line in lines]
    real_id, dry_id, again_id = ids[0], ids[3], ids[6]
    assert ids == [real_id] * 3 + [dry_id] * 3 + [again_id] * 3
    assert len({real_id, dry_id, again_id}) == 3
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", real_id)
    assert dry_id.startswith("dry-run-")
    assert {line["status"] for line in lines[3:6]} == {"dry_run"}
    assert f"finished run {real_id} in" in real.stderr
    assert f'"run_id": "{real_id}"' in real.stderr
    assert f"finished dry run {dry_id} in" in dry.stderr
    assert "nothing sent (3 requests printed on stderr)" in dry.stderr


def test_a_restarted_sandbox_is_a_new_account_to_the_ledger(run_target, tmp_path) -> None:
    # Same port, new start: the ledger must not answer "unchanged" for objects the new, empty
    # sandbox never had; the old URL says where the new one is.
    config = {"streams": {"f": feature_stream(key="request_id")},
              "ledger_path": str(tmp_path / "ledger.sqlite")}
    messages = [schema("f"), record("f", {"request_id": "R-1", "name": "kept?"})]
    with Sandbox() as first:
        port, old_url = first.port, first.base_url
        run = run_target(config, messages, sandbox=first)
        assert [line["operation"] for line in run.results] == ["create"]
    with Sandbox(port=port) as second:
        assert second.base_url != old_url
        assert second.base_url.startswith(f"http://127.0.0.1:{port}/sandbox-")
        stale = run_target({**config, "base_url": old_url},
                           [*messages, record("f", {"request_id": "R-2", "name": "new"})],
                           sandbox=second)
        assert stale.returncode == 1
        assert f"this sandbox serves its API at {second.base_url}" in stale.stderr
        run = run_target(config, messages, sandbox=second)
        assert run.returncode == 0, run.stderr
        assert [line["operation"] for line in run.results] == ["create"]
        assert [o["name"] for o in second.objects("feature")] == ["kept?"]


@pytest.mark.meltano
def test_readme_sandbox_snippet_for_a_meltano_project_runs(tmp_path) -> None:
    # The README's block that starts the sandbox with the Python of a Meltano project's
    # target-aha (the loader's virtualenv, which `meltano install` makes), run verbatim in a
    # directory shaped like such a project.
    text = README.read_text()
    block = text.split("from the project's directory, start it in the background", 1)[1]
    snippet = block.split("```sh\n", 1)[1].split("```", 1)[0]
    loader_venv = REPO / ".meltano" / "loaders" / "target-aha" / "venv"
    if find_meltano() is None:
        pytest.skip("Meltano is not installed (make install)")
    assert (loader_venv / "bin" / "python").exists(), "run `meltano install` (make install)"
    (tmp_path / ".meltano" / "loaders" / "target-aha").mkdir(parents=True)
    (tmp_path / ".meltano" / "loaders" / "target-aha" / "venv").symlink_to(loader_venv)
    check = (
        "import os, urllib.request\n"
        "req = urllib.request.Request(os.environ['TARGET_AHA_BASE_URL'] + '/me', headers="
        "{'Authorization': 'Bearer ' + os.environ['TARGET_AHA_API_KEY']})\n"
        "print(os.environ['TARGET_AHA_BASE_URL'], urllib.request.urlopen(req, timeout=5).status)"
    )
    script = (f"set -eu\n{snippet}"
              f".meltano/loaders/target-aha/venv/bin/python -c \"{check}\"\nkill %1\nwait\n")
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode in (0, 143), done.stderr  # 143: wait reports the SIGTERM'd sandbox
    listening, checked = done.stdout.splitlines()
    url = re.fullmatch(r"(http://127\.0\.0\.1:\d+/sandbox-[0-9a-f]{8}/api/v1) 200", checked)
    assert url, done.stdout + done.stderr  # the exported URL answered the key with 200
    assert listening.startswith(f"target-aha sandbox listening on {url.group(1)} ")

