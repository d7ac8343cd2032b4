"""Workers and per-key order: units of work on `max_concurrency` threads.

`Dispatcher` runs units of work on worker threads, one at a time and in input order for
units that share an ordering key, and lets the sink wait until all work settled. Nothing
here knows about HTTP, templates, records or the SDK (one call's turn, retries and meaning
are the sender's).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable


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
