"""Words for users about HTTP outcomes: the one place that names settings, STATE and fixes.

The transport and the retry policy raise typed errors carrying facts (which bound, what
status, which request); the messages a user acts on are made here, from those facts.
"""

from __future__ import annotations

from target_aha.client import AhaClient
from target_aha.transport import AnswerTooLarge, DeadlinePassed, TransportError
from target_aha.wire import Answer, Request


def problem(exc: TransportError) -> str:
    """`Kind: what happened`, for messages; a deadline says which setting bounds it."""
    if isinstance(exc, DeadlinePassed):
        return f"{exc.kind}: {exc} (request_timeout bounds the whole request)"
    return f"{exc.kind}: {exc}"


def brief_problem(exc: TransportError) -> str:
    """The fault's kind only, except for target-aha's own bounds, which say which was hit
    (a network fault's own text can name URLs and headers)."""
    return problem(exc) if isinstance(exc, AnswerTooLarge | DeadlinePassed) else exc.kind


def last_attempt(last: TransportError | Answer) -> str:
    """How an attempt ended, for messages and logs."""
    if isinstance(last, TransportError):
        return problem(last)
    return f"HTTP {last.status}: {last.excerpt()}"


def gave_up(client: AhaClient, request: Request, where: str, retries: int,
            last: TransportError | Answer) -> str:
    """A call that never got a usable answer: who, what was tried, what to do, STATE kept."""
    return (
        f"{client.host_of(request)} did not accept {request.describe()} ({where}) "
        f"after {retries} retries; the last attempt ended with {last_attempt(last)}. Check "
        "that Aha! is reachable from here and not under maintenance, or raise max_retries / "
        "request_timeout; the run stopped without moving the tap's STATE, so the next "
        "run sends these records again."
    )


def refused(client: AhaClient, answer: Answer, request: Request, where: str) -> str:
    """A 401/403: the API key, or the host that is not the account, and what to do."""
    if not client.is_account(request):
        return (
            f"{request.describe()} ({where}) was refused with {answer.status}: "
            f"{answer.excerpt()}. That host is not the Aha! account, so it never gets the "
            "Aha! API key; give it credentials of its own in the stream's request_headers."
        )
    if answer.status == 401:
        cause = (
            "the API key was not accepted (401). Check api_key (TARGET_AHA_API_KEY) "
            "and that subdomain/base_url is the account the key belongs to"
        )
    else:
        cause = (
            "the API key's user is not allowed to do this (403). Give that user "
            "permission on the product in Aha!, or use a key of a user who has it"
        )
    return (
        f"Aha! account {client.account} refused {request.describe()} ({where}): {cause}. "
        f"Aha! answered: {answer.excerpt()}"
    )
