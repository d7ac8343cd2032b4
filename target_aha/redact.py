"""The one redactor: every message, log line, results `error` and webhook envelope passes here.

It knows the run's secrets (the API key, the ledger's password, credential-looking header
values and query parameters, registered as the configuration is read) and replaces each of
them, in every form it can take in a message (as written, percent-encoded, JSON-escaped), by
`***`. Log lines also get their control characters escaped, so a newline in a stream name or
in a server's answer cannot forge a log line. `mask_url` shows a URL without its credentials.

Values shorter than `MIN_SECRET` characters are not registered: replacing every `2` in the
log because some header says `X-Auth-Version: 2` would hide everything and protect nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

MIN_SECRET = 4
"""Shortest value treated as a secret."""
MASK = "***"
SECRET_NAME = re.compile(
    r"auth|token|key|secret|pass|pwd|cookie|session|sig|credential", re.IGNORECASE
)
"""Header and query parameter names that say their value is a credential."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def secret_name(name: str) -> bool:
    """Whether a header or query parameter name says its value is a credential."""
    return bool(SECRET_NAME.search(name))


def escape_controls(text: str) -> str:
    """`\\n`, `\\r`, `\\t` and `\\xNN` for control characters, so text stays on one line."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


def mask_url(url: str) -> str:
    """The URL with the password of its userinfo and secret-looking query values as `***`.

    Works on any text (a malformed URL is masked as far as it can be read, never raises).
    """
    head, sep, query = url.partition("?")
    query, hash_sep, fragment = query.partition("#")
    scheme, slashes, rest = head.partition("://")
    if slashes:
        netloc, slash, path = rest.partition("/")
        userinfo, at, host = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
        head = f"{scheme}://{netloc}{slash}{path}"
    if sep:
        query = "&".join(_mask_pair(pair) for pair in query.split("&"))
    return head + sep + query + hash_sep + fragment


def _mask_pair(pair: str) -> str:
    name, eq, value = pair.partition("=")
    return f"{name}={MASK}" if eq and value and secret_name(unquote_plus(name)) else pair


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: its userinfo password, secret-looking query values."""
    found = []
    head, _, query = url.partition("?")
    netloc = head.partition("://")[2].partition("/")[0]
    userinfo = netloc.rpartition("@")[0]
    if ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    for pair in query.partition("#")[0].split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and secret_name(unquote_plus(name)):
            found.append(value)
    return found


class Redactor:
    """Replaces every registered secret by `***`; thread-safe, cheap when there are none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = ()

    def add(self, secret: object) -> None:
        """Register a secret (and its encoded forms); short or empty values are ignored."""
        text = "" if secret is None else str(secret)
        if len(text) < MIN_SECRET:
            return
        forms = {text, unquote_plus(text), quote(text, safe=""), quote_plus(text),
                 json.dumps(text)[1:-1], escape_controls(text)}
        with self._lock:
            known = set(self._forms) | {f for f in forms if len(f) >= MIN_SECRET}
            self._forms = tuple(sorted(known, key=len, reverse=True))  # longest first

    def add_url(self, url: object) -> None:
        """Register the credentials a URL carries (see `url_secrets`)."""
        if isinstance(url, str):
            for secret in url_secrets(url):
                self.add(secret)

    def add_headers(self, headers: Iterable[tuple[str, str]]) -> None:
        """Register the values of headers whose names say they carry credentials."""
        for name, value in headers:
            if secret_name(name):
                self.add(value)

    def redact(self, text: str) -> str:
        """`text` without any registered secret."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def __call__(self, text: str) -> str:
        """A line for people: redacted, control characters escaped."""
        return escape_controls(self.redact(text))

    def data(self, value: Any) -> Any:
        """JSON-like data with every string (keys included) redacted: envelopes, lines."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def traceback(self, exc: BaseException) -> str:
        """An exception's traceback as text, redacted (for errors nobody worded)."""
        return self.redact("".join(traceback.format_exception(exc)))


REDACTOR = Redactor()
"""The run's redactor (one per process: logging and the CLI are process-wide too)."""


class RedactingFormatter(logging.Formatter):
    """Wraps a handler's formatter: the message one line and redacted, the output redacted.

    Only the message and the logger's name are made one line: a traceback stays readable.
    """

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        """Format a copy whose message is safe, then redact the whole output (tracebacks)."""
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args = REDACTOR(record.getMessage()), None
        safe.name = escape_controls(record.name)  # the SDK names loggers after streams
        return REDACTOR.redact(self.inner.format(safe))


def install() -> None:
    """Put the redactor in front of every handler logging has now (root and named loggers).

    Idempotent; handlers added later are not covered, so call it once the SDK's logging
    (and a SINGER_SDK_LOG_CONFIG file, if any) is set up.
    """
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):  # placeholders have none
            if not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(handler.formatter))
