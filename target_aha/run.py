"""A run's shared machinery: results file, ledger, sender, dispatcher, webhook, costs, settling.

Assembled once per run from the settings, when the first sink needs it (`open_run`), so that
building the target opens nothing; every sink of the run is handed the same `Run`.
"""

from __future__ import annotations

import logging
import signal
import time
import typing as t
from dataclasses import dataclass, field

from target_aha.deferral import Spool
from target_aha.dispatch import Dispatcher, Unsettled
from target_aha.ledger import Ledger
from target_aha.ledger_open import open_ledger
from target_aha.progress import Progress
from target_aha.ratelimit import RateGate
from target_aha.references import Resolver
from target_aha.results import Results, new_run_id
from target_aha.sender import Sender, sender_policy
from target_aha.summary import Costs
from target_aha.watchdog import WATCHDOG
from target_aha.webhook import Webhook

if t.TYPE_CHECKING:
    from target_aha.client import AhaClient

SETTLE_SECONDS = 3.0
"""How long a run that ends early (a signal, a fatal error) waits for requests in flight to
end and write their results lines; what is still running then is cut short, unsettled."""

logger = logging.getLogger("target-aha")


class Deferring(t.Protocol):
    """A sink whose records may wait for their parents (sinks.AhaSink)."""

    def replay(self, record: dict[str, t.Any], where: str) -> bool:
        """Try a deferred record again; whether it was handed on (not deferred again)."""

    def give_up(self, record: dict[str, t.Any], where: str) -> None:
        """Reject a deferred record whose parents never came."""


@dataclass
class Run:
    """What every sink of one run shares: one sender, one dispatcher, results and ledger."""

    results: Results
    ledger: Ledger | None
    sender: Sender
    dispatcher: Dispatcher
    disable_mailers: bool
    on_record_error: str
    dry_run: bool
    webhook: Webhook
    webhook_url: str | None
    """The response webhook of streams that name none of their own."""
    progress_interval: float
    gate: RateGate | None = None
    resolver: Resolver = field(default_factory=lambda: Resolver(None, ""))
    """Finds the Aha! objects that references name (references.py)."""
    referenced: frozenset[str] = frozenset()
    """Streams other streams refer to: their records need a one-field key."""
    spool: Spool | None = None
    """Records waiting for an unknown parent (opened by the first one)."""
    deferring: dict[str, Deferring] = field(default_factory=dict)
    """The sink of each stream that has deferred records (to hand them back at the end)."""
    replaying: bool = False
    """Deferred records are being handed back: STATE waits until all of them settled."""
    read: int = 0
    warned_id_key: set[str] = field(default_factory=set)
    """Streams already warned that their key field `id` goes into Aha! bodies."""
    started: float = field(default_factory=time.monotonic)
    deadline: float | None = None
    """Set when the run ends early: waits for work end then (`time.monotonic()` value)."""
    progress: Progress = field(init=False)
    closed: bool = False

    def __post_init__(self) -> None:
        self.progress = Progress(self.progress_interval, self.figures)

    def costs(self) -> Costs:
        """Time and requests the run has spent so far, for the summary."""
        return Costs(time.monotonic() - self.started, self.sender.sent, self.sender.retries,
                     self.gate.throttled if self.gate else 0)

    def settle(self) -> None:
        """Wait until every record handed over has its outcome and its answer was posted.

        A run that is ending early waits only until its `deadline`, then raises `Unsettled`
        (so the SDK emits no STATE over records that have no outcome).
        """
        self.dispatcher.join(self.deadline)
        if not self.webhook.join(self.deadline):
            raise Unsettled("answers were still waiting to be posted to the response webhook")

    def defer(self, stream: str, sink: Deferring, record: dict[str, t.Any], where: str,
              key: str | None) -> None:
        """Hold a record until the end of the input (on disk); STATE waits for it."""
        self.deferring[stream] = sink
        if self.spool is None:
            self.spool = Spool()
        self.spool.add(stream, record, where, key)

    def waits_behind(self, stream: str, key: str) -> bool:
        """Whether an earlier record of this key is deferred, while the input is still read
        (a later record of the key then waits behind it, so their input order holds; when
        the deferred ones are handed back they come in input order anyway)."""
        return not self.replaying and self.spool is not None and self.spool.holds(stream, key)

    @property
    def deferred(self) -> bool:
        """Whether records wait for a parent (or are being handed back): no STATE then."""
        return self.replaying or (self.spool is not None and self.spool.waiting > 0)

    def settle_deferred(self) -> None:
        """At the end of the input: hand deferred records back, round after round, while a
        round hands any on (a deferred child waits for its deferred parent to settle); then
        reject what is still waiting, as `on_record_error` says.

        STATE stays held until this returns (a run stopped meanwhile emits none past them).
        """
        if not self.referenced:  # no references configured: nothing is ever deferred
            return
        self.replaying = True
        self.settle()  # a record waiting for a parent in flight may be deferred meanwhile
        if self.spool is not None:
            while self.spool.waiting:
                progressed = False
                for stream, record, where in self.spool.take_round():
                    progressed = self.deferring[stream].replay(record, where) or progressed
                self.settle()
                if not progressed:
                    break
            while self.spool.waiting:  # a record handed on may come back (its parent failed)
                for stream, record, where in self.spool.take_round():
                    self.deferring[stream].give_up(record, where)
                self.settle()
        self.replaying = False

    def figures(self) -> dict[str, int]:
        """The counters a progress line shows."""
        counts = self.results.counts
        return {
            "read": self.read,
            "sent": self.sender.sent,
            "unchanged": counts["succeeded:unchanged"] + counts["dry_run:unchanged"],
            "rejected": counts["rejected"],
            "throttled": self.gate.throttled if self.gate else 0,
        }

    def wind_down(self, drain: t.Callable[[], None] | None) -> bool:
        """Settle (bounded by `SETTLE_SECONDS`) what is in flight; whether all of it settled.

        `drain` is the SDK's drain (partial batches go out, STATE only if all settled); without
        it (the run is ending on an error) the run only waits for what was handed over.
        """
        self.deadline = time.monotonic() + SETTLE_SECONDS
        try:
            if drain is not None:
                drain()
                return True
            return self.dispatcher.wait(self.deadline) and self.webhook.join(self.deadline)
        except Exception as exc:  # the run is ending on another error already
            logger.debug("Settling before the end stopped: %s", exc)
            return False
        finally:
            self.dispatcher.halt(Unsettled("the run is stopping"))
            WATCHDOG.close()  # cut what still runs: its outcome stays unknown, never "settled"

    def interrupted(self, signum: int, *, settled: bool) -> str:
        """The message of a run a signal stopped."""
        name = signal.Signals(signum).name
        done = sum(self.results.counts[s] for s in ("succeeded", "rejected", "dry_run"))
        if settled:
            outcome = (
                "every record read so far was settled and the tap's latest STATE emitted"
            )
        else:
            outcome = (
                f"{self.dispatcher.outstanding} requests in flight were cut short after "
                f"{SETTLE_SECONDS:g} s; their records have no results line and no STATE was "
                "emitted over them (a create among them is found again by the next run, as "
                "after a timeout)"
            )
        return (
            f"Stopped by {name} before the end of the input: {done} records settled (see the "
            f"results file); {outcome}. The run did not finish: run it again to load the rest."
        )

    def close(self) -> None:
        """Release the run's threads and files (once; later calls do nothing)."""
        if self.closed:
            return
        self.closed = True
        self.progress.stop()
        self.dispatcher.close()
        self.webhook.close(self.deadline)
        self.results.close()
        if self.spool is not None:
            self.spool.close()
        if self.ledger is not None:
            self.ledger.close()


