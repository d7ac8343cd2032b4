"""The batch `code` expression: a body built from `records` and `stream`, safely.

The expression comes from configuration, so it is evaluated the way the Singer SDK evaluates
stream-map expressions: with simpleeval's `EvalWithCompoundTypes` (literals, comprehensions,
arithmetic, subscripts; no imports, no dunder attributes, no statements, no builtins beyond
the functions below). Unlike the SDK's evaluator it keeps simpleeval's own check that no
module object leaks into the names. A failing expression is a configuration error: the run
stops, whatever `on_record_error` says, because every later batch would fail the same way.
"""

from __future__ import annotations

import ast
import datetime
import hashlib
import json
from typing import Any

import simpleeval

from target_aha.errors import ConfigError


def _md5(text: str) -> str:
    return hashlib.md5(str(text).encode()).hexdigest()  # a fingerprint, as in the SDK's maps


def _sha256(text: str) -> str:
    return hashlib.sha256(str(text).encode()).hexdigest()


FUNCTIONS: dict[str, Any] = {
    **simpleeval.DEFAULT_FUNCTIONS,
    "md5": _md5,
    "sha256": _sha256,
    "datetime": simpleeval.ModuleWrapper(datetime),
    "bool": bool,
    "json": simpleeval.ModuleWrapper(json),
    "len": len,
}
"""What an expression may call: the SDK stream maps' functions, plus `len` for batches
(`list`, `dict`, `tuple` and `set` come with EvalWithCompoundTypes)."""


class ExpressionError(ConfigError):
    """The batch expression failed or produced something that cannot be a request body."""


class BatchExpression:
    """A `batch.code` expression, parsed once at start-up and evaluated once per batch."""

    def __init__(self, code: object, where: str) -> None:
        if not isinstance(code, str) or not code.strip():
            raise ConfigError(
                f"{where} must be an expression (a string) over `records` and `stream`, "
                """for example "{'ideas': [{'name': r['title']} for r in records]}"."""
            )
        try:
            self._tree = ast.parse(code.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ConfigError(
                f"{where} is not a valid expression ({exc.msg}): {code!r}. It must be one "
                "expression over `records` and `stream`; statements such as import or "
                "assignments are not allowed."
            ) from exc
        self.code = code
        self._where = where

    def evaluate(self, records: list[dict[str, Any]], stream: str) -> Any:
        """The body for one batch; raises ExpressionError (never sends anything itself)."""
        evaluator = simpleeval.EvalWithCompoundTypes(
            functions=dict(FUNCTIONS), names={"records": records, "stream": stream}
        )
        try:
            body = evaluator.eval(self.code, previously_parsed=self._tree)
        except Exception as exc:  # any failure of a user's expression is reported, not raised
            raise self._error(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(body, dict | list):
            raise self._error(
                f"it produced {type(body).__name__} {str(body)[:100]!r}, but a request body "
                "must be an object or a list"
            )
        try:
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise self._error(f"its result cannot be sent as JSON ({exc})") from exc
        return body

    def _error(self, problem: str) -> ExpressionError:
        return ExpressionError(
            f"{self._where} failed: {problem}. Expression: {self.code!r}. It may use only "
            f"`records` (the batch, a list of objects), `stream` and the functions "
            f"{', '.join(sorted({*FUNCTIONS, 'list', 'dict', 'tuple', 'set'}))}. Nothing was "
            "sent for this batch; fix the expression and run again (an expression error stops "
            "the run whatever on_record_error says)."
        )
