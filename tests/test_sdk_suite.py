"""The Singer SDK's standard target tests, run against target-aha and the local sandbox.

`singer_sdk.testing` feeds each test one of its `target_test_streams/*.singer` files. Here each
standard test is subclassed with a `validate()` (the SDK's hook, called after the test's run)
that compares the input with what reached Aha!: one create request per record, one Aha! object
per record holding the record's fields, one results line per record, and the tap's last STATE.

Every stream of those files is mapped to an Aha! destination in `SUITE_STREAMS`. Their records
have no `name`, which Aha! requires for features, epics, goals, initiatives and teams, so SDK
stream maps (applied before the sink) give each record one. Each test gets its own sandbox
(the `resource` fixture, which the SDK hands to each test) and its own results file.

Standard target tests and how they run here (all of `suites.target_tests`, plus one more):
- array_data, camelcase, camelcase_complex_schema, duplicate_records, encoded_string_data,
  no_primary_keys, optional_attributes, pk_updates, record_missing_fields, schema_no_properties,
  schema_updates, special_chars_in_attributes: load, then `Loads.validate`.
- multiple_state_messages (not in the SDK's standard suite): xfail, strict. The SDK's test
  compares the STATE values its runner parsed (dicts) with JSON strings, so no target can pass
  it with this SDK. (Its list also expects intermediate STATEs, which target-aha emits only
  when it drains: at end of input, or every `state_interval_seconds`, 60 by default.) STATE
  relaying is still checked: `Loads.validate` asserts the tap's last STATE on every load.
- record_missing_required_property: the SDK expects the load to succeed, but with the default
  `validate_records: true` a record failing its schema stops the run, as the spec asks (§8).
  The suite test runs with `validate_records: false`; the default behaviour is checked by
  `test_record_missing_required_property_stops_when_validating` below.
- cli_prints, invalid_schema, record_before_schema, record_missing_key_property: the SDK
  asserts they print or raise; `SendsNothing.validate` adds that no request reached Aha!.
No standard test is left out. The files user_location_data, user_location_upsert_data and
no_primary_keys_append are not used by any SDK target test, so their streams are not mapped.
"""

from __future__ import annotations

import importlib.resources
import json
import typing as t
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from singer_sdk.testing import SuiteConfig, get_target_test_class, target_test_streams
from singer_sdk.testing.runners import TargetTestRunner
from singer_sdk.testing.suites import SingerTestSuite, target_tests
from singer_sdk.testing.target_tests import TargetMultipleStateMessages

from target_aha.sandbox import Sandbox
from target_aha.target import TargetAha
from tests.conftest import TOKEN

Fields = dict[str, t.Any]


@dataclass(frozen=True)
class Dest:
    """Where a suite stream goes, and what the Aha! object of each of its records must hold."""

    entry: Fields  # the stream's entry in `streams`
    kind: str  # the sandbox object kind the template creates
    path: str  # the request path of the create
    stream_map: Fields | None = None  # the stream's entry in `stream_maps`
    # record -> fields its Aha! object must hold (`id` is Aha!'s own, so never compared)
    expect: t.Callable[[Fields], Fields] = field(default=lambda rec: rec)


def feature(stream_map: Fields | None, expect: t.Callable[[Fields], Fields]) -> Dest:
    return Dest(
        {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}, "feature",
        "/api/v1/releases/PRJ1-R-1/features", stream_map, expect,
    )


def named(label: str, field_name: str = "id") -> tuple[Fields, t.Callable[[Fields], Fields]]:
    """A stream map naming each record `<label> <field>`, and the fields that then land."""
    stream_map = {"name": f"'{label} ' + str({field_name})"}
    return stream_map, lambda rec: {**rec, "name": f"{label} {rec[field_name]}"}


