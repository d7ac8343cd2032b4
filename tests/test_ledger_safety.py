"""The ledger under attack: colliding keys, deletes across accounts, settings that do something
else, two runs at once, a full disk."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from target_aha.endpoints import TEMPLATES
from target_aha.errors import ConfigError
from target_aha.ledger import LedgerError, Scope
from target_aha.ledger_open import ledger_store
from target_aha.ledger_sqlite import SQLiteLedger
from target_aha.sandbox import Sandbox
from target_aha.upsert import Keyed, Unrecorded, Upsert
from target_aha.wire import Answer, Request
from tests.conftest import EXECUTABLE, TOKEN, record, schema, state
from tests.receiver import Receiver

FEATURES = {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}
EPICS = {"endpoint": "create_epic", "release_id": "PRJ1-R-1"}


def writes(sb: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sb.requests() if r["method"] != "GET"]


def rows(path: str) -> list[tuple]:
    ledger = SQLiteLedger(path, read_only=True)
    try:
        return ledger._run("SELECT stream, target, key, aha_id FROM target_aha_ledger "
                           "WHERE stream <> 'target-aha'", {}, fetch=True)
    finally:
        ledger.close()


def write_row(path: str, scope: Scope, obj: dict[str, Any]) -> None:
    ledger = SQLiteLedger(path)
    try:
        ledger.store(scope, obj, "a body hash no record has")
    finally:
        ledger.close()


def create_in_aha(sb: Sandbox, name: str) -> dict[str, Any]:
    resp = requests.post(sb.base_url + "/releases/PRJ1-R-1/features",
                         json={"feature": {"name": name}},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    return resp.json()["feature"]


# 1. Composite keys ---------------------------------------------------------------------------

def test_composite_keys_that_join_alike_stay_apart(sandbox: Sandbox, run_target, tmp_path) -> None:
    ledger = str(tmp_path / "ledger.sqlite")
    cfg = {"ledger_path": ledger, "streams": {"s": FEATURES}}
    # A 0.1.0 ledger row of the composite key ("p", "q"), written as "p|q": it is migrated.
    legacy = create_in_aha(sandbox, "made by 0.1.0")
    write_row(ledger, Scope("s", sandbox.base_url + "/releases/PRJ1-R-1/features", "p|q"), legacy)
    messages = [schema("s", key_properties=["a", "b"]),
                record("s", {"a": "x|y", "b": "z", "name": "one"}),
                record("s", {"a": "x", "b": "y|z", "name": "two"}),
                record("s", {"a": "p", "b": "q", "name": "three"}),
                state({"n": 1})]
    sandbox.clear_requests()
    first = run_target(cfg, messages, sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    assert sorted((r["key"], r["operation"], r["status"]) for r in first.results) == [
        ("p|q", "update", "succeeded"),
        ("x|y|z", "create", "succeeded"), ("x|y|z", "create", "succeeded")]
    assert sorted(o["name"] for o in sandbox.objects("feature")) == ["one", "three", "two"]
    assert sorted((w["method"], w["path"]) for w in writes(sandbox)) == [
        ("POST", "/api/v1/releases/PRJ1-R-1/features")] * 2 + [
        ("PUT", f"/api/v1/features/{legacy['id']}")]
    assert sorted(key for _, _, key, _ in rows(ledger)) == [
        '["p","q"]', '["x","y|z"]', '["x|y","z"]']

    sandbox.clear_requests()
    again = run_target(cfg, messages, sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    assert writes(sandbox) == []
    assert [r["operation"] for r in again.results] == ["unchanged"] * 3
    assert len(sandbox.objects("feature")) == 3


# 2. A delete forgets only its own account's and kind's rows -----------------------------------

def test_delete_forgets_only_its_account_and_kind(run_target, tmp_path) -> None:
    ledger = str(tmp_path / "ledger.sqlite")
    create = {"ledger_path": ledger, "streams": {"s": EPICS}, "max_concurrency": 1}
    keyed = [schema("s", key_properties=["id"]),
             *(record("s", {"id": f"K{i}", "name": f"epic {i}"}) for i in range(2))]
    with Sandbox(token=TOKEN) as prod, Sandbox(token=TOKEN) as staging, Receiver() as other:
        made = {}
        for sb in (prod, staging):
            run = run_target(create, keyed, sandbox=sb)
            assert run.returncode == 0, run.stderr
            made[sb.base_url] = {r["key"]: r for r in run.results}
        doomed = made[prod.base_url]["K0"]
        kept = made[prod.base_url]["K1"]
        # the same reference numbers in both accounts: that is what made the delete spill over
        assert made[staging.base_url]["K0"]["reference_num"] == doomed["reference_num"]
        # another kind of object in the same account whose id is the doomed epic's
        feature_scope = Scope("f", prod.base_url + "/releases/PRJ1-R-1/features", "F0")
        write_row(ledger, feature_scope, {"id": doomed["aha_id"], "reference_num": "PRJ1-1"})

        run = run_target(
            {"ledger_path": ledger, "streams": {
                "gone": {"endpoint": "delete_epic"},
                "elsewhere": {"endpoint": "custom", "method": "DELETE", "allow_other_hosts": True,
                              "url": other.url + "/api/v1/epics/{ref}"}}},
            [schema("gone"), record("gone", {"epic_id": doomed["reference_num"]}),
             schema("elsewhere"), record("elsewhere", {"ref": kept["reference_num"]})],
            sandbox=prod,
        )
        assert run.returncode == 0, run.stderr
        assert [r.method for r in other.received] == ["DELETE"]

        staging.clear_requests()
        again = run_target(create, keyed, sandbox=staging)
        assert [r["operation"] for r in again.results] == ["unchanged", "unchanged"]
        assert writes(staging) == []
        again = run_target(create, keyed, sandbox=prod)
        assert sorted((r["key"], r["operation"]) for r in again.results) == [
            ("K0", "create"), ("K1", "unchanged")]
        assert ("f", feature_scope.target, "F0", doomed["aha_id"]) in rows(ledger)


# 3. Ledger settings that silently did something else ------------------------------------------

@pytest.mark.parametrize("path", [
    "postgresql://u@h/db", "POSTGRESQL://u@h/db", "Postgres://h/db", "postgresql+psycopg://h/d",
])
def test_postgres_urls_in_any_case(path: str) -> None:
    assert ledger_store(path) == "PostgreSQL"


@pytest.mark.parametrize("path", [
    "ledger.sqlite", "/var/lib/x/ledger.sqlite", "postgresql-ledger.sqlite", "postgres:x",
])
def test_file_paths_are_sqlite(path: str) -> None:
    assert ledger_store(path) == "SQLite"


@pytest.mark.parametrize(("path", "says"), [
    ("mysql://u:S3CRET@h/db", "'mysql'"),
    ("sqlite:///tmp/l.sqlite", "'sqlite'"),
    ("HTTPS://example.com/ledger", "'https'"),
    (":memory:", "in memory"),
    (":MEMORY:", "in memory"),
    ("file::memory:", "in memory"),
    ("file:ledger.sqlite?mode=memory", "in memory"),
    ("FILE:/tmp/l.sqlite", "file:"),
])
def test_ledger_paths_that_cannot_work_are_refused(path: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        ledger_store(path)
    assert "S3CRET" not in str(caught.value)


def run_in(cwd: Path, config: dict[str, Any], messages: list[dict[str, Any]],
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The executable in a working directory of the test's own (relative paths land there)."""
    (cwd / "config.json").write_text(json.dumps(config))
    return subprocess.run(
        [EXECUTABLE, "--config", "config.json"], cwd=cwd, capture_output=True, text=True,
        input="".join(json.dumps(m) + "\n" for m in messages), timeout=60, check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TARGET_AHA_")},
             **(env or {})},
    )


