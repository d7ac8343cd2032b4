"""Unit tests of pure logic: parameter patterns, encoding, wrapping, the dispatcher's ordering."""

from __future__ import annotations

import datetime as dt
import decimal
import random
import threading
import time

import pytest

from target_aha.client import AhaClient
from target_aha.destination import Destination, Pattern, parse_headers
from target_aha.dispatch import Dispatcher
from target_aha.endpoints import TEMPLATES
from target_aha.errors import ConfigError, RecordError
from target_aha.expressions import BatchExpression, ExpressionError
from target_aha.forms import encode_form
from target_aha.ratelimit import RateGate
from target_aha.retry import Verdict, classify
from target_aha.sandbox.forms import decode_form
from target_aha.shaping import build_request, encode_segment, param_values, to_json_value, wrap
from target_aha.wire import Answer, Request
from tests.fakes import FakeTransport


def test_every_template_param_comes_from_its_path() -> None:
    assert TEMPLATES["update_goal"].params == ("product_id", "goal_id")
    assert TEMPLATES["create_team"].params == ()
    assert len(TEMPLATES) == 17


def test_pattern_literal_and_placeholders() -> None:
    assert Pattern.parse("PRJ1-R-1", "x").render({}, "p") == "PRJ1-R-1"
    pattern = Pattern.parse("PRJ1-R-{n}", "x")
    assert pattern.fields == {"n"}
    assert pattern.render({"n": 3}, "p") == "PRJ1-R-3"
    with pytest.raises(RecordError, match="'n'"):
        pattern.render({}, "p")
    with pytest.raises(ConfigError):
        Pattern.parse("{unclosed", "streams.s.release_id")


@pytest.mark.parametrize(("value", "encoded"), [("a/b", "a%2Fb"), ("x?y#z", "x%3Fy%23z"),
                                                 ("..x", "..x"), ("é", "%C3%A9")])
def test_encode_segment(value: str, encoded: str) -> None:
    assert encode_segment(value, "p") == encoded


def test_to_json_value() -> None:
    value = {
        "d": dt.date(2026, 1, 2),
        "t": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "n": [decimal.Decimal("1.50"), decimal.Decimal("2")],
    }
    assert to_json_value(value) == {"d": "2026-01-02", "t": "2026-01-02T03:04:05+00:00",
                                    "n": [1.5, 2]}


def test_wrap_rules() -> None:
    assert wrap({"name": "x"}, "feature", None) == {"feature": {"name": "x"}}
    assert wrap({"feature": {"name": "x"}}, "feature", None) == {"feature": {"name": "x"}}
    assert wrap({"a": 1}, "custom_object_record", "custom_fields") == {
        "custom_object_record": {"custom_fields": {"a": 1}}}
    assert wrap({"custom_fields": {"a": 1}}, "custom_object_record", "custom_fields") == {
        "custom_object_record": {"custom_fields": {"a": 1}}}
    assert wrap({"x": 1}, None, None) is None


def test_build_request_drops_consumed_and_excluded() -> None:
    dest = Destination.from_entry(
        "s", {"endpoint": "update_goal", "product_id": "PRJ1", "goal_id": "{g}",
              "exclude_attributes": "secret, other"},
    )
    rec = {"g": "PRJ1-G-1", "name": "n", "secret": 1, "other": 2}
    req = build_request(dest, rec, param_values(dest, rec), True)
    assert (req.method, req.path) == ("PUT", "/products/PRJ1/goals/PRJ1-G-1")
    assert req.body == {"goal": {"name": "n"}}
    assert req.query == {"disable_mailers": "true"}


def test_parse_headers() -> None:
    assert parse_headers("a:1, b : 2", "h") == {"a": "1", "b": "2"}
    with pytest.raises(ConfigError):
        parse_headers("no-colon", "h")


def test_classify() -> None:
    assert classify(201) is Verdict.OK
    assert classify(429) is Verdict.RETRY
    assert classify(503) is Verdict.RETRY
    assert classify(401) is Verdict.FATAL
    assert classify(422) is Verdict.REJECTED


def test_dispatcher_keeps_per_key_order_under_concurrency() -> None:
    dispatcher = Dispatcher(concurrency=8)
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()
    rng = random.Random(1)

    def work(key: str, i: int) -> None:
        time.sleep(rng.random() / 500)
        with lock:
            seen.setdefault(key, []).append(i)

    for i in range(400):
        key = f"k{i % 7}"
        dispatcher.submit(lambda key=key, i=i: work(key, i), [key])
    dispatcher.join()
    for key, order in seen.items():
        assert order == sorted(order), key
    assert sum(len(v) for v in seen.values()) == 400


def test_dispatcher_runs_unrelated_work_concurrently() -> None:
    dispatcher = Dispatcher(concurrency=4)
    barrier = threading.Barrier(4, timeout=10)  # only passes if 4 tasks run at once
    for _ in range(8):
        dispatcher.submit(barrier.wait)
    dispatcher.join()


def test_dispatcher_fatal_error_stops_and_reraises() -> None:
    dispatcher = Dispatcher(concurrency=2)
    ran = []

    def boom() -> None:
        raise ConfigError("boom")

    dispatcher.submit(boom, ["k"])
    for i in range(5):
        dispatcher.submit(lambda i=i: ran.append(i), ["k"])
    with pytest.raises(ConfigError, match="boom"):
        dispatcher.join()
    assert ran == []