def open_run(config: t.Mapping[str, t.Any], client: AhaClient, webhook_agent: str,
             referenced: frozenset[str] = frozenset()) -> Run:
    """Open the results file and the ledger, and build the sender and dispatcher.

    `webhook_agent` is the User-Agent of the response webhook's posts (never the API's);
    `referenced` are the streams other streams' references name.
    """
    dry_run = bool(config.get("dry_run"))
    results = Results(config.get("results_path"), new_run_id(dry_run))
    try:
        ledger = open_ledger(
            config["ledger_path"], dry_run=dry_run, pool_size=config["max_concurrency"]
        )
    except BaseException:  # the run never starts: its results file is not left open
        results.close()
        raise
    if not config["ledger_path"]:
        logger.warning(
            'ledger_path is "": upsert is off, so every run creates its records again '
            "(re-runs and retries after a failure will duplicate objects in Aha!)."
        )
    # A dry run's client answers from its printing transport: the same sender, no rate gate.
    gate = None if dry_run else RateGate(
        float(config["max_requests_per_second"]), float(config["max_requests_per_minute"])
    )
    sender = Sender(client, gate, sender_policy(config["max_retries"]))
    dispatcher = Dispatcher(concurrency=0 if dry_run else config["max_concurrency"])
    return Run(
        results, ledger, sender, dispatcher, config["disable_mailers"],
        config["on_record_error"], dry_run, Webhook(webhook_agent),
        config.get("response_webhook_url") or None,
        float(config["progress_interval_seconds"]), gate,
        Resolver(ledger, client.base_url), referenced,
    )
