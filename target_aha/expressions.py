"""The batch `code` expression: a body built from `records` and `stream`, safely.

The expression comes from configuration, so it is evaluated the way the Singer SDK evaluates
stream-map expressions: with simpleeval's `EvalWithCompoundTypes` (literals, comprehensions,
arithmetic, subscripts; no imports, no dunder attributes, no statements, no builtins beyond
the functions below). Unlike the SDK's evaluator it keeps simpleeval's own check that no
module object leaks into the names. A failing expression is a configuration error: the run
stops, whatever `on_record_error` says, because every later batch would fail the same way.

simpleeval bounds some things (string literals, powers, comprehension lengths) but not all:
`'a'.ljust(3000000000)` allocates gigabytes, nested comprehensions can spin for minutes, and
deep nesting overflows the stack. So each evaluation runs in a forked child process with a
memory ceiling (`RLIMIT_AS`), a wall-clock limit and a cap on the body it may produce; the
parent only reads the finished JSON text back. A batch is one call per `batch.size` records,
so a fork per batch (about a millisecond) is cheap.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import hashlib
import json
import os
import resource
import select
import signal
import time
from collections.abc import Callable
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


EVAL_SECONDS = 5.0
"""Longest one evaluation may run (a body for a batch is built in milliseconds)."""
EVAL_MEMORY = 512 * 2**20
"""Memory one evaluation may add to what the process already has."""
BODY_LIMIT = 16 * 2**20
"""Largest body (as JSON text) an expression may build."""


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
        except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
            reason = exc.msg if isinstance(exc, SyntaxError) else "it is nested too deeply"
            raise ConfigError(
                f"{where} is not a valid expression ({reason}): {code[:200]!r}. It must be one "
                "expression over `records` and `stream`; statements such as import or "
                "assignments are not allowed."
            ) from exc
        self.code = code
        self._where = where

    def evaluate(self, records: list[dict[str, Any]], stream: str) -> Any:
        """The body for one batch; raises ExpressionError (never sends anything itself)."""
        ok, text = bounded(lambda: self._body_text(records, stream))
        if not ok:
            raise self._error(text)
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:  # cannot happen for json.dumps's output
            raise self._error(f"its result cannot be read back as JSON ({exc})") from exc

    def _body_text(self, records: list[dict[str, Any]], stream: str) -> tuple[bool, str]:
        """In the child: (True, the body as JSON text), or (False, what is wrong)."""
        evaluator = simpleeval.EvalWithCompoundTypes(
            functions=dict(FUNCTIONS), names={"records": records, "stream": stream}
        )
        try:
            body = evaluator.eval(self.code, previously_parsed=self._tree)
        except MemoryError:
            return False, f"it needed more than {EVAL_MEMORY // 2**20} MiB of memory"
        except RecursionError:
            return False, "it is nested too deeply to evaluate (RecursionError)"
        except Exception as exc:  # any failure of a user's expression is reported, not raised
            return False, f"{type(exc).__name__}: {exc}"
        if not isinstance(body, dict | list):
            return False, (
                f"it produced {type(body).__name__} {str(body)[:100]!r}, but a request body "
                "must be an object or a list"
            )
        try:
            return True, json.dumps(body, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return False, f"its result cannot be sent as JSON ({exc})"

    def _error(self, problem: str) -> ExpressionError:
        return ExpressionError(
            f"{self._where} failed: {problem}. Expression: {self.code!r}. It may use only "
            f"`records` (the batch, a list of objects), `stream` and the functions "
            f"{', '.join(sorted({*FUNCTIONS, 'list', 'dict', 'tuple', 'set'}))}. Nothing was "
            "sent for this batch; fix the expression and run again (an expression error stops "
            "the run whatever on_record_error says)."
        )


def bounded(work: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    """`work()` run in a forked child under `EVAL_MEMORY`, `EVAL_SECONDS` and `BODY_LIMIT`.

    Returns what `work` returned, or (False, which limit was hit). The child shares nothing
    back but its answer's text, so an expression cannot change the parent's state.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: evaluate, write "1"/"0" + text, and leave without cleanup
        os.close(read_end)
        try:
            _limit_memory()
            ok, text = work()
            data = (b"1" if ok else b"0") + text.encode()
        except MemoryError:
            data = b"0" + f"it needed more than {EVAL_MEMORY // 2**20} MiB of memory".encode()
        except BaseException as exc:  # reported to the parent, whatever it is
            data = b"0" + f"{type(exc).__name__}: {exc}".encode()
        try:
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        problem, data = _collect(read_end)
    finally:
        os.close(read_end)
        _reap(pid)
    if problem:
        return False, problem
    if not data:
        return False, "its evaluation ended without an answer (it ran out of memory or crashed)"
    return data[:1] == b"1", data[1:].decode()


def _limit_memory() -> None:
    """In the child: at most `EVAL_MEMORY` more address space than it started with."""
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + EVAL_MEMORY
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _collect(fd: int) -> tuple[str, bytes]:
    """The child's answer, or which bound it broke ("" when none)."""
    deadline = time.monotonic() + EVAL_SECONDS
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return f"it ran longer than {EVAL_SECONDS:g} s", b""
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return "", bytes(data)
        data += chunk
        if len(data) > BODY_LIMIT + 1:
            return f"its result is larger than {BODY_LIMIT // 2**20} MiB", b""


def _reap(pid: int) -> None:
    """Make sure the child is gone (it may still be running when a bound was hit)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
