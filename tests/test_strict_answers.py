"""Answers that are not what Aha! answers: a 2xx naming no object is no success, `--test`
needs Aha!'s shapes, and crash recovery never adopts an object that was there before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from target_aha.ledger import Scope
from target_aha.ledger_sqlite import SQLiteLedger
from target_aha.sandbox import Sandbox
from tests.conftest import EXECUTABLE, TOKEN, record, schema, state
from tests.hostile import Hostile, Reply, Seen

SECRET = "hostile-secret-token"
Answer = tuple[int, str, bytes]  # status, content type, body
HTML = (200, "text/html", b"<html><body>Please log in</body></html>")


class Routed(Hostile):
    """A hostile "Aha!" that answers each `METHOD /path` with what `routes` says (default 404);
    `seen` holds (method, path, parsed body)."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer | Callable[[dict[str, Any]], Answer]] = {}
        super().__init__(self._reply)
        self.base_url = self.url + "/api/v1"

    def _reply(self, seen: Seen) -> Reply:
        route = self.routes.get(f"{seen.method} {seen.path.split('?', 1)[0]}")
        if callable(route):
            route = route(json.loads(seen.body) if seen.body else None)
        status, kind, data = route or (404, "application/json", b'{"error": "nope"}')
        return status, {"Content-Type": kind}, data


@pytest.fixture
def hostile() -> Iterator[Routed]:
    server = Routed()
    yield server
    server.close()


def js(status: int, data: Any) -> Answer:
    return status, "application/json", json.dumps(data).encode()


def no_object(body: dict[str, Any]) -> Answer:
    """A 2xx per record name that never says which object (if any) was made."""
    name = body["feature"]["name"]
    return {
        "html": HTML,
        "empty": (200, "application/json", b""),
        "named": js(201, {"feature": {"name": name}}),
    }[name]


def test_a_2xx_without_an_object_is_no_quiet_success(hostile: Routed, run_target, tmp_path):
    path = "/api/v1/releases/R1/features"
    hostile.routes[f"POST {path}"] = no_object
    hostile.routes[f"GET {path}"] = js(200, {"features": [], "pagination": {"total_pages": 1}})
    ledger = str(tmp_path / "ledger.sqlite")
    cfg = {"base_url": hostile.base_url, "api_key": SECRET, "ledger_path": ledger,
           "on_record_error": "skip", "max_retries": 0,
           "streams": {s: {"endpoint": "create_feature", "release_id": "R1"} for s in "su"}}
    messages = [schema("s", key_properties=["id"]),
                *(record("s", {"id": f"K-{n}", "name": n}) for n in ("html", "empty", "named")),
                schema("u"), record("u", {"name": "html"}),  # no key: nothing to look for later
                state({"bookmark": 1})]
    run = run_target(cfg, messages)
    assert run.returncode == 0, run.stderr
    assert run.states == [{"bookmark": 1}]  # settled as rejected under skip
    lines = {r["key"]: r for r in run.results}  # sent concurrently: any order
    assert len(run.results) == 4
    assert {k: (r["status"], r["aha_id"]) for k, r in lines.items()} == {
        "K-html": ("rejected", None), "K-empty": ("rejected", None),
        "K-named": ("rejected", None), None: ("rejected", None)}
    for line in run.results:
        assert "named no object" in line["error"] and "unknown" in line["error"]
    assert "next run looks for the object" in lines["K-named"]["error"]
    assert "cannot look for it later" in lines[None]["error"]
    assert "named no object" in run.stderr  # warned in the log, not only in the results
    assert SECRET not in run.stdout + run.stderr + run.results_path.read_text()
    # The keys stay pending: the next attempt looks in the container before creating.
    store = SQLiteLedger(ledger)
    for key in ("K-html", "K-empty", "K-named"):
        entry = store.get(Scope("s", hostile.base_url + "/releases/R1/features", key))
        assert entry is not None and entry.pending and entry.aha_id is None
    store.close()

    # on_record_error: fail stops the run before STATE; the pending key was looked for first.
    hostile.seen.clear()
    again = run_target({**cfg, "on_record_error": "fail"}, [*messages[:2], messages[-1]])
    assert again.returncode != 0
    assert again.states == []
    assert "named no object" in again.stderr and "Traceback" not in again.stderr
    assert [seen.method for seen in hostile.seen] == ["GET", "POST"]
    assert "q=html" in hostile.seen[0].path


ME_OK = js(200, {"user": {"id": "1", "email": "a@example.com"}})