SUITE_STREAMS: dict[str, Dest] = {
    "test_array_data": feature(*named("fruits")),
    "TestCamelcase": Dest(
        {"endpoint": "create_epic", "release_id": "PRJ1-R-1"}, "epic",
        "/api/v1/releases/PRJ1-R-1/epics",
        {"name": "clientName"}, lambda rec: {**rec, "name": rec["clientName"]},
    ),
    "ForecastingTypeToCategory": feature(*named("forecast", "Id")),
    # With the ledger off, each of its 5 records (ids 1, 2, 1, 2, 1) is a create of its own.
    # A goal also needs what Aha! marks required: a success metric and a workflow status
    # (answered as an object, so only the metric is compared).
    "test_duplicate_records": Dest(
        {"endpoint": "create_goal", "product_id": "PRJ1"}, "goal",
        "/api/v1/products/PRJ1/goals",
        {"name": "'metric ' + str(id)", "success_metric_name": "'count'",
         "success_metric_description": "'how many'", "workflow_status": "'In progress'"},
        lambda rec: {**rec, "name": f"metric {rec['id']}", "success_metric_name": "count",
                     "success_metric_description": "how many"},
    ),
    "test_strings": feature(*named("string")),
    "test_strings_in_objects": Dest(
        {"endpoint": "create_initiative", "product_id": "PRJ1"}, "initiative",
        "/api/v1/products/PRJ1/initiatives", *named("object"),
    ),
    "test_strings_in_arrays": Dest(
        {"endpoint": "create_team"}, "team", "/api/v1/teams", *named("team"),
    ),
    "test_invalid_schema": feature(*named("invalid")),
    "test_multiple_state_messages_a": feature(*named("a")),
    "test_multiple_state_messages_b": feature(*named("b")),
    "test_no_pk": Dest(
        {"endpoint": "create_epic_in_default_release", "product_id": "PRJ1"}, "epic",
        "/api/v1/products/PRJ1/epics", *named("no pk"),
    ),
    "test_optional_attributes": feature(*named("optional")),
    # pk_updates: its records have a `name` already.
    "example_stream": feature(None, lambda rec: rec),
    "test_record_before_schema": feature(*named("early")),
    "test_record_missing_key_property": feature(*named("keyless", "metric")),
    "record_missing_fields": feature(*named("missing")),
    "test_record_missing_required_property": feature(*named("metric", "metric")),
    # A custom table record: its fields must be columns of the table (name, tier, ...).
    "test_object_schema_with_properties": Dest(
        {"endpoint": "create_custom_table_record", "product_id": "PRJ1",
         "custom_table_key": "vendors"},
        "custom_object_record", "/api/v1/products/PRJ1/custom_objects/vendors/records",
        {
            "name": "'vendor ' + str(object_store['id'])",
            "tier": "str(object_store['metric'])",
            "object_store": "__NULL__",
        },
        lambda rec: {
            "name": f"vendor {rec['object_store']['id']}",
            "tier": str(rec["object_store"]["metric"]),
        },
    ),
    "test_object_schema_no_properties": feature(
        {"name": "'store ' + str(object_store['id'])"},
        lambda rec: {**rec, "name": f"store {rec['object_store']['id']}"},
    ),
    "test_schema_updates": feature(*named("update")),
    "test:SpecialChars!in?attributes": feature(*named("special", "_id")),
}

SUITE_CONFIG: Fields = {
    "ledger_path": "",
    "streams": {name: dest.entry for name, dest in SUITE_STREAMS.items()},
    "stream_maps": {
        name: dest.stream_map for name, dest in SUITE_STREAMS.items() if dest.stream_map
    },
}


@dataclass(frozen=True)
class AhaResource:
    """The SDK tests' external resource: a fresh sandbox and a results file for one test."""

    sandbox: Sandbox
    results_path: Path

    @property
    def settings(self) -> Fields:
        return {
            "base_url": self.sandbox.base_url,
            "api_key": TOKEN,
            "results_path": str(self.results_path),
        }

    def results(self) -> list[Fields]:
        if not self.results_path.exists():
            return []
        return [json.loads(line) for line in self.results_path.read_text().splitlines()]


@dataclass
class SuiteInput:
    """What a `.singer` file asks for: records per stream (with their keys) and the last STATE."""

    records: dict[str, list[tuple[Fields, str | None]]]
    last_state: Fields | None

    @classmethod
    def read(cls, text: str) -> SuiteInput:
        records: dict[str, list[tuple[Fields, str | None]]] = {}
        key_properties: dict[str, list[str]] = {}
        last_state = None
        for line in text.splitlines():
            message = json.loads(line)
            if message["type"] == "SCHEMA":
                key_properties[message["stream"]] = message.get("key_properties") or []
            elif message["type"] == "RECORD":
                rec = message["record"]
                keys = key_properties.get(message["stream"], [])
                key = "|".join(str(rec[k]) for k in keys) if keys else None
                records.setdefault(message["stream"], []).append((rec, key))
            elif message["type"] == "STATE":
                last_state = message["value"]
        return cls(records, last_state)


def held_fields(kind: str, obj: Fields) -> Fields:
    """An Aha! object's user fields (a custom table record's live in `custom_fields`)."""
    if kind == "custom_object_record":
        return {cf["key"]: cf["value"] for cf in obj["custom_fields"]}
    return obj


class AhaTemplate:
    """Points the SDK's runner at this test's sandbox, then checks what reached Aha!."""

    settings: t.ClassVar[Fields] = {}  # per-test config on top of SUITE_CONFIG

    def run(self, config: SuiteConfig, resource: AhaResource, runner: TargetTestRunner) -> None:
        runner.config = {**runner.config, **resource.settings, **self.settings}
        super().run(config, resource, runner)


