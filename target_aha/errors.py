"""Errors a user can act on.

Each message says what went wrong, where (stream, record key or position, request) and what
to do. The CLI prints `TargetAhaError` messages as they are, without a traceback.
"""

from __future__ import annotations

from typing import Any


class TargetAhaError(Exception):
    """An error whose message is written for the user; it ends the run."""

    exit_code = 1


class Interrupted(TargetAhaError):
    """SIGTERM or SIGINT: the run stopped before the end of its input.

    It exits with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), as a shell
    reports a process a signal ended, so a scheduler can tell the run did not finish.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class ConfigError(TargetAhaError):
    """The configuration cannot work; found before any record is read or sent."""


class InputError(TargetAhaError):
    """The Singer input is malformed (bad JSON, a record before its SCHEMA, ...)."""


class FatalAhaError(TargetAhaError):
    """Aha! refused the whole run (401, 403), could not be reached, or a record failed."""


class RecordError(Exception):
    """One record cannot be shaped into a request (for example a missing parameter).

    Not fatal by itself: `on_record_error` decides whether it stops the run.
    """


class RecordRejected(Exception):
    """Aha! answered 400, 404, 422 (or another 4xx that is about the request itself).

    `response` is the whole answer (the client's `Answer`) and `request` the request Aha!
    refused (an upsert's PUT is not the record's own POST), for the response webhook.
    """

    def __init__(
        self, status: int, answer: str, request_line: str, response: Any = None,
        request: Any = None,
    ) -> None:
        super().__init__(f"{request_line} answered {status}: {answer}")
        self.status = status
        self.answer = answer
        self.request_line = request_line
        self.response = response
        self.request = request