@pytest.mark.parametrize(
    ("routes", "fails"),
    [
        # /me fine, but the containers answer a login page and an object without an id.
        ({"GET /api/v1/me": ME_OK, "GET /api/v1/releases/R1": HTML,
          "GET /api/v1/products/P1": js(200, {"product": {"name": "x"}}),
          "GET /api/v1/products/P1/custom_objects/t/records": js(200, [1, 2])},
         ["release 'R1'", "product 'P1'", "custom table 't'"]),
        ({"GET /api/v1/me": js(200, {"user": "bob"})}, ["API key"]),
        ({"GET /api/v1/me": js(200, ["not", "a", "user"])}, ["API key"]),
        ({"GET /api/v1/me": HTML}, ["API key"]),
    ],
    ids=["containers", "user-string", "json-list", "html"],
)
def test_preflight_needs_ahas_answers(hostile: Routed, run_target, routes, fails) -> None:
    hostile.routes.update(routes)
    streams = {"f": {"endpoint": "create_feature", "release_id": "R1"},
               "r": {"endpoint": "create_custom_table_record", "product_id": "P1",
                     "custom_table_key": "t"}}
    run = run_target({"base_url": hostile.base_url, "api_key": SECRET, "streams": streams}, [],
                     extra_args=("--test",))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == len(fails), run.stdout
    for line, what in zip(failed, fails, strict=True):
        assert what in line and "not with" in line and "base_url" in line, line
    assert SECRET not in run.stdout + run.stderr


def test_recovery_adopts_the_new_team_not_the_old_one(sandbox: Sandbox, run_target, tmp_path):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    old = requests.post(sandbox.base_url + "/teams", json={"team": {"name": "Platform"}},
                        headers=auth, timeout=10).json()["team"]
    ledger = str(tmp_path / "ledger.sqlite")
    cfg = {"base_url": sandbox.base_url, "api_key": TOKEN, "ledger_path": ledger,
           "results_path": str(tmp_path / "killed.jsonl"),
           "streams": {"teams": {"endpoint": "create_team"}}}
    messages = [schema("teams", key_properties=["id"]),
                record("teams", {"id": "T-1", "name": "Platform"}), state({"n": 1})]
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(m) + "\n" for m in messages))
    # The create commits in Aha!, its answer never comes, and the process dies waiting.
    sandbox.configure(commit_timeout_rate=1.0, commit_timeout_seconds=30,
                      faults_on_writes_only=True)
    with (tmp_path / "in.jsonl").open() as stdin:
        proc = subprocess.Popen([EXECUTABLE, "--config", str(tmp_path / "c.json")], stdin=stdin,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while len(sandbox.objects("team")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    teams = sandbox.objects("team")
    assert [t["name"] for t in teams] == ["Platform", "Platform"]
    new = teams[1]
    assert "created_at" not in new  # nothing in Aha!'s answer says which team is newer
    sandbox.configure(commit_timeout_rate=0.0)
    sandbox.clear_requests()

    run = run_target({**cfg, "results_path": str(tmp_path / "rerun.jsonl")}, messages,
                     sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert [(r["operation"], r["status"], r["aha_id"]) for r in run.results] == [
        ("create", "succeeded", new["id"])]
    assert new["id"] != old["id"]
    assert {r["method"] for r in sandbox.requests()} == {"GET"}  # nothing created again
    assert len(sandbox.objects("team")) == 2
    assert run.states == [{"n": 1}]


OLD_SCHEMA = """CREATE TABLE target_aha_ledger (
    stream TEXT NOT NULL, target TEXT NOT NULL, key TEXT NOT NULL, aha_id TEXT,
    reference_num TEXT, url TEXT, body_hash TEXT NOT NULL, pending_since DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (stream, target, key))"""


def test_old_ledgers_gain_the_pending_listing_column(tmp_path, postgres_url) -> None:
    import sqlite3  # noqa: PLC0415

    import sqlalchemy as sa  # noqa: PLC0415

    from target_aha.ledger import body_hash  # noqa: PLC0415
    from target_aha.ledger_postgres import PostgresLedger  # noqa: PLC0415

    path = str(tmp_path / "old.sqlite")
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        db.execute("INSERT INTO target_aha_ledger VALUES ('s', 't', 'old', NULL, NULL, NULL, "
                   "'h', 1.0, 1.0)")
    engine = sa.create_engine("postgresql+psycopg://" + postgres_url.split("://", 1)[1])
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS target_aha_ledger"))
        conn.execute(sa.text(OLD_SCHEMA))
    engine.dispose()
    for ledger in (SQLiteLedger(path), PostgresLedger(postgres_url, 1, "the test database")):
        old = ledger.get(Scope("s", "t", "old"))
        if old is not None:  # the SQLite file's row, from before the column existed
            assert old.pending and old.pending_before is None
        scope = Scope("s", "t", "new")
        first = ledger.mark_pending(scope, body_hash({}), ["1", "2"])
        again = ledger.mark_pending(scope, body_hash({}), ["1", "2", "3"])
        assert first.pending_before == again.pending_before == frozenset({"1", "2"})
        ledger.store(scope, {"id": "3"}, body_hash({}))
        stored = ledger.get(scope)
        assert stored is not None and stored.pending_before is None and stored.aha_id == "3"
        ledger.close()
