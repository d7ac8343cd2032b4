"""Bad input a tap (or an attacker feeding the target) can send: one message, no traceback.

Every input error ends the run with exit code 1 and one paragraph naming the input line (and
the stream and record where there is one) and what to do; nothing after the line is sent, no
STATE after it is emitted, and every record read before it has its results line.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from target_aha.errors import InputError
from target_aha.messages import MAX_LINE_CHARS
from target_aha.sandbox import Sandbox
from target_aha.target import TargetAha
from tests.conftest import EXECUTABLE, record, schema, state
from tests.receiver import Receiver

FEATURES = {"streams": {"f": {"endpoint": "create_feature", "release_id": "PRJ1-R-1",
                              "key_property": "id"}},
            "state_interval_seconds": 1e-9}  # STATE {"n": 1} is emitted before the bad line


def good_start() -> list[Any]:
    """Lines 1-3: one record that lands, and a STATE that may be emitted."""
    return [schema("f"), record("f", {"id": "K0", "name": "ok"}), state({"n": 1})]


def assert_stopped_cleanly(run, sandbox: Sandbox, expected: str, results: int = 1) -> None:
    """Exit 1, one message, no traceback, no STATE past the bad line, lines = records read."""
    assert run.returncode == 1, run.stderr
    assert expected in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states == [{"n": 1}]
    assert len(run.results) == results  # succeeded + rejected + dry_run = records read
    assert [o["name"] for o in sandbox.objects("feature")] == ["ok"]


@pytest.mark.parametrize(
    ("bad", "expected", "results"),
    [
        ({"type": "SCHEMA", "stream": "g", "schema": {"type": "object", "properties": {
            "a": {"type": "string", "pattern": "(["}}}},
         "Input line 4 cannot be loaded: the SCHEMA of stream 'g' is not valid JSON Schema: "
         "at $.properties.a.pattern, '([' is not a 'regex'", 1),
        ({"type": "BATCH", "stream": "f", "encoding": {"format": "jsonl"},
          "manifest": ["file:///etc/passwd"]},
         "Input line 4 cannot be loaded: it is a BATCH message of stream 'f', and target-aha "
         "does not read batch files. Run the tap without its batch_config setting", 1),
        ("5", "Input line 4 cannot be loaded: it is a JSON number, not a Singer message", 1),
        (record("f", None),  # type: ignore[arg-type]
         "Record rejected (stream 'f', record #2): input line 4: the RECORD's \"record\" is "
         "null, not a JSON object", 2),
    ],
    ids=["bad-regex-schema", "batch", "number-line", "null-record-fail"],
)
def test_bad_line_stops_with_one_message(
    sandbox: Sandbox, run_target, bad: Any, expected: str, results: int
) -> None:
    messages = [*good_start(), bad, record("f", {"id": "K9", "name": "never"}), state({"n": 2})]
    run = run_target(FEATURES, messages, sandbox=sandbox)
    assert_stopped_cleanly(run, sandbox, expected, results)
    if results == 2:
        assert run.results[1]["status"] == "rejected"
        assert "null, not a JSON object" in run.results[1]["error"]


# Each bad line below is read in-process (the same reader and target as the executable);
# a `TargetAhaError` is what the CLI prints as one message without a traceback.
DEEP = "[" * 5000 + "]" * 5000
SCHEMA_G = json.dumps(schema("g"))
BAD_LINES: list[tuple[list[str], str]] = [
    (['"x"'], "Input line 1 cannot be loaded: it is a JSON string"),
    (["[1, 2]"], "Input line 1 cannot be loaded: it is a JSON list"),
    (["null"], "Input line 1 cannot be loaded: it is a JSON null"),
    (['{"stream": "g"}'], 'Input line 1 cannot be loaded: the message has no "type"'),
    (['{"type": "FOO"}'], 'its type "FOO" is not a Singer message type'),
    (['{"type": 5}'], "its type 5 is not a Singer message type"),
    (['{"type": ["RECORD"]}'], 'its type ["RECORD"] is not a Singer message type'),
    ([SCHEMA_G, '{"type": "RECORD", "record": {}}'],
     'Input line 2 cannot be loaded: the RECORD message has no "stream"'),
    ([SCHEMA_G, '{"type": "RECORD", "stream": 7, "record": {}}'],
     'the RECORD message has "stream": 7, not a stream name'),
    ([SCHEMA_G, '{"type": "RECORD", "stream": "g"}'],
     "the RECORD message of stream 'g' has no \"record\""),
    (['{"type": "STATE"}'], 'the STATE message has no "value"'),
    (['{"type": "SCHEMA", "stream": "g", "schema": 5}'],
     "the SCHEMA message of stream 'g' has \"schema\": 5, not a JSON object"),
    (['{"type": "SCHEMA", "stream": "g", "schema": {"type": "object", "properties": 5}}'],
     "the SCHEMA of stream 'g' has no \"properties\" object"),
    (['{"type": "SCHEMA", "stream": "g", "schema": {"type": "object", "properties": '
      '{"a": {"type": "strang"}}}}'],
     "the SCHEMA of stream 'g' is not valid JSON Schema: at $.properties.a.type"),
    (['{"type": "SCHEMA", "stream": "g", "schema": {"properties": {}}, "key_properties": 5}'],
     "the SCHEMA of stream 'g' has key_properties 5, not a list of property names"),
    ([SCHEMA_G, '{"type": "RECORD", "stream": "g", "record": {"a": ' + DEEP + "}}"],
     "Input line 2 cannot be loaded: its JSON is nested more than 100 levels deep"),
    ([SCHEMA_G, '{"type": "RECORD", "stream": "g", "record": {"a": '
      + "[" * 150 + "]" * 150 + "}}"],
     "Input line 2 cannot be loaded: its JSON is nested more than 100 levels deep"),
    (['{"type": "SCHEMA", "stream": "g", "schema": {"type": "object", "properties": '
      '{"a": {"$ref": "file:///etc/passwd"}}}}'],
     "Input line 1 cannot be loaded: the stream's schema cannot be compiled: its $ref "
     "'file:///etc/passwd' points outside the schema, and target-aha never fetches schemas"),
    ([json.dumps(schema("g", {"n": {"type": "integer"}})),
      '{"type": "RECORD", "stream": "g", "record": {"n": "x"}}'],
     "Input line 2 cannot be loaded: stream 'g', record #1: the record.n must be integer"),
    (['{"type": "ACTIVATE_VERSION", "stream": "g", "version": 1}'],
     "ACTIVATE_VERSION for stream 'g' came before any SCHEMA of that stream"),
    ([SCHEMA_G],
     "Input line 1 cannot be loaded: the stream map (__alias__: 1 + 'g') of stream 'g' cannot "
     "be set up: TypeError: unsupported operand type(s) for +: 'int' and 'str'. Fix the "
     "stream's entry in stream_maps."),
]
ALIAS_FAILS = len(BAD_LINES) - 1  # the case run with a failing `__alias__` in stream_maps


def worded_error(stream: io.TextIOBase, stream_maps: dict[str, Any] | None = None) -> str:
    """The message of the `InputError` that reading `stream` ends with (in-process)."""
    target = TargetAha(config={"subdomain": "x", "dry_run": True, "ledger_path": "",
                               "streams": {"g": {"endpoint": "create_feature",
                                                 "release_id": "R1"}},
                               "stream_maps": stream_maps or {}})
    try:
        with pytest.raises(InputError) as caught:
            target.listen(stream)  # type: ignore[arg-type]
    finally:
        target.end_run()
    message = str(caught.value)
    assert "\n" not in message  # one paragraph
    assert message.endswith("Nothing from this line on was sent and no STATE was emitted "
                            "for it.")
    return message


@pytest.mark.parametrize(("case", "lines", "expected"),
                         [(n, *case) for n, case in enumerate(BAD_LINES)],
                         ids=range(len(BAD_LINES)))
def test_every_malformed_line_is_worded(case: int, lines: list[str], expected: str) -> None:
    maps = {"g": {"__alias__": "1 + 'g'"}} if case == ALIAS_FAILS else {}
    stream = io.StringIO("".join(line + "\n" for line in lines))
    assert expected in worded_error(stream, maps)


def test_a_line_that_is_not_utf8_is_named() -> None:
    """Standard input (a binary buffer) is decoded line by line: the error names its line."""
    data = (SCHEMA_G + "\n").encode() + b'{"type": "RECORD", "stream": "g", "record": ' \
        b'{"name": "caf\xe9"}}\n'
    message = worded_error(io.TextIOWrapper(io.BytesIO(data), encoding="latin-1"))
    assert "Input line 2 cannot be loaded: it is not UTF-8 text (byte 0xe9 at column 58)" \
        in message


def test_a_line_longer_than_the_bound_is_refused(sandbox: Sandbox, run_target) -> None:
    huge = json.dumps(record("f", {"id": "K1", "name": "x" * MAX_LINE_CHARS}))
    run = run_target(FEATURES, [*good_start(), huge, state({"n": 2})], sandbox=sandbox)
    assert_stopped_cleanly(
        run, sandbox, "Input line 4 cannot be loaded: the line is longer than 100 MiB")


README_MAP = {"name": "title", "description": "'<p>' + body + '</p>'", "title": "__NULL__",
              "body": "__NULL__"}


def test_a_stream_map_failing_on_one_record_names_it(sandbox: Sandbox, run_target) -> None:
    """The README's own stream map, on a record whose body is null."""
    config = {"streams": {"intake_requests": {"endpoint": "create_feature",
                                              "release_id": "PRJ1-R-1"}},
              "stream_maps": {"intake_requests": README_MAP}, "state_interval_seconds": 1e-9}
    messages = [
        schema("intake_requests", {"id": {"type": "string"}, "title": {"type": "string"},
                                   "body": {"type": ["string", "null"]}}, ["id"]),
        record("intake_requests", {"id": "R-1", "title": "ok", "body": "first"}),
        state({"n": 1}),
        record("intake_requests", {"id": "R-2", "title": "null body", "body": None}),
        state({"n": 2}),
    ]
    run = run_target(config, messages, sandbox=sandbox)
    assert run.returncode == 1
    assert ("Input line 4 cannot be loaded: the stream map (description: '<p>' + body + "
            "'</p>') of stream 'intake_requests' failed on record #2 (key 'R-2'): TypeError"
            ) in run.stderr
    assert "('<p>' + body + '</p>') if body else None" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states == [{"n": 1}]
    assert [line["key"] for line in run.results] == ["R-1"]
    assert [o["description"]["body"] for o in sandbox.objects("feature")] == ["<p>first</p>"]

    # The guard the message suggests loads the record.
    guarded = {**README_MAP, "description": "('<p>' + body + '</p>') if body else None"}
    again = run_target({**config, "stream_maps": {"intake_requests": guarded}},
                       [messages[0], *messages[3:]],
                       sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    assert [o["name"] for o in sandbox.objects("feature")] == ["ok", "null body"]


def test_records_that_are_not_objects_are_rejected_not_lost(
    sandbox: Sandbox, run_target
) -> None:
    """Under skip, each gets a rejected results line; `key_properties: "id"` is one key.

    Stream `e`'s map leaves its record empty, which the SDK would drop without a trace: it
    goes to Aha! (which refuses a feature without a name) and so gets its line too.
    """
    config = {"streams": {s: {"endpoint": "create_feature", "release_id": "PRJ1-R-1"}
                          for s in ("f", "e")},
              "stream_maps": {"e": {"title": "__NULL__"}, "f": {"__filter__": "id != 'DROP'"}},
              "on_record_error": "skip"}
    messages = [
        {**schema("f", {"id": {"type": "string"}, "name": {"type": "string"}}),
         "key_properties": "id"},
        record("f", None), record("f", [1]), record("f", "x"),  # type: ignore[arg-type]
        record("f", {"id": "K1", "name": "ok"}),
        record("f", {"id": "DROP", "name": "filtered out by the user's __filter__"}),
        schema("e", {"title": {"type": "string"}}), record("e", {"title": "emptied"}),
        state({"n": 1}),
    ]
    run = run_target(config, messages, sandbox=sandbox)
    assert run.returncode == 0, run.stderr
    assert run.states == [{"n": 1}]
    lines = run.results
    assert len(lines) == 5  # every record read (but the one the user's filter drops)
    assert [(line["status"], line["error"]) for line in lines[:3]] == [
        ("rejected", f'input line {n}: the RECORD\'s "record" is {kind}, not a JSON object')
        for n, kind in ((2, "null"), (3, "a JSON list"), (4, "a JSON string"))
    ]
    sent = {line["stream"]: line for line in lines[3:]}  # settled by concurrent senders
    assert (sent["f"]["status"], sent["f"]["key"]) == ("succeeded", "K1")
    assert (sent["e"]["status"], sent["e"]["http_status"]) == ("rejected", 422)
    assert [o["name"] for o in sandbox.objects("feature")] == ["ok"]


def test_a_schema_ref_is_never_fetched(sandbox: Sandbox, run_target) -> None:
    """A SCHEMA's remote $ref would make the validator fetch any URL (or read a file)."""
    with Receiver() as receiver:
        bad = {"type": "SCHEMA", "stream": "f", "schema": {
            "type": "object", "properties": {"a": {"$ref": receiver.url + "/schema.json"}}}}
        run = run_target(FEATURES, [*good_start(), bad], sandbox=sandbox)
        assert receiver.received == []
    assert_stopped_cleanly(run, sandbox, "Input line 4 cannot be loaded: the stream's schema "
                           "cannot be compiled: its $ref")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ('{"api_key": "s3cret-key-value", "subdomain": ', "is not valid JSON (Expecting value "
         "at line 1, column"),
    ],
    ids=["missing", "not-json"],
)
def test_an_unreadable_config_file_gets_a_message(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run([EXECUTABLE, "--config", str(path)], input="", capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert f"The config file '{path}' given with --config {expected}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout

