"""The sandbox's state and rules, without the network: what the HTTP handler and tests share.

`Engine` owns the store, the request log, the rate limiter and the fault dice, and decides for
each /api/v1 request what happens before the API itself runs (401, 429, an injected fault).
`Sandbox` adds the HTTP server on top, so everything here is testable without sockets.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .api import AhaApi, Call, Response
from .config import Config
from .faults import FaultDice
from .store import KINDS, Store
from .traffic import RateLimiter, RequestLog

UNAUTHORIZED = {"error": "Unauthorized: API key is invalid or missing"}
RATE_LIMITED = {"errors": {"message": "Rate limit exceeded"}}
INJECTED_ERROR = {"errors": {"message": "Internal server error (injected by the sandbox)"}}


@dataclass(frozen=True)
class Verdict:
    """What to do with one /api/v1 request before (or instead of) running the API.

    action: "answer" sends `status`/`payload` now; "api" runs the API and answers;
    "drop" closes the connection unanswered; "commit_timeout" runs the API, waits `hang`
    seconds and closes the connection unanswered.
    """

    action: str
    fault: str | None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    payload: Any = None
    hang: float = 0.0


class Engine:
    """Everything a sandbox knows and does, independent of how requests reach it."""

    def __init__(
        self,
        *,
        token: str,
        rate_per_second: int | None,
        rate_per_minute: int | None,
        seed: int,
    ) -> None:
        self.token = token
        self.site_url = ""  # set by Sandbox.start(); prefixes the objects' url and resource
        self.instance = ""  # set by Sandbox.start(): the site's first path segment, per start
        self.stopping = threading.Event()  # set on stop: cuts latency and commit hangs short
        self.log = RequestLog()
        self._config_lock = threading.Lock()  # configure() is read-modify-write
        self._config = Config().updated(
            rate_per_second=rate_per_second, rate_per_minute=rate_per_minute
        )
        self._store = Store(seed)
        self._api = AhaApi(self._store)
        self._limiter = RateLimiter()
        self._dice = FaultDice(seed)

    # -- the test-facing API ---------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change any subset of the settings; the rest keep their values.

        latency_ms, latency_jitter_ms: wait latency_ms + uniform(0, jitter) ms before
            answering each /api/v1 request (concurrent requests wait concurrently).
        error_rate, error_status: answer that fraction with error_status (500, 502, 503 or
            504) without performing the request.
        drop_rate: close that fraction of connections unanswered, before performing anything.
        commit_timeout_rate, commit_timeout_seconds: perform the request, then hang that long
            and close the connection unanswered (the client times out; the write happened).
        commit_error_rate: perform the request, then answer error_status (a gateway failing
            after the application committed: the write happened, the client sees a 5xx).
        throttle_rate: answer that fraction 429 whatever the rate limit says.
        rate_per_second, rate_per_minute: Aha!'s sliding-window limits; None switches one off.
        send_retry_after: add Retry-After to 429 answers.
        forbidden_products: product ids or prefixes answered 403, with all they contain.
        faults_on_writes_only: error_rate, drop_rate, commit_timeout_rate and commit_error_rate
            spare GETs (a write whose answer is lost, while the reads that look for it work).
        relax_goal_validation: accept a goal created with only a name. Off by default: Aha!'s
            reference marks success_metric_name, success_metric_description and
            workflow_status as required, and a double more lenient than Aha! hides bugs.

        error_rate + drop_rate + commit_timeout_rate + commit_error_rate may not exceed 1
        (one draw decides).
        Unknown names raise TypeError, bad values ValueError; nothing changes then.
        """
        with self._config_lock:
            self._config = self._config.updated(**changes)

    def config(self) -> dict[str, Any]:
        """The current settings, as configure() takes them."""
        return self._config.as_dict()

    def requests(self) -> list[dict[str, Any]]:
        """Every /api/v1 request received, in arrival order (copies)."""
        return self.log.requests()

    def clear_requests(self) -> None:
        """Forget the request log (statistics stay)."""
        self.log.clear_requests()

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Stored objects of `kind` ("feature", "epic", ...), in creation order."""
        _check_kind(kind)
        return [self._store.public(entry) for entry in self._store.entries(kind)]

    def delete_object(self, kind: str, id_or_ref: str) -> None:
        """Delete an object behind the API's back, as a user deleting it in Aha! would.

        Raises KeyError if there is no such object, so a test cannot silently delete nothing.
        """
        _check_kind(kind)
        with self._store.lock:
            entry = self._store.find(kind, id_or_ref)
            if entry is None:
                raise KeyError(f"no {kind} {id_or_ref!r}")
            self._store.delete(entry)

    def stats(self) -> dict[str, int]:
        """Request count, 429s, busiest 1 s / 60 s windows, and injected faults."""
        return self.log.stats()

    def reset(self) -> None:
        """Back to the seed data, with no requests, statistics or used rate budget.

        The configuration stays. Fault dice restart from the seed; ids do not repeat.
        """
        with self._store.lock:
            self._store.reset(self.site_url)
        self.log.reset()
        self._limiter.clear()
        self._dice.reseed()

    # -- the request pipeline (used by the HTTP handler) -----------------------------------

    def judge(self, at: float, authorization: str | None, method: str) -> Verdict:
        """Auth first, then the dice and the rate limit, for a request that arrived at `at`."""
        config = self._config
        if not self._authorized(authorization):
            return Verdict(
                "answer", None, headers=self._limiter.peek(at, config), status=401,
                payload=UNAUTHORIZED,
            )
        roll = self._dice.roll(config)
        if roll.throttle:
            return Verdict(
                "answer", "throttle", roll.delay, self._limiter.throttled(at, config), 429,
                RATE_LIMITED,
            )
        admission = self._limiter.admit(at, config)
        if not admission.admitted:
            return Verdict("answer", "rate_limit", roll.delay, admission.headers, 429, RATE_LIMITED)
        if roll.outcome is not None and config.faults_on_writes_only and method == "GET":
            roll = replace(roll, outcome=None)
        if roll.outcome == "error":
            return Verdict(
                "answer", "error", roll.delay, admission.headers, config.error_status,
                INJECTED_ERROR,
            )
        if roll.outcome in ("drop", "commit_timeout", "commit_error"):
            return Verdict(
                roll.outcome, roll.outcome, roll.delay, admission.headers,
                hang=config.commit_timeout_seconds,
            )
        return Verdict("api", "latency" if roll.delay > 0 else None, roll.delay, admission.headers)

    def call(
        self,
        method: str,
        segments: list[str],
        query: Mapping[str, str],
        body: Any,
        body_error: str | None,
    ) -> Response:
        """Run an authenticated, admitted request against the store."""
        config = self._config
        forbidden = frozenset(product.upper() for product in config.forbidden_products)
        return self._api.handle(
            Call(method, tuple(segments), query, body, body_error, forbidden,
                 relax_goal_validation=config.relax_goal_validation)
        )

    def _authorized(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and token == self.token


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