def test_rate_gate_reads_reset_as_time_or_delta() -> None:
    gate = RateGate(100, 10000)
    reset_at = str(int(time.time()) + 3)
    wait = gate.observe(Answer(429, {"X-Ratelimit-Reset": reset_at}, ""))
    assert wait is not None and 1.5 < wait <= 3.0
    assert gate.observe(Answer(429, {"x-ratelimit-reset": "2"}, "")) == 2.0
    assert gate.observe(Answer(429, {"Retry-After": "1.5", "X-Ratelimit-Reset": "9"}, "")) == 1.5
    assert gate.observe(Answer(200, {"X-Ratelimit-Remaining": "5",
                                     "X-Ratelimit-Reset": reset_at}, "")) is None
    assert gate.throttled == 3


# -- custom endpoints, forms, batch expressions, the token's reach -------------------------------


BASE = "https://mycompany.aha.io/api/v1"


def custom_dest(**entry: object) -> Destination:
    return Destination.from_entry("s", {"endpoint": "custom", **entry}, BASE)


@pytest.mark.parametrize(
    ("url", "path", "origin"),
    [
        ("/ideas/{id}", "/ideas/{id}", None),
        ("ideas", "/ideas", None),
        (BASE + "/ideas/{id}", "/ideas/{id}", None),  # under base_url: made relative
        ("https://MyCompany.aha.io:443/api/v2/x", "/api/v2/x", "https://MyCompany.aha.io:443"),
        ("https://hooks.example.com/in", "/in", "https://hooks.example.com"),
    ],
)
def test_custom_urls_resolve(url: str, path: str, origin: str | None) -> None:
    dest = custom_dest(url=url, allow_other_hosts=True)
    assert dest.custom is not None
    assert (dest.template.path, dest.custom.origin) == (path, origin)
    assert dest.custom.on_account_host == ("example.com" not in url)


def test_custom_placeholders_always_read_the_record() -> None:
    # A placeholder named like a setting still reads the record field, not the setting.
    dest = custom_dest(url="/things/{method}", method="PUT", wrap_key="thing")
    rec = {"method": "a/b", "name": "n"}
    req = build_request(dest, rec, param_values(dest, rec), True)
    assert (req.method, req.path, req.body) == ("PUT", "/things/a%2Fb", {"thing": {"name": "n"}})
    assert dest.template.operation == "custom"
    assert dest.write_mode == "create"


def test_the_token_goes_only_to_base_urls_origin() -> None:
    client = AhaClient(BASE, "secret", "ua", FakeTransport())
    assert client.is_account(Request("GET", "/x"))
    assert client.is_account(Request("GET", "/api/v2/x", origin="https://mycompany.aha.io:443"))
    for other in ("http://mycompany.aha.io", "https://mycompany.aha.io:8443",
                  "https://evil.aha.io", "https://mycompany.aha.io.evil.com"):
        assert not client.is_account(Request("GET", "/x", origin=other)), other
    outside = Request("POST", "/in", body={"a": 1}, origin="https://hooks.example.com")
    assert "Authorization" not in client.public_headers(outside)
    assert client._headers_for(outside).get("Authorization") is None
    inside = Request("POST", "/ideas", body={"a": 1}, content_format="form")
    assert client._headers_for(inside)["Authorization"] == "Bearer secret"
    assert client.public_headers(inside)["Authorization"] == "Bearer ***"
    assert client.public_headers(inside)["Content-Type"] == "application/x-www-form-urlencoded"
    assert outside.describe() == "POST https://hooks.example.com/in"


def test_form_encoding_round_trips_through_the_rails_decoder() -> None:
    body = {"feature": {"name": "a&b=c ü", "tags": ["x", "y z"], "cf": {"p": "1"},
                        "links": [{"t": "1", "u": "a"}, {"t": "2", "u": "b"}]}}
    assert decode_form(encode_form(body)) == body
    assert encode_form({"a": True, "b": None, "c": 3, "d": []}) == "a=true&b=&c=3"


def test_batch_expression_is_safe_and_says_what_failed() -> None:
    expr = BatchExpression("{'n': len(records), 's': stream, 'x': [r['a'] for r in records]}", "w")
    assert expr.evaluate([{"a": 1}, {"a": 2}], "st") == {"n": 2, "s": "st", "x": [1, 2]}
    for hostile in ("__import__('os')", "records.__class__", "open('/etc/passwd')",
                    "(1).__class__.__subclasses__()", "getattr(records, 'pop')"):
        with pytest.raises(ExpressionError, match="w failed"):
            BatchExpression(hostile, "w").evaluate([{"a": 1}], "st")
    for invalid in ("import os", "x = 1", "a; b", "", 3):
        with pytest.raises(ConfigError):
            BatchExpression(invalid, "w")


def test_exhausted_budget_waits_for_the_earliest_reset() -> None:
    gate = RateGate(100, 10000)
    reset_at = str(int(time.time()) + 3)
    wait = gate.observe(Answer(200, {"X-Ratelimit-Remaining": "0",
                                     "X-Ratelimit-Reset": reset_at}, ""))
    assert wait is not None and 0.5 < wait <= 2.0
    assert gate.throttled == 0
