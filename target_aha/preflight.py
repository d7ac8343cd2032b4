"""`target-aha --test`: check a configuration against Aha! before loading anything.

It reads and never writes: `GET /me` for the API key, then for each configured stream the
containers its entry names literally (`GET /releases/{id}`, `GET /products/{id}`, a custom
table by listing one of its records, ...). Parameters that read the record, or that a
reference to another stream sets, cannot be checked without records, and custom endpoints
are not called at all (any call could be a write), so those are reported as not
checkable. One line per check; the caller exits 0 only if none failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from target_aha import explain, placeholders
from target_aha.aha import ME_PATH, ME_WRAPPER, READS, Read, named_object
from target_aha.client import AhaClient
from target_aha.custom import Custom
from target_aha.destination import Destination
from target_aha.errors import RecordError
from target_aha.retry import Gate, GaveUp, RetryPolicy, Verdict, classify, no_jitter
from target_aha.shaping import fill_path
from target_aha.transport import TransportError
from target_aha.wire import Answer, Request

ATTEMPTS = 3
"""Tries of one GET when Aha! answers 429/5xx or cannot be reached."""
POLICY = RetryPolicy(ATTEMPTS, 1.0, jitter=no_jitter)
"""1 s, then 2 s between tries; a wait Aha! asks for (429) is taken instead, at the gate."""


@dataclass(frozen=True)
class Check:
    """One line of the report: passed (True), failed (False) or not checkable (None)."""

    passed: bool | None
    subject: str
    detail: str

    def line(self) -> str:
        """The printed line."""
        label = {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]
        return f"{label}  {self.subject}: {self.detail}"


def preflight(
    client: AhaClient, gate: Gate, destinations: Mapping[str, Destination],
    emit: Callable[[str], Any], policy: RetryPolicy = POLICY,
) -> bool:
    """Run every check, `emit` one line each and a summary; True if none failed.

    The GETs go through `gate` (the run's rate budget) and `policy`.
    """
    checker = _Checker(client, gate, policy)
    checks = [checker.token()]
    emit(checks[0].line())
    for stream, dest in destinations.items():
        for check in checker.stream(stream, dest, token_ok=checks[0].passed is True):
            checks.append(check)
            emit(check.line())
    failed = sum(c.passed is False for c in checks)
    emit(
        f"target-aha --test: {sum(c.passed is True for c in checks)} passed, {failed} failed, "
        f"{sum(c.passed is None for c in checks)} not checkable. "
        + ("Fix the FAIL lines and run the test again." if failed else "Nothing was written.")
    )
    return failed == 0


class _Checker:
    """Makes the GETs (each path once) and words what they mean."""

    def __init__(self, client: AhaClient, gate: Gate, policy: RetryPolicy) -> None:
        self._client = client
        self._gate = gate
        self._policy = policy
        self._answers: dict[str, Answer | str] = {}

    def token(self) -> Check:
        subject = f"API key for {self._client.account}"
        answer = self._get(ME_PATH, ())
        if isinstance(answer, str):
            return Check(False, subject, answer)
        if classify(answer.status) is Verdict.OK:
            user = named_object(answer.data, ME_WRAPPER)
            if user is None or not isinstance(answer.data.get(ME_WRAPPER), dict):
                return Check(False, subject, _not_aha(f"GET {ME_PATH}", answer, "a user"))
            who = user.get("email") or user.get("name") or "unknown user"
            return Check(True, subject, f"GET {ME_PATH} answered {answer.status} (user {who})")
        return Check(
            False, subject,
            f"GET {ME_PATH} answered {answer.status}: {answer.excerpt()}. Check api_key "
            "(TARGET_AHA_API_KEY) and that subdomain/base_url is the account the key belongs to.",
        )

    def stream(self, stream: str, dest: Destination, *, token_ok: bool) -> list[Check]:
        subject = f"stream '{stream}' ({dest.endpoint})"
        if dest.custom is not None:
            return self._custom(subject, dest, dest.custom)
        literals = {p: pattern for p, pattern in dest.params.items() if not pattern.fields}
        checks = []
        for read in READS:
            if read.param not in dest.params:
                continue
            where = f"{subject} {read.param}"
            missing = [p for p in placeholders.names(read.path) if p not in literals]
            if missing and any(p in dest.refs for p in missing):
                checks.append(Check(None, where, "not checkable (set by a reference, or read "
                                    "with one; checked when records arrive)"))
            elif missing:
                fields = sorted(set().union(*(dest.params[p].fields for p in missing)))
                checks.append(Check(
                    None, where,
                    f"not checkable (read from each record: field {', '.join(fields)})",
                ))
            elif not token_ok:
                checks.append(Check(None, where, "not checked: the API key was not accepted"))
            else:
                values = {p: literals[p].render({}, p) for p in placeholders.names(read.path)}
                checks.append(self._exists(where, f"streams.{stream}.{read.param}", read, values))
        # A parameter read as part of another's path (commentable_type) was checked with it.
        checked = {p for read in READS if read.param in dest.params
                   for p in placeholders.names(read.path)} | {read.param for read in READS}
        for param, pattern in dest.params.items():
            if param in checked:
                continue
            checks.append(Check(None, f"{subject} {param}", (
                f"not checkable (read from each record: field {', '.join(sorted(pattern.fields))})"
                if pattern.fields else "not checked (Aha! documents no read for it)"
            )))
        checks += [
            Check(None, f"{subject} {param}", f"not checkable (set by a reference to stream "
                  f"'{ref.stream}'; checked when records arrive)")
            for param, ref in dest.refs.items()
        ]
        if not checks:
            checks.append(Check(
                None, subject,
                f"nothing to check ({dest.template.method} {dest.template.path} has no container)",
            ))
        return checks

    def _custom(self, subject: str, dest: Destination, custom: Custom) -> list[Check]:
        url = self._client.public_url(
            Request(custom.method, custom.path, dict(custom.query), origin=custom.origin)
        )
        if custom.on_account_host:
            host = f"{url}: on the Aha! account's host; the API key is sent with it"
        else:
            host = (
                f"{url}: on another host, allowed by allow_other_hosts; the API key is never "
                "sent to it"
            )
        checks = [Check(True, f"{subject} url", host)]
        if dest.params:
            checks.append(Check(
                None, f"{subject} url",
                f"placeholders {', '.join(dest.params)}: not checkable (read from each record)",
            ))
        checks.append(Check(
            None, f"{subject} endpoint",
            f"not called by --test (a {custom.method} could write); try it with dry_run: true",
        ))
        return checks

    def _exists(self, where: str, setting: str, read: Read, values: dict[str, str]) -> Check:
        try:
            path = fill_path(read.path, values)
        except RecordError as exc:
            return Check(False, where, f"{exc}; set {setting} to {read.example}")
        answer = self._get(path, read.query)
        request = f"GET {path}"
        if isinstance(answer, str):
            return Check(False, where, answer)
        named = f"{read.kind} {values[read.param]!r}"
        if classify(answer.status) is Verdict.OK:
            if not read.proves(answer.data):
                return Check(False, where, f"{named}: {_not_aha(request, answer, read.answer)}")
            return Check(True, where, f"{named} exists ({request} answered {answer.status})")
        if answer.status == 404:
            fix = f"set {setting} to an existing {read.kind}: {read.example}"
        elif answer.status == 403:
            fix = (
                f"the API key's user may not read this {read.kind}; give that user "
                "permission on the product in Aha!, or use the key of a user who has it"
            )
        else:
            fix = "check the value and the account"
        return Check(
            False, where,
            f"{named}: {request} answered {answer.status}: {answer.excerpt()}. To fix: {fix}.",
        )

    def _get(self, path: str, query: tuple[tuple[str, str], ...]) -> Answer | str:
        """The answer to a GET (each path asked once), or why there is none."""
        if path not in self._answers:
            self._answers[path] = self._fetch(Request("GET", path, dict(query)))
        return self._answers[path]

    def _fetch(self, request: Request) -> Answer | str:
        try:
            return self._policy.call(lambda: self._client.send(request), gate=self._gate)
        except GaveUp as exc:
            last, tries = exc.last, exc.attempts
        problem = (
            explain.brief_problem(last) if isinstance(last, TransportError)
            else explain.last_attempt(last)
        )
        return (
            f"{request.describe()} got no usable answer from {self._client.account} after "
            f"{tries} {'try' if tries == 1 else 'tries'} ({problem}). Check subdomain/base_url "
            "and that Aha! is reachable from here, then run the test again."
        )


def _not_aha(request: str, answer: Answer, expected: str) -> str:
    """Why a 2xx that is not Aha!'s answer fails a check (an HTML page, `{"user": "bob"}`)."""
    shown = answer.excerpt() or "an empty body"
    return (
        f"{request} answered {answer.status} but not with {expected} as Aha! answers it "
        f"(the answer began: {shown[:200]}). Check that base_url is Aha!'s API "
        "(https://<subdomain>.aha.io/api/v1), not a proxy, a login page or another service."
    )