class Loads(AhaTemplate):
    """Every record became one create, one Aha! object with its fields, one results line."""

    def validate(self) -> None:
        resource: AhaResource = self.resource
        sandbox = resource.sandbox
        text = self.singer_filepath.read_text(encoding="utf-8")
        given = SuiteInput.read(text)
        results = resource.results()
        requests = sandbox.requests()

        assert len(results) == sum(len(recs) for recs in given.records.values()), results
        assert len(requests) == len(results), [(r["method"], r["path"]) for r in requests]
        for stream, records in given.records.items():
            dest = SUITE_STREAMS[stream]
            lines = [line for line in results if line["stream"] == stream]
            assert [line["status"] for line in lines] == ["succeeded"] * len(records), lines
            assert {line["endpoint"] for line in lines} == {dest.entry["endpoint"]}
            assert {line["operation"] for line in lines} == {"create"}
            assert Counter(line["key"] for line in lines) == Counter(k for _, k in records)

            sent = [r for r in requests if r["path"] == dest.path]
            assert len(sent) == len(records), [r["path"] for r in requests]
            assert {(r["method"], r["status"]) for r in sent} <= {("POST", 200), ("POST", 201)}

            ids = {line["aha_id"] for line in lines}
            objects = [o for o in sandbox.objects(dest.kind) if o["id"] in ids]
            assert len(objects) == len(records)
            unmatched = [held_fields(dest.kind, o) for o in objects]
            for rec, _ in records:
                want = {k: v for k, v in dest.expect(rec).items() if k != "id"}
                match = next(
                    (o for o in unmatched if all(k in o and o[k] == v for k, v in want.items())),
                    None,
                )
                assert match is not None, f"{stream}: no Aha! {dest.kind} holds {want}"
                unmatched.remove(match)

        # The tap's last STATE comes out once its records are in Aha! (the SDK never relays
        # an empty STATE `{}`, as record_missing_fields ends with).
        states = self.runner.state_messages
        assert states[-1:] == ([given.last_state] if given.last_state else [])


class SendsNothing(AhaTemplate):
    """The run stopped (or never started) before anything reached Aha!."""

    def validate(self) -> None:
        resource: AhaResource = self.resource
        assert resource.sandbox.requests() == []
        assert resource.results() == []
        assert self.runner.state_messages == []


CHECKS: dict[str, type[AhaTemplate]] = {
    "cli_prints": SendsNothing,
    "invalid_schema": SendsNothing,
    "record_before_schema": SendsNothing,
    "record_missing_key_property": SendsNothing,
}
SETTINGS: dict[str, Fields] = {
    "record_missing_required_property": {"validate_records": False},
}


def checked(test_class: type) -> type:
    """The SDK test with our runner settings and validate() (Loads unless listed in CHECKS)."""
    check = CHECKS.get(test_class.name, Loads)
    return type(
        test_class.__name__, (check, test_class), {"settings": SETTINGS.get(test_class.name, {})}
    )


aha_target_tests = SingerTestSuite(
    kind="target",
    tests=[checked(test) for test in [*target_tests.tests, TargetMultipleStateMessages]],
)

_SDKTargetTests = get_target_test_class(
    TargetAha,
    config=SUITE_CONFIG,
    custom_suites=[aha_target_tests],
    include_target_tests=False,
    # A developer's TARGET_AHA_* variables must not leak into the suite's runs.
    parse_env_config=False,
)


class TestTargetAhaSDKSuite(_SDKTargetTests):
    """The standard target tests; pytest collects them from here."""

    @pytest.fixture
    def resource(self, sandbox: Sandbox, tmp_path: Path) -> AhaResource:
        return AhaResource(sandbox, tmp_path / "results.jsonl")

    # The SDK's own test compares the STATE values it parsed (dicts) with JSON strings, so it
    # cannot pass for any target in this SDK version (the SDK leaves it out of its suite).
    # Strict, so that a run where it passes is flagged and this wrapper can go.
    @pytest.mark.xfail(strict=True, reason="SDK test compares STATE dicts with JSON strings")
    def test_target_multiple_state_messages(
        self, config: SuiteConfig, resource: AhaResource, runner: TargetTestRunner
    ) -> None:
        _SDKTargetTests.test_target_multiple_state_messages(config, resource, runner)


def test_suite_runs_every_standard_target_test() -> None:
    """A test the SDK adds to its standard suite is run here too (not silently dropped)."""
    names = {test.name for test in target_tests.tests}
    collected = {n[len("test_target_"):] for n in dir(TestTargetAhaSDKSuite)
                 if n.startswith("test_target_")}
    assert names <= collected
    assert "multiple_state_messages" in collected


def test_record_missing_required_property_stops_when_validating(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """With the default validate_records, the SDK suite's record lacking `id` stops the run."""
    results_path = tmp_path / "results.jsonl"
    runner = TargetTestRunner(
        TargetAha,
        config={**SUITE_CONFIG, **AhaResource(sandbox, results_path).settings},
        input_filepath=importlib.resources.files(target_test_streams)
        / "record_missing_required_property.singer",
        parse_env_config=False,
    )
    # target-aha's wording of the schema mismatch names the missing property.
    with pytest.raises(Exception, match=r"must contain \['id'\] properties"):
        runner.sync_all()
    assert sandbox.requests() == []
    assert AhaResource(sandbox, results_path).results() == []
