"""Sending under Aha!'s rate budget: the shared limiter, retries, workers and per-key order.

`Sender` makes one logical call (limiter, pauses, retries, the meaning of the answer).
`Dispatcher` runs units of work on `max_concurrency` threads, one at a time and in input
order for units that share an ordering key, and lets the sink wait until all work settled.
Nothing here knows about templates, records or the SDK.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

import backoff
import requests
from pyrate_limiter import Limiter, Rate

from target_aha.client import AhaClient, Answer, Request, Verdict, classify, encode_body
from target_aha.errors import FatalAhaError, RecordRejected

ARRIVAL_MARGIN_MS = 50
"""Each limiter window is this much longer than Aha!'s, so network jitter between our send
and Aha!'s count of the arrival cannot push two windows' worth of requests into one."""
MIN_429_PAUSE = 0.1
"""Shortest pause after a 429, whatever its headers say."""
MAX_PAUSE_SECONDS = 65.0
"""Cap on a wait read from Aha!'s headers (a skewed clock must not stall the run)."""

logger = logging.getLogger("target-aha")  # the SDK sets this name's level (TARGET_AHA_LOGLEVEL)
logging.getLogger("pyrate_limiter").setLevel(logging.WARNING)  # its start-up line is noise


def _rate(per_window: float, window_ms: int) -> Rate:
    """A pyrate Rate for a possibly fractional budget (0.5/s = 1 per 2 s)."""
    count = max(1, math.floor(per_window))
    return Rate(count, round(window_ms * count / per_window) + ARRIVAL_MARGIN_MS)


def _windows(second: Rate, minute: Rate) -> list[Rate]:
    """The windows that can bind: pyrate refuses a window that another one makes redundant."""
    if minute.limit <= second.limit:
        return [minute]
    if minute.limit / minute.interval >= second.limit / second.interval:
        return [second]
    return [second, minute]


