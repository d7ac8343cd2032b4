"""`--verify-ledger` and `verify_ledger: true` (spec §13) through the real executable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from target_aha.ledger import Scope
from target_aha.ledger_sqlite import SQLiteLedger
from target_aha.sandbox import Sandbox
from tests.conftest import record, schema, state


def config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"ledger_path": str(tmp_path / "ledger.sqlite"),
            "streams": {"s": {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}},
            **extra}


def keyed(n: int) -> list[dict[str, Any]]:
    return [schema("s", key_properties=["id"]),
            *(record("s", {"id": f"K{i}", "name": f"thing {i}"}) for i in range(n)),
            state({"n": n})]


FAST = {"max_requests_per_second": 1000, "max_requests_per_minute": 60000,
        "max_concurrency": 8}


def loaded(sandbox: Sandbox, run_target, tmp_path: Path, n: int) -> dict[str, str]:
    """Load `n` keyed features (fast: no client-side limit); their ids by key."""
    first = run_target(config(tmp_path, **FAST), keyed(n), sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    return {r["key"]: r["aha_id"] for r in first.results}


def test_verify_forgets_deleted_objects_then_a_run_recreates_exactly_those(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    ids = loaded(sandbox, run_target, tmp_path, 5)
    for key in ("K1", "K3"):
        sandbox.delete_object("feature", ids[key])
    sandbox.clear_requests()

    verified = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    # One listing page, then a GET of each object missing from it (404: gone).
    assert [(r["method"], r["path"]) for r in sandbox.requests()] == [
        ("GET", "/api/v1/releases/PRJ1-R-1/features"),
        *(("GET", f"/api/v1/features/{ids[key]}") for key in ("K1", "K3"))]
    assert "stream s: 3 kept, 2 forgotten (created again on the next run), 0 unverifiable" \
        in verified.stdout
    assert "5 rows checked with 3 GET requests" in verified.stdout
    assert "STATE" not in verified.stdout

    sandbox.clear_requests()
    again = run_target(config(tmp_path), keyed(5), sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    assert sorted((r["key"], r["operation"]) for r in again.results) == [
        ("K0", "unchanged"), ("K1", "create"), ("K2", "unchanged"), ("K3", "create"),
        ("K4", "unchanged")]
    assert len(sandbox.objects("feature")) == 5
    assert [r["method"] for r in sandbox.requests() if r["method"] != "GET"] == ["POST"] * 2


def test_verify_pages_through_a_container_200_at_a_time(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    loaded(sandbox, run_target, tmp_path, 450)
    sandbox.clear_requests()
    verified = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    listings = sandbox.requests()
    assert len(listings) == 3
    assert all(r["method"] == "GET" and r["query"].get("per_page") == "200" for r in listings)
    assert "stream s: 450 kept, 0 forgotten" in verified.stdout
    assert "450 rows checked with 3 GET requests" in verified.stdout


def test_a_row_missing_from_its_listing_is_kept_while_its_object_exists(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    """An object listed elsewhere (a PM moved it) answers its own GET: never forgotten."""
    ids = loaded(sandbox, run_target, tmp_path, 2)
    ledger = SQLiteLedger(str(tmp_path / "ledger.sqlite"))
    try:
        moved = Scope("s", sandbox.base_url + "/releases/PRJ1-R-1/features", "K0")
        entry = ledger.get(moved)
        assert entry is not None
        other = Scope("s", sandbox.base_url + "/releases/PRJ1-R-2/features", "K0")
        ledger.forget(moved)
        ledger.store(other, entry.as_object(), entry.body_hash)
    finally:
        ledger.close()
    sandbox.clear_requests()
    verified = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert "stream s: 2 kept, 0 forgotten" in verified.stdout
    assert f"/api/v1/features/{ids['K0']}" in [r["path"] for r in sandbox.requests()]


def test_the_setting_verifies_before_a_load(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    ids = loaded(sandbox, run_target, tmp_path, 3)
    sandbox.delete_object("feature", ids["K2"])
    again = run_target(config(tmp_path, verify_ledger=True), keyed(3), sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    assert "stream s: 2 kept, 1 forgotten" in again.stderr
    assert sorted((r["key"], r["operation"]) for r in again.results) == [
        ("K0", "unchanged"), ("K1", "unchanged"), ("K2", "create")]
    assert again.states == [{"n": 3}]


def test_verify_without_a_ledger_says_so(sandbox: Sandbox, run_target, tmp_path: Path) -> None:
    verified = run_target(config(tmp_path, ledger_path=""), [], sandbox=sandbox,
                          extra_args=("--verify-ledger",))
    assert verified.returncode != 0
    assert "--verify-ledger needs a ledger" in verified.stderr
    assert sandbox.requests() == []


def test_rows_that_cannot_be_checked_are_kept_as_unverifiable(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    """A pending create, and a container Aha! will not list (404): kept, counted, no guess."""
    loaded(sandbox, run_target, tmp_path, 1)
    ledger = SQLiteLedger(str(tmp_path / "ledger.sqlite"))
    try:
        ledger.mark_pending(Scope("s", sandbox.base_url + "/releases/PRJ1-R-1/features", "P"),
                            "digest")
        ledger.store(Scope("s", sandbox.base_url + "/releases/PRJ1-R-99/features", "Q"),
                     {"id": "1234", "reference_num": "PRJ1-99"}, "digest")
    finally:
        ledger.close()
    verified = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert "stream s: 1 kept, 0 forgotten (created again on the next run), 2 unverifiable" \
        in verified.stdout
    ledger = SQLiteLedger(str(tmp_path / "ledger.sqlite"))
    try:
        assert len(ledger.account_rows(sandbox.base_url)) == 3
    finally:
        ledger.close()


def test_a_dry_run_reports_the_deleted_but_forgets_nothing(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    ids = loaded(sandbox, run_target, tmp_path, 2)
    sandbox.delete_object("feature", ids["K0"])
    verified = run_target(config(tmp_path, dry_run=True), [], sandbox=sandbox,
                          extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert "stream s: 1 kept, 1 gone from Aha! (dry run: not forgotten)" in verified.stdout
    again = run_target(config(tmp_path), keyed(2), sandbox=sandbox)
    assert [r["operation"] for r in again.results] == ["unchanged", "unchanged"]


def test_rows_of_other_targets_are_not_guessed_at(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    """A row whose target is no template's container (an object updated in place, a custom
    endpoint) costs no request and is kept."""
    ledger = SQLiteLedger(str(tmp_path / "ledger.sqlite"))
    try:
        ledger.store(Scope("u", sandbox.base_url + "/features/PRJ1-1", "K"),
                     {"id": "PRJ1-1"}, "digest")
        ledger.store(Scope("c", sandbox.base_url + "/bulk/accounts", "K"), {"id": "7"}, "digest")
    finally:
        ledger.close()
    verified = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert "stream c: 0 kept, 0 forgotten (created again on the next run), 1 unverifiable" \
        in verified.stdout
    assert "stream u: 0 kept, 0 forgotten (created again on the next run), 1 unverifiable" \
        in verified.stdout
    assert sandbox.requests() == []


def test_a_big_container_with_few_rows_costs_a_get_per_row_not_every_page(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    ids = loaded(sandbox, run_target, tmp_path, 450)  # 3 pages of 200
    ledger = SQLiteLedger(str(tmp_path / "ledger.sqlite"))
    try:
        for row in ledger.account_rows(sandbox.base_url):
            if row.scope.key != "K449":  # listed last, on page 3
                ledger.forget(row.scope)
    finally:
        ledger.close()
    sandbox.clear_requests()
    verified = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert "stream s: 1 kept, 0 forgotten" in verified.stdout
    assert [r["path"] for r in sandbox.requests()] == [
        "/api/v1/releases/PRJ1-R-1/features", f"/api/v1/features/{ids['K449']}"]


def test_verify_on_a_postgres_ledger(
    sandbox: Sandbox, run_target, tmp_path: Path, postgres_url: str
) -> None:
    """The same verification on PostgreSQL: each key is held while its row is dropped."""
    cfg = {**config(tmp_path), "ledger_path": postgres_url}
    cfg["streams"] = {"pg_verify": cfg["streams"]["s"]}
    messages = [{**m, "stream": "pg_verify"} if "stream" in m else m for m in keyed(3)]
    first = run_target(cfg, messages, sandbox=sandbox)
    assert first.returncode == 0, first.stderr
    sandbox.delete_object("feature", {r["key"]: r["aha_id"] for r in first.results}["K1"])
    verified = run_target(cfg, [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert "stream pg_verify: 2 kept, 1 forgotten" in verified.stdout
    again = run_target(cfg, messages, sandbox=sandbox)
    assert sorted((r["key"], r["operation"]) for r in again.results) == [
        ("K0", "unchanged"), ("K1", "create"), ("K2", "unchanged")]


def test_rows_of_update_streams_are_reported_as_objects_not_as_a_nameless_stream(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    ids = loaded(sandbox, run_target, tmp_path, 1)
    updates = {"ledger_path": str(tmp_path / "ledger.sqlite"),
               "streams": {"renames": {"endpoint": "update_feature", "feature_id": "{ref}"}}}
    renamed = run_target(updates, [schema("renames"),
                                   record("renames", {"ref": ids["K0"], "name": "renamed"})],
                         sandbox=sandbox)
    assert renamed.returncode == 0, renamed.stderr
    verified = run_target(config(tmp_path), [], sandbox=sandbox, extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert "stream s: 1 kept" in verified.stdout
    assert ("verify-ledger: objects changed by update streams (checked by their next update): "
            "0 kept, 0 forgotten (created again on the next run), 1 unverifiable") \
        in verified.stdout, verified.stdout
    assert "stream :" not in verified.stdout


def test_a_dry_run_of_a_ledger_file_not_made_yet_verifies_an_empty_ledger(
    sandbox: Sandbox, run_target, tmp_path: Path
) -> None:
    verified = run_target(config(tmp_path, dry_run=True), [], sandbox=sandbox,
                          extra_args=("--verify-ledger",))
    assert verified.returncode == 0, verified.stderr
    assert "the ledger has no rows of this account" in verified.stdout
    assert 'ledger_path is ""' not in verified.stdout + verified.stderr
    assert not (tmp_path / "ledger.sqlite").exists()  # a dry run creates no ledger
    assert sandbox.requests() == []
