"""Unit tests of the transport seam, the retry policy and the rate gate: fake clock, fake
transport, no sockets and no real waiting (each test runs in milliseconds)."""

from __future__ import annotations

import ast
import io
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from target_aha.client import AhaClient
from target_aha.destination import Destination
from target_aha.errors import FatalAhaError, RecordRejected
from target_aha.http_transport import HttpTransport
from target_aha.preflight import POLICY as PREFLIGHT_POLICY
from target_aha.preflight import preflight
from target_aha.ratelimit import RateGate
from target_aha.retry import GaveUp, RetryPolicy, no_jitter
from target_aha.sender import Sender
from target_aha.transport import AnswerTooLarge, DeadlinePassed, DryRunTransport, TransportError
from target_aha.webhook import Webhook
from target_aha.wire import Answer, Outgoing, Request
from tests.fakes import FakeClock, FakeTransport

BASE = "https://mycompany.aha.io/api/v1"
OK = Answer(200, {}, json.dumps({"feature": {"id": "1"}}))


def policy(clock: FakeClock, attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(attempts, 0.5, 30.0, jitter=no_jitter, sleep=clock.sleep)


def test_retryable_answers_back_off_exponentially_until_one_is_final() -> None:
    clock = FakeClock()
    script = [Answer(503, {}, ""), TransportError("ConnectionError", "reset"), OK]
    assert policy(clock).call(FakeTransport(script).send_once) is OK
    assert clock.slept == [0.5, 1.0]


def test_an_answer_not_worth_retrying_is_returned_at_once() -> None:
    clock = FakeClock()
    for status in (201, 404, 422, 401):
        answer = Answer(status, {}, "")
        assert policy(clock).call(FakeTransport([answer]).send_once) is answer
    assert clock.slept == []


def test_giving_up_says_how_the_last_attempt_ended() -> None:
    clock = FakeClock()
    with pytest.raises(GaveUp) as caught:
        policy(clock).call(FakeTransport([], default=Answer(502, {}, "bad gateway")).send_once)
    assert caught.value.attempts == 3
    assert isinstance(caught.value.last, Answer) and caught.value.last.status == 502
    assert clock.slept == [0.5, 1.0]  # no wait after the last attempt


def test_a_non_retryable_error_ends_at_once() -> None:
    clock = FakeClock()
    with pytest.raises(GaveUp) as caught:
        policy(clock).call(FakeTransport([AnswerTooLarge(2**20, 200)]).send_once)
    assert caught.value.attempts == 1
    assert caught.value.last.kind == "AnswerTooLarge"  # type: ignore[union-attr]
    assert DeadlinePassed(2).retryable and not AnswerTooLarge(1, 200).retryable


def test_an_unknown_outcome_is_looked_for_before_sending_again() -> None:
    clock = FakeClock()
    transport = FakeTransport([DeadlinePassed(2)])
    found = Answer(200, {}, json.dumps({"feature": {"id": "found"}}))
    assert policy(clock, attempts=1).call(transport.send_once, recover=lambda: found) is found
    assert len(transport.calls) == 1
    assert clock.slept == [0.5]  # Aha! may still be committing: wait before looking


def test_a_429_waits_what_aha_asks_at_the_gate_not_the_backoff() -> None:
    clock = FakeClock()
    gate = RateGate(100, 10000, clock=clock, wall=clock.wall, sleep=clock.sleep)
    script = [Answer(429, {"Retry-After": "7"}, ""), OK]
    assert policy(clock).call(FakeTransport(script).send_once, gate=gate) is OK
    assert clock.slept == [7.0]
    assert gate.throttled == 1


def test_a_reset_time_is_read_on_the_wall_clock() -> None:
    clock = FakeClock()
    gate = RateGate(100, 10000, clock=clock, wall=clock.wall, sleep=clock.sleep)
    reset_at = str(int(clock.wall()) + 3)
    assert gate.observe(Answer(429, {"X-Ratelimit-Reset": reset_at}, "")) == 3.0
    assert gate.observe(Answer(200, {"X-Ratelimit-Remaining": "0",
                                     "X-Ratelimit-Reset": reset_at}, "")) == 2.0


def test_the_minute_window_holds_the_21st_request_until_it_frees() -> None:
    clock = FakeClock()
    gate = RateGate(100, 20, clock=clock, wall=clock.wall, sleep=clock.sleep)
    started = time.monotonic()
    times = []
    for _ in range(41):
        gate.wait_turn()
        times.append(clock.now - 1000.0)
    assert times[:20] == [0.0] * 20
    assert 60.0 < times[20] < 60.2  # the window (plus its arrival margin) freed
    assert all(60.0 < t < 61.0 for t in times[20:40]) and 120.0 < times[40] < 121.0
    assert time.monotonic() - started < 0.5


def test_the_second_window_spaces_requests() -> None:
    clock = FakeClock()
    gate = RateGate(5, 1000, clock=clock, wall=clock.wall, sleep=clock.sleep)
    for _ in range(11):
        gate.wait_turn()
    assert 2.0 < clock.now - 1000.0 < 2.3


def sender(script: list[Answer | TransportError], max_retries: int = 2) -> Sender:
    clock = FakeClock()
    client = AhaClient(BASE, "secret", "ua", FakeTransport(script))
    return Sender(client, None, policy(clock, attempts=max_retries + 1))


def test_sender_words_what_the_transport_only_reports() -> None:
    with pytest.raises(FatalAhaError) as caught:
        sender([DeadlinePassed(2)] * 3).send(Request("POST", "/x"), "stream 's', record #1")
    message = str(caught.value)
    assert message.startswith("Aha! at mycompany.aha.io did not accept POST /x (stream 's', "
                              "record #1) after 2 retries; the last attempt ended with "
                              "DeadlinePassed: no complete answer within 2 s (request_timeout "
                              "bounds the whole request).")
    assert "STATE" in message
    with pytest.raises(FatalAhaError, match="API key was not accepted"):
        sender([Answer(401, {}, "no")]).send(Request("GET", "/me"), "w")
    with pytest.raises(RecordRejected) as rejected:
        sender([Answer(422, {}, "name missing")]).send(Request("POST", "/x"), "w")
    assert str(rejected.value) == "POST /x answered 422: name missing"


def test_sender_counts_attempts_and_retries() -> None:
    s = sender([Answer(500, {}, ""), OK])
    assert s.send(Request("POST", "/x"), "w") is OK
    assert (s.sent, s.retries) == (2, 1)


def test_dry_run_prints_the_call_and_answers_simulated() -> None:
    out = io.StringIO()
    client = AhaClient(BASE, "secret", "ua", DryRunTransport(out))
    answer = client.send(Request("POST", "/ideas", {"k": "v"}, {"idea": {"name": "x"}},
                                 content_format="form"))
    assert answer.simulated and answer.status == 200 and answer.data is None
    line = json.loads(out.getvalue())
    assert line == {
        "method": "POST", "url": BASE + "/ideas?k=v",
        "headers": {"Accept": "application/json", "User-Agent": "ua",
                    "Authorization": "Bearer ***",
                    "Content-Type": "application/x-www-form-urlencoded"},
        "body": "idea[name]=x",
    }


def test_preflight_goes_through_the_gate_and_honours_retry_after() -> None:
    clock = FakeClock()
    gate = RateGate(100, 10000, clock=clock, wall=clock.wall, sleep=clock.sleep)
    me = Answer(200, {}, json.dumps({"user": {"id": "1", "email": "a@b.c"}}))
    transport = FakeTransport([Answer(429, {"Retry-After": "3"}, ""), me])
    client = AhaClient(BASE, "secret", "ua", transport)
    lines: list[str] = []
    dests = {"s": Destination.from_entry("s", {"endpoint": "create_team"}, BASE)}
    assert preflight(client, gate, dests, lines.append,
                     replace(PREFLIGHT_POLICY, sleep=clock.sleep))
    assert clock.slept == [3.0]
    assert lines[0] == "PASS  API key for mycompany.aha.io: GET /me answered 200 (user a@b.c)"
    assert [c.url for c in transport.calls] == [BASE + "/me"] * 2


def test_webhook_posts_through_its_transport_with_the_one_policy() -> None:
    clock = FakeClock()
    transport = FakeTransport([Answer(503, {}, ""), AnswerTooLarge(1024, 202),
                               Answer(404, {}, "")])
    hook = Webhook("ua", transport, RetryPolicy(4, 0.2, jitter=no_jitter, sleep=clock.sleep))
    hook.post("https://hooks.example.com/in", {"stream": "s", "key": "k", "response": None})
    hook.post("https://hooks.example.com/in", {"stream": "s", "key": "k2", "response": None})
    hook.close()
    assert (hook.delivered, hook.undelivered) == (1, 1)  # the 404 is not retried
    assert len(transport.calls) == 3
    assert transport.calls[0].headers == {"Content-Type": "application/json", "User-Agent": "ua"}


def test_requests_errors_are_mapped_at_the_seam() -> None:
    transport = HttpTransport(2, 1024)
    with pytest.raises(TransportError) as caught:  # port 9 (discard) is closed on loopback
        transport.send(Outgoing("GET", "http://127.0.0.1:9/x", {}))
    assert type(caught.value) is TransportError
    assert (caught.value.kind, caught.value.retryable) == ("ConnectionError", True)


def test_nothing_above_the_seam_imports_requests() -> None:
    package = Path(__file__).parent.parent / "target_aha"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "requests" or n.startswith("requests.") for n in names):
                importers.add(str(path.relative_to(package)))
    assert importers == {"http_transport.py", "watchdog.py"}, importers
