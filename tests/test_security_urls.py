"""Where the API key may go and what messages may show (issue 9, the `urls` slice).

Each configured URL is read once, the way the HTTP client will connect; anything the client
and the standard library would read differently is refused. Every message, log line, results
`error` and webhook envelope goes through one redactor that knows the run's secrets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from target_aha.client import ANSWER_LIMIT, AhaClient
from target_aha.destination import Destination, parse_headers, parse_webhook_url
from target_aha.errors import ConfigError, FatalAhaError
from target_aha.http_transport import HttpTransport
from target_aha.ratelimit import RateGate
from target_aha.redact import REDACTOR, mask_url
from target_aha.sandbox import Sandbox
from target_aha.sender import Sender, sender_policy
from target_aha.urls import parse_http_url
from target_aha.wire import Request
from tests.conftest import TOKEN, record, schema
from tests.hostile import Hostile, Reply, Seen
from tests.receiver import Receiver

KEY = "K3y-0f-the-account-123"
"""An API key that a hostile server echoes back: it must never be shown."""


@pytest.fixture
def hostile() -> Iterator[Callable[..., Hostile]]:
    servers: list[Hostile] = []

    def start(answer: Callable[[str, str, dict[str, str]], tuple[int, dict, str]]) -> Hostile:
        def reply(seen: Seen) -> Reply:
            status, headers, body = answer(seen.method, seen.path, seen.headers)
            return status, headers, body.encode()

        servers.append(Hostile(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _everything(run: Any) -> str:
    results = run.results_path.read_text() if run.results_path.exists() else ""
    return run.stdout + run.stderr + results


# -- 1. one parse of every URL: the key cannot leave through a backslash ------------------------


def test_backslash_url_never_takes_the_key_to_another_server(
    sandbox: Sandbox, run_target
) -> None:
    with Receiver() as other:
        port = other.url.rsplit(":", 1)[1]
        sneaky = f"http://127.0.0.1:{port}\\@{sandbox.base_url.split('://', 1)[1]}/features"
        config = {"streams": {"c": {"endpoint": "custom", "url": sneaky}}}
        run = run_target(config, [schema("c"), record("c", {"name": "x"})], sandbox=sandbox)
        checked = run_target(config, [], sandbox=sandbox, extra_args=("--test",))
        assert other.attempts == 0
        assert TOKEN.encode() not in other.all_raw()
    for result in (run, checked):
        assert result.returncode == 1
        assert "streams.c.url" in result.stderr
        assert "backslash" in result.stderr
        assert "on the Aha! account's host" not in result.stdout
        assert "Traceback" not in result.stderr
    assert sandbox.requests() == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://evil.example\\@127.0.0.1/x", "backslash"),
        ("http://127.0.0.1:1@evil.example/x", "user name or password"),
        ("https://user:pw@hooks.example.com/x", "user name or password"),
        ("https://hooks.example.com/x\ty", "space or control character"),
        ("https://hooks.example.com/\x00", "space or control character"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("https://hooks.example.com/a/../b", "read differently"),
        ("http://evil.example/x", "uses plain http"),
        ("https://hooks.example.com/x#frag", "#fragment"),
    ],
)
def test_config_urls_are_read_once_as_the_client_connects(url: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="response_webhook_url") as caught:
        parse_webhook_url(url, "response_webhook_url")
    assert expected in str(caught.value)
    assert ":pw@hooks" not in str(caught.value)


def test_the_one_parse_decides_the_origin_everywhere() -> None:
    url = parse_http_url("https://MyCompany.aha.io:443/api/v1", "base_url")
    assert url.origin == ("https", "mycompany.aha.io", 443)
    assert parse_http_url("http://[::1]:8080/x", "base_url").origin == ("http", "::1", 8080)
    client = AhaClient("http://127.0.0.1:2222/api/v1", KEY, "ua", HttpTransport(5, ANSWER_LIMIT))
    # A Request's origin that the client would connect to elsewhere never gets the key.
    tricky = Request("POST", "/x", origin="http://127.0.0.1:1111\\@127.0.0.1:2222")
    assert not client.is_account(tricky)
    assert "Authorization" not in client.public_headers(tricky)


# -- 2. header values: the key with a line break, request_headers, user_agent ------------------


def test_api_key_with_a_line_break_is_a_config_error_never_echoed(
    sandbox: Sandbox, run_target
) -> None:
    run = run_target(
        {"api_key": KEY + "\n", "max_retries": 1, "streams": {}},
        [schema("create_team"), record("create_team", {"name": "t"})],
        sandbox=sandbox, env={"TARGET_AHA_LOGLEVEL": "debug"},
    )
    assert run.returncode == 1
    assert "api_key contains a line break or another control character" in run.stderr
    assert KEY not in _everything(run)
    assert "Traceback" not in run.stderr
    assert sandbox.requests() == []


def test_header_values_with_control_characters_are_config_errors(
    sandbox: Sandbox, run_target
) -> None:
    run = run_target(
        {"streams": {"c": {"endpoint": "custom", "url": "/x",
                           "request_headers": {"X-Token": "HSECRET\r\nX-Evil: 1"}}}},
        [schema("c"), record("c", {"name": "x"})], sandbox=sandbox,
    )
    assert run.returncode == 1
    assert "streams.c.request_headers X-Token: the value contains a line break" in run.stderr
    assert "HSECRET" not in run.stderr
    assert sandbox.requests() == []


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"api_key": "clé-" + KEY}, "api_key contains"),
        ({"api_key": 987654321}, "api_key must be a string"),
        ({"user_agent": "ua\r\nX-Evil: 1"}, "user_agent User-Agent: the value contains"),
        ({"subdomain": "attacker.example/x?"}, "subdomain"),
        ({"subdomain": "-a"}, "subdomain"),
        ({"subdomain": "a" * 64}, "subdomain"),
        ({"subdomain": "a_b"}, "subdomain"),
        ({"base_url": "https://mycompany.aha.io/api/v1?x=1"}, "base_url has a ?query"),
        ({"base_url": "https://mycompany.aha.io/api/v1?"}, "base_url has a ?query"),
    ],
)
def test_settings_that_would_misdirect_or_echo_are_refused(
    config: dict[str, Any], setting: str
) -> None:
    from target_aha.target import TargetAha  # noqa: PLC0415

    full = {"base_url": "https://mycompany.aha.io/api/v1", "api_key": KEY, "ledger_path": "",
            **config}
    if "subdomain" in config:
        del full["base_url"]
    with pytest.raises(ConfigError) as caught:
        TargetAha(config=full)
    assert setting in str(caught.value)
    assert KEY not in str(caught.value)
    assert "987654321" not in str(caught.value)


def test_request_header_names_and_values_are_checked_without_echo() -> None:
    for value in ({"X-Token": "S3CRET\n"}, {"X Bad": "v"}, "X-Token:S3CRET\x7f"):
        with pytest.raises(ConfigError, match=r"streams\.s\.request_headers") as caught:
            parse_headers(value, "streams.s.request_headers")
        assert "S3CRET" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_headers("X-Token=S3CRET", "streams.s.request_headers")  # no colon
    assert "S3CRET" not in str(caught.value)


# -- the redactor: a hostile "Aha!" echoing the key, redirects, NaN, forged log lines -----------


def test_nothing_shows_the_key_even_when_the_server_echoes_it(hostile, run_target) -> None:
    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict, str]:
        if path.startswith("/api/v1/redirect"):
            return 302, {"Location": "https://elsewhere.example/in?token=LSECRET"}, ""
        # Echo what came, as a careless server's error page would.
        return 422, {}, json.dumps({"errors": [f"bad request {headers} {path}"]})

    aha = hostile(answer)
    with Receiver() as hook:
        run = run_target(
            {"base_url": aha.url + "/api/v1", "api_key": KEY, "on_record_error": "skip",
             "response_webhook_url": hook.url + "/hook",
             "streams": {
                 "c\nFORGED LINE": {"endpoint": "custom", "url": "/things?api_token=QSECRET",
                                    "request_headers": {"X-Api-Token": "HSECRET"}},
                 "r": {"endpoint": "custom", "url": "/redirect"},
                 "n": {"endpoint": "custom", "url": "/nan"},
             }},
            [schema("c\nFORGED LINE"), record("c\nFORGED LINE", {"name": "x"}),
             schema("r"), record("r", {"name": "y"}),
             schema("n"), '{"type": "RECORD", "stream": "n", "record": {"score": NaN}}',
             '{"type": "RECORD", "stream": "n", "record": {"deep": [{"v": Infinity}]}}'],
            env={"TARGET_AHA_LOGLEVEL": "debug"},
        )
        posted = hook.all_raw().decode()
    assert run.returncode == 0, run.stderr
    # The requests did carry the secrets where they belong.
    things = next(r for r in aha.seen if r.path.startswith("/api/v1/things"))
    assert "api_token=QSECRET" in things.path
    assert things.headers["X-Api-Token"] == "HSECRET"
    assert things.headers["Authorization"] == f"Bearer {KEY}"
    shown = _everything(run) + posted
    for secret in (KEY, "QSECRET", "HSECRET", "LSECRET"):
        assert secret not in shown, secret
    assert "bad request" in posted and "bad request" in run.results_path.read_text()
    # A 3xx says where it points (masked), and is not followed.
    redirect = next(line for line in run.results if line["stream"] == "r")
    assert "https://elsewhere.example/in?token=***" in redirect["error"]
    # NaN and Infinity are refused before anything is sent, naming the field.
    assert not any(r.path.startswith("/api/v1/nan") for r in aha.seen)
    nans = [line for line in run.results if line["stream"] == "n"]
    assert [line["status"] for line in nans] == ["rejected", "rejected"]
    assert "'score'" in nans[0]["error"] and "'deep'" in nans[1]["error"]
    # A newline in a stream name cannot forge a log line.
    assert not any(line.startswith("FORGED") for line in run.stderr.splitlines())
    assert "c\\nFORGED LINE" in run.stderr


def test_a_refusal_that_quotes_the_key_is_printed_redacted(hostile, run_target) -> None:
    aha = hostile(lambda method, path, headers: (401, {}, json.dumps({"got": headers})))
    run = run_target({"base_url": aha.url + "/api/v1", "api_key": KEY, "streams": {}},
                     [schema("create_team"), record("create_team", {"name": "t"})])
    assert run.returncode == 1
    assert "refused POST /teams" in run.stderr
    assert "Bearer ***" in run.stderr
    assert KEY not in _everything(run)


def test_unexpected_tracebacks_are_redacted() -> None:
    REDACTOR.add("Tr4ceback-S3cret")
    try:
        raise RuntimeError("boom Tr4ceback-S3cret")
    except RuntimeError as exc:
        text = REDACTOR.traceback(exc)
    assert "Tr4ceback-S3cret" not in text
    assert "RuntimeError: boom ***" in text
    assert REDACTOR("a\nb\rc\x1b") == "a\\nb\\rc\\x1b"


def test_another_hosts_exhausted_retries_do_not_name_aha() -> None:
    with Receiver(status=503) as other:
        client = AhaClient("https://mycompany.aha.io/api/v1", KEY, "ua",
                           HttpTransport(5, ANSWER_LIMIT))
        sender = Sender(client, RateGate(100, 1000), sender_policy(max_retries=0))
        request = Request("POST", "/in", {"token": "QSECRET"}, {"a": 1}, origin=other.url)
        with pytest.raises(FatalAhaError) as caught:
            sender.send(request, "stream 'c', record #1")
    message = str(caught.value)
    assert "Aha! at" not in message
    assert f"{other.url} did not accept POST {other.url}/in" in message
    assert "QSECRET" not in message


# -- 3. the ledger's password ------------------------------------------------------------------


def test_ledger_password_in_the_query_is_never_printed(run_target) -> None:
    run = run_target(
        {"base_url": "https://mycompany.aha.io/api/v1", "api_key": KEY,
         "ledger_path": "postgresql://u@127.0.0.1:1/db?password=S3CRET&sslmode=disable"},
        [],
    )
    assert run.returncode == 1
    assert "Cannot use the key ledger (PostgreSQL, postgresql://u@127.0.0.1:1/db?" in run.stderr
    assert "password=***" in run.stderr
    assert "S3CRET" not in run.stderr


def test_mask_url() -> None:
    assert mask_url("postgresql://u:pw@h:5432/db?password=x&sslmode=require") == (
        "postgresql://u:***@h:5432/db?password=***&sslmode=require")
    assert mask_url("https://h/x?api_key=1&Signature=2&page=3") == (
        "https://h/x?api_key=***&Signature=***&page=3")
    assert mask_url("not a url") == "not a url"


# -- 4. the rest: typed secrets, query secrets in messages, dry_run headers, subdomain ----------


def test_query_and_header_secrets_are_masked_in_dry_run_and_test(
    sandbox: Sandbox, run_target
) -> None:
    config = {"streams": {"out": {
        "endpoint": "custom", "url": "https://hooks.example.com/x?sig=QSECRET&page=2",
        "allow_other_hosts": True,
        "request_headers": {"X-Api-Token": "HSECRET", "X-Source": "target-aha"},
    }}}
    dry = run_target({**config, "dry_run": True}, [schema("out"), record("out", {"a": 1})],
                     sandbox=sandbox)
    checked = run_target(config, [], sandbox=sandbox, extra_args=("--test",))
    assert dry.returncode == 0, dry.stderr
    [line] = dry.dry_run_lines
    assert line["url"] == "https://hooks.example.com/x?sig=***&page=2"
    assert line["headers"]["X-Api-Token"] == "***"
    assert line["headers"]["X-Source"] == "target-aha"
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "https://hooks.example.com/x?sig=***&page=2: on another host" in checked.stdout
    for secret in ("QSECRET", "HSECRET", TOKEN):
        assert secret not in _everything(dry) + _everything(checked)


def test_secret_looking_query_parameters_are_registered() -> None:
    dest = Destination.from_entry(
        "s", {"endpoint": "custom", "url": "/x?access_token=Qu3ry-S3cret"},
        "https://mycompany.aha.io/api/v1",
    )
    assert dest.custom is not None
    assert REDACTOR("see Qu3ry-S3cret") == "see ***"