def test_postgres_url_in_capitals_is_not_a_file_path(sandbox: Sandbox, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    cfg = {"base_url": sandbox.base_url, "api_key": TOKEN, "streams": {"s": FEATURES},
           "ledger_path": "POSTGRESQL://u:S3CRET@127.0.0.1:1/db"}
    messages = [schema("s", key_properties=["id"]), record("s", {"id": "K", "name": "n"})]
    run = run_in(cwd, cfg, messages)
    assert run.returncode == 1
    assert "Cannot use the key ledger (PostgreSQL" in run.stderr
    assert "S3CRET" not in run.stderr + run.stdout
    assert sorted(p.name for p in cwd.iterdir()) == ["config.json"]  # no directories made
    assert sandbox.requests() == []

    # Without the `postgres` extra (psycopg not importable) the message says what to install.
    shim = tmp_path / "no-psycopg"
    (shim / "psycopg").mkdir(parents=True)
    (shim / "psycopg" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH")) if p)
    run = run_in(cwd, {**cfg, "ledger_path": "postgresql://u:S3CRET@127.0.0.1:1/db"},
                 messages, env={"PYTHONPATH": path})
    assert run.returncode == 1
    assert "target-aha[postgres]" in run.stderr
    assert "Traceback" not in run.stderr
    assert "S3CRET" not in run.stderr + run.stdout
    assert sandbox.requests() == []


# 4. Two runs at once on one SQLite ledger ------------------------------------------------------

def start(cwd: Path, name: str, config: dict[str, Any], n: int,
          called: str = "request", *, hold_open: bool = False) -> subprocess.Popen:
    """The target loading `n` records. `hold_open`: its input stays open after the records
    (a tap still running) until the test sends the last line with `communicate`."""
    (cwd / f"{name}.json").write_text(json.dumps(config))
    lines = "".join(json.dumps(m) + "\n" for m in [
        schema("intake", key_properties=["id"]),
        *(record("intake", {"id": f"REQ-{i}", "name": f"{called} {i}"}) for i in range(n))])
    command = [EXECUTABLE, "--config", str(cwd / f"{name}.json")]
    if hold_open:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        proc.stdin.write(lines)
        proc.stdin.flush()
        return proc
    data = cwd / f"{name}.jsonl"
    data.write_text(lines + json.dumps(state({"done": n})) + "\n")
    return subprocess.Popen(command, stdin=data.open(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def locked(path: Path) -> bool:
    """Whether another process holds the ledger's lock (asked of the operating system)."""
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def wait_until(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_two_runs_at_once_on_one_sqlite_ledger(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.configure(latency_ms=40, latency_jitter_ms=20)
    ledger = tmp_path / "ledger.sqlite"
    lock = tmp_path / "ledger.sqlite.lock"
    cfg = {"base_url": sandbox.base_url, "api_key": TOKEN, "ledger_path": str(ledger),
           "streams": {"intake": FEATURES}, "max_concurrency": 2}
    # The first run's input stays open (its tap is still running) until the second has tried.
    first = start(tmp_path, "first", {**cfg, "results_path": str(tmp_path / "r1.jsonl")}, 40,
                  hold_open=True)
    wait_until(lambda: any(w["method"] == "POST" for w in writes(sandbox)))
    second = start(tmp_path, "second", {**cfg, "results_path": str(tmp_path / "r2.jsonl")}, 40)
    out2, err2 = second.communicate(timeout=60)
    _, err1 = first.communicate(json.dumps(state({"done": 40})) + "\n", timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 1
    assert str(ledger) in err2 and "another target-aha run" in err2
    assert "PostgreSQL" in err2
    assert "Traceback" not in err2
    assert out2 == ""
    counts = Counter(o["name"] for o in sandbox.objects("feature"))
    assert counts == Counter({f"request {i}": 1 for i in range(40)})

    # A run killed with SIGKILL leaves no lock behind: the next run goes ahead.
    sandbox.configure(latency_ms=300, latency_jitter_ms=0)
    sandbox.clear_requests()
    killed = start(tmp_path, "killed", {**cfg, "results_path": str(tmp_path / "r3.jsonl")}, 40,
                   called="renamed")
    wait_until(lambda: locked(lock))
    wait_until(lambda: any(w["method"] == "PUT" for w in writes(sandbox)))
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=30)
    assert not locked(lock)
    sandbox.configure(latency_ms=0)
    after = start(tmp_path, "after", {**cfg, "results_path": str(tmp_path / "r4.jsonl")}, 40)
    out, err = after.communicate(timeout=60)
    assert after.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"done": 40}


def test_a_dry_run_does_not_need_the_lock(sandbox: Sandbox, run_target, tmp_path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    cfg = {"ledger_path": str(ledger), "streams": {"s": FEATURES}}
    messages = [schema("s", key_properties=["id"]), record("s", {"id": "K", "name": "n"})]
    assert run_target(cfg, messages, sandbox=sandbox).returncode == 0
    holder = SQLiteLedger(str(ledger))  # another run, holding the ledger
    try:
        run = run_target({**cfg, "dry_run": True}, messages, sandbox=sandbox)
        assert run.returncode == 0, run.stderr
        assert [r["operation"] for r in run.results] == ["unchanged"]
        with pytest.raises(ConfigError, match="another target-aha run"):
            SQLiteLedger(str(ledger))
    finally:
        holder.close()


# 5. The ledger's disk fills up mid-run -----------------------------------------------------------

def test_full_ledger_raises_a_ledger_error(tmp_path: Path) -> None:
    ledger = SQLiteLedger(str(tmp_path / "ledger.sqlite"))
    try:
        pages = ledger._db.execute("PRAGMA page_count").fetchone()[0]
        ledger._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(LedgerError, match="full") as caught:
            for i in range(1000):
                ledger.store(Scope("s", "t", f"K{i}" * 50), {"id": str(i)}, "h" * 64)
        assert str(tmp_path / "ledger.sqlite") in str(caught.value)
    finally:
        ledger.close()


class LosesTheLedger:
    """A sender whose create succeeds in Aha! while the ledger's database goes away."""

    def __init__(self, ledger: SQLiteLedger) -> None:
        self.ledger = ledger

    def send(self, request: Request, where: str, recover: Any = None) -> Answer:
        self.ledger._db.close()
        return Answer(200, {}, json.dumps(
            {"feature": {"id": "7", "reference_num": "PRJ1-1", "name": "n"}}))


def test_ledger_lost_after_a_create_keeps_the_outcome(tmp_path: Path) -> None:
    ledger = SQLiteLedger(str(tmp_path / "ledger.sqlite"))
    upsert = Upsert(LosesTheLedger(ledger), ledger, TEMPLATES["create_feature"], dry_run=False)
    job = Keyed(Request("POST", "/releases/PRJ1-R-1/features", body={"feature": {"name": "n"}}),
                {"release_id": "PRJ1-R-1"}, Scope("s", "t", "K"), "stream 's', record key 'K'")
    with pytest.raises(Unrecorded) as caught:
        upsert.deliver(job)
    ledger._lock_file.close()
    assert caught.value.done.operation == "create"
    assert caught.value.done.answer.data["feature"]["id"] == "7"
    message = str(caught.value)
    assert message.startswith("Stopped at stream 's', record key 'K': Aha! created PRJ1-1 "
                              f"(id 7), but the key ledger ({tmp_path / 'ledger.sqlite'}) failed")
    assert "no STATE was emitted past this record" in message
    assert "next run finds this object and adopts it" in message


@pytest.mark.slow
def test_full_disk_mid_run_stops_with_a_message(sandbox: Sandbox, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    cfg = {"base_url": sandbox.base_url, "api_key": TOKEN, "ledger_path": str(ledger),
           "streams": {"intake": FEATURES}, "results_path": str(tmp_path / "r.jsonl"),
           "state_interval_seconds": 0.001}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    n = 80
    data = "".join(json.dumps(m) + "\n" for m in [
        schema("intake", key_properties=["id"]),
        *(m for i in range(n) for m in (
            record("intake", {"id": f"REQ-{i}", "name": f"request {i}"}), state({"done": i}))),
    ])

    def small_files() -> None:  # the disk is "full" once a file would grow past 160 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (160 * 1024, 160 * 1024))

    run = subprocess.run([EXECUTABLE, "--config", str(tmp_path / "c.json")], input=data,
                         capture_output=True, text=True, timeout=120, check=False,
                         preexec_fn=small_files)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert f"key ledger ({ledger})" in run.stderr
    assert "stream 'intake', record key 'REQ-" in run.stderr
    assert "no STATE was emitted past this record" in run.stderr
    states = [json.loads(line)["done"] for line in run.stdout.splitlines()]
    assert len(states) < n - 1
    results = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    # every object Aha! made is in the results file, or will be adopted from its pending mark
    rerun = subprocess.run([EXECUTABLE, "--config", str(tmp_path / "c.json")], input=data,
                           capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    counts = Counter(o["name"] for o in sandbox.objects("feature"))
    assert counts == Counter({f"request {i}": 1 for i in range(n)})
    assert {r["key"] for r in results} <= {f"REQ-{i}" for i in range(n)}



def test_postgres_ledger_migrates_and_forgets_by_account_and_kind(postgres_url: str) -> None:
    from target_aha.ledger_postgres import PostgresLedger  # noqa: PLC0415

    ledger = PostgresLedger(postgres_url, 2, "postgres")
    try:
        features = "http://a.test/api/v1/releases/R-1/features"
        old = Scope("pg_safety", features, "p|q")
        ledger.store(old, {"id": "9", "reference_num": "PRJ1-9"}, "h")
        new = Scope("pg_safety", features, '["p","q"]', legacy="p|q")
        assert ledger.get(new) is not None and ledger.get(old) is None  # renamed once
        epics = "http://a.test/api/v1/releases/R-1/epics"
        ledger.store(Scope("pg_safety", epics, "E"), {"id": "9"}, "h")
        ledger.store(Scope("pg_safety", "http://b.test/api/v1/products/P/epics", "E"),
                     {"id": "9"}, "h")
        assert ledger.forget_object("http://a.test/api/v1", "/epics/9") == 1
        assert ledger.get(new) is not None
        assert ledger.forget_object("http://a.test/api/v1", "/features/9") == 1
        assert ledger.get(new) is None
    finally:
        ledger._run("DELETE FROM target_aha_ledger WHERE stream = 'pg_safety'", {})
        ledger.close()