class RateGate:
    """The one limiter of a run: two windows (second, minute) plus pauses Aha! asks for.

    pyrate-limiter keeps the sliding windows; on top, a 429 or an exhausted
    `X-Ratelimit-Remaining` sets a pause that every sender honours before its next call.
    """

    def __init__(self, per_second: float, per_minute: float) -> None:
        self._limiter = Limiter(_windows(_rate(per_second, 1000), _rate(per_minute, 60_000)),
                                buffer_ms=5)
        self._lock = threading.Lock()
        self._pause_until = 0.0
        self.throttled = 0

    def wait_turn(self) -> None:
        """Block until this caller may send one request."""
        while (delay := self._pause_until - time.monotonic()) > 0:
            time.sleep(delay)
        self._limiter.try_acquire("aha")

    def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` (from now)."""
        with self._lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def observe(self, answer: Answer) -> float | None:
        """Read Aha!'s rate headers; returns the wait they ask for, if any, and applies it."""
        headers = {k.lower(): v for k, v in answer.headers.items()}
        wait = None
        if answer.status == 429:
            with self._lock:  # senders observe concurrently: keep the count exact
                self.throttled += 1
            wait = _seconds(headers.get("retry-after"))
            if wait is None:
                wait = _until(headers.get("x-ratelimit-reset"))
            if wait is not None:
                wait = max(wait, MIN_429_PAUSE)  # a reset already past must not mean "hammer"
        elif headers.get("x-ratelimit-remaining") == "0":
            # The budget is spent but this request got through: wait until the earliest the
            # window can end (Reset has whole-second resolution, rounded up). Waiting for the
            # full Reset idles senders up to a second per window; if the window has not
            # ended yet after all, the 429 that follows waits for all of it.
            wait = _until(headers.get("x-ratelimit-reset"), earliest=True)
        if wait is not None:
            self.pause(wait)
            if answer.status == 429:
                logger.info("Aha! answered 429 (rate limit): all senders wait %.1f s", wait)
        return wait


def _number(value: str | None) -> float | None:
    """A header's number, or None if it is absent or not a number."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _bounded(wait: float) -> float:
    """A wait between 0 and MAX_PAUSE_SECONDS."""
    return min(max(wait, 0.0), MAX_PAUSE_SECONDS)


def _seconds(value: str | None) -> float | None:
    """A `Retry-After` in seconds."""
    number = _number(value)
    return None if number is None else _bounded(number)


EPOCH_2001 = 1e9
"""A reset value below this is a number of seconds to wait, not a unix time."""


def _until(reset: str | None, earliest: bool = False) -> float | None:
    """Seconds until an `X-Ratelimit-Reset` time (UTC unix seconds; some APIs send a delta).

    `earliest`: the soonest a whole-second Reset can mean, one second before it.
    """
    value = _number(reset)
    if value is None:
        return None
    return _bounded(
        value if value < EPOCH_2001 else value - time.time() - (1.0 if earliest else 0.0)
    )


@dataclass
class Sender:
    """One logical call: waits its turn, retries what is worth retrying, judges the answer."""

    client: AhaClient
    gate: RateGate
    max_retries: int
    sent: int = 0
    retries: int = 0
    """Attempts beyond each call's first, for the end-of-run summary."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(
        self, request: Request, where: str, recover: Callable[[], Answer | None] | None = None
    ) -> Answer | None:
        """The 2xx answer; raises RecordRejected (400/404/422...) or FatalAhaError.

        `where` names the stream and record for messages. After a timeout, a dropped
        connection or a 5xx the request may or may not have been carried out: `recover`, if
        given, is asked first and its answer (the object found in Aha!) is used instead of
        sending again.
        """
        waits = backoff.expo(factor=0.5, max_value=30)
        next(waits)
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                logger.debug("Retrying %s (%s), attempt %d", request.describe(), last, attempt)
                with self.lock:
                    self.retries += 1
            self.gate.wait_turn()
            started = time.monotonic()
            try:
                answer = self.client.send(request)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                if attempt < self.max_retries or recover is not None:  # Aha! may be committing
                    time.sleep(backoff.full_jitter(next(waits)))
                if recover is not None and (found := recover()) is not None:
                    return found
                continue
            finally:
                with self.lock:
                    self.sent += 1
            logger.debug(
                "%s -> %d in %.0f ms", request.describe(), answer.status,
                (time.monotonic() - started) * 1000,
            )
            paused = self.gate.observe(answer)
            verdict = classify(answer.status)
            if verdict is Verdict.OK:
                return answer
            if verdict is Verdict.REJECTED:
                raise RecordRejected(
                    answer.status, answer.excerpt(), request.describe(), answer, request
                )
            if verdict is Verdict.FATAL:
                raise FatalAhaError(self._fatal_message(answer, request, where))
            last = f"HTTP {answer.status}: {answer.excerpt()}"
            if paused is None and attempt < self.max_retries:
                time.sleep(backoff.full_jitter(next(waits)))
            # A gateway's 502/504 can come after the application committed: look first.
            if answer.status >= 500 and recover is not None and (found := recover()) is not None:
                return found
        raise FatalAhaError(
            f"{self.client.host_of(request)} did not accept {request.describe()} ({where}) "
            f"after {self.max_retries} retries; the last attempt ended with {last}. Check that "
            "Aha! is reachable from here and not under maintenance, or raise max_retries / "
            "request_timeout; the run stopped without moving the tap's STATE, so the next "
            "run sends these records again."
        )

    def _fatal_message(self, answer: Answer, request: Request, where: str) -> str:
        account = self.client.account
        if not self.client.is_account(request):
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
            f"Aha! account {account} refused {request.describe()} ({where}): {cause}. "
            f"Aha! answered: {answer.excerpt()}"
        )


class DryRunSender:
    """Prints each request as one JSON line on stderr instead of sending it.

    The body is printed as it would go out: JSON data as data, a form body as the exact
    encoded string (`feature[name]=Dark%20mode&...`), so it can be pasted into curl.
    """

    retries = 0  # nothing is sent, so nothing is retried

    def __init__(self, client: AhaClient) -> None:
        self.client = client
        self.sent = 0
        self._lock = threading.Lock()

    def send(
        self, request: Request, where: str, recover: Callable[[], Answer | None] | None = None
    ) -> Answer | None:
        """Print the request; None means nothing was sent."""
        line = {
            "method": request.method,
            "url": self.client.public_url(request),
            "headers": self.client.public_headers(request),
            "body": encode_body(request) if request.content_format == "form" else request.body,
        }
        with self._lock:
            self.sent += 1
            sys.stderr.write(json.dumps(line) + "\n")
            sys.stderr.flush()
        return None


class Unsettled(Exception):
    """Work did not settle before the deadline of a run that is ending early."""


def _left(deadline: float | None) -> float | None:
    """Seconds until `deadline` (never negative), or None for no deadline."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class _Task:
    __slots__ = ("done", "followers", "keys", "waiting_on", "work")

    def __init__(self, work: Callable[[], None], keys: tuple[Hashable, ...]) -> None:
        self.work = work
        self.keys = keys
        self.waiting_on = 0
        self.followers: list[_Task] = []
        self.done = False


class Dispatcher:
    """Runs units of work on worker threads; work sharing a key runs in submission order.

    Each task waits for the previous task of each of its keys (a chain per key), so there is
    no head-of-line blocking between unrelated keys. `submit` blocks when `window` tasks are
    outstanding, so memory stays flat however long the input. The first exception a task
    raises is fatal: later tasks are dropped, and `submit`/`join` re-raise it.
    `concurrency=0` runs each task at once in the caller's thread (dry runs).
    """

    def __init__(self, concurrency: int, window: int | None = None) -> None:
        self._inline = concurrency == 0
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._tails: dict[Hashable, _Task] = {}
        self._ready: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._outstanding = 0
        self._slots = threading.Semaphore(window or max(4 * concurrency, 16))
        self._fatal: BaseException | None = None
        self._concurrency = concurrency
        self._workers: list[threading.Thread] = []

    def submit(self, work: Callable[[], None], keys: Iterable[Hashable] = ()) -> None:
        """Queue `work`; it starts after every earlier task sharing one of `keys` ended."""
        self.check()
        if self._inline:
            work()
            return
        with self._lock:  # started on first use (the SDK may drain sinks from several threads)
            if not self._workers:
                self._workers = [
                    threading.Thread(target=self._run, name=f"aha-sender-{i}", daemon=True)
                    for i in range(self._concurrency)
                ]
                for worker in self._workers:
                    worker.start()
        while not self._slots.acquire(timeout=0.2):
            self.check()
        task = _Task(work, tuple(dict.fromkeys(keys)))
        with self._lock:
            self._outstanding += 1
            for key in task.keys:
                tail = self._tails.get(key)
                if tail is not None and not tail.done:
                    tail.followers.append(task)
                    task.waiting_on += 1
                self._tails[key] = task
            if task.waiting_on == 0:
                self._ready.put(task)

    def busy(self, keys: Iterable[Hashable]) -> bool:
        """Whether a task holding one of `keys` is queued or running (so order matters)."""
        with self._lock:
            return any(key in self._tails for key in keys)

    def join(self, deadline: float | None = None) -> None:
        """Wait until every submitted task ended; raise the fatal error if one occurred.

        With a `deadline` (a `time.monotonic()` value), raise `Unsettled` once it passed.
        """
        with self._settled:
            while self._outstanding and self._fatal is None:
                if not self._settled.wait(_left(deadline)) and _left(deadline) == 0:
                    raise Unsettled(f"{self._outstanding} requests did not end in time")
        self.check()

    def wait(self, deadline: float) -> bool:
        """Wait until every submitted task ended, at most until `deadline`; whether all did.

        Unlike `join`, a fatal error does not end the wait: tasks already running when it
        came are given until the deadline to end and write their outcomes.
        """
        with self._settled:
            while self._outstanding:
                if _left(deadline) == 0:
                    return False
                self._settled.wait(_left(deadline))
        return True

    def halt(self, reason: BaseException) -> None:
        """Start no further task; `reason` is the fatal error unless there already is one."""
        with self._lock:
            self._fatal = self._fatal or reason

    @property
    def outstanding(self) -> int:
        """Tasks submitted that have not ended (queued, waiting on a key, or running)."""
        with self._lock:
            return self._outstanding

    def check(self) -> None:
        """Raise the first fatal error, if any."""
        if self._fatal is not None:
            raise self._fatal

    def close(self) -> None:
        """Stop the workers (after `join`, or when the run is ending anyway)."""
        with self._lock:
            workers, self._workers = self._workers, []
        for _ in workers:
            self._ready.put(None)

    def _run(self) -> None:
        while (task := self._ready.get()) is not None:
            if self._fatal is None:
                try:
                    task.work()
                except BaseException as exc:
                    with self._lock:
                        self._fatal = self._fatal or exc
            self._finish(task)

    def _finish(self, task: _Task) -> None:
        with self._lock:
            task.done = True
            for key in task.keys:
                if self._tails.get(key) is task:
                    del self._tails[key]
            for follower in task.followers:
                follower.waiting_on -= 1
                if follower.waiting_on == 0:
                    self._ready.put(follower)
            self._outstanding -= 1
            self._settled.notify_all()
        self._slots.release()
