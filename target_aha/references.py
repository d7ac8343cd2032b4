"""References between streams (spec §12): which Aha! object a parent's key became.

A child stream's parameter or body field may be `{"ref": "<stream>", "key": "..."}`. The key
ledger is the memory: a parent created in this run or any earlier one is found there by
(stream, account, key), whatever container it was created in. What the ledger does not know
yet is either in flight (the child's task waits for it through the dispatcher's ordering keys)
or deferred to the end of the input (deferral.py).

The configuration is checked here once, at start-up: a reference to a stream that is not
configured, whose endpoint creates nothing the ledger keeps, and reference cycles. A parent
without a key is refused at its SCHEMA (only the SCHEMA can show its key properties).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from target_aha.destination import Destination, Ref
from target_aha.endpoints import CUSTOM
from target_aha.errors import ConfigError
from target_aha.ledger import Ledger
from target_aha.shaping import build_request, fill_path, param_values

if TYPE_CHECKING:
    from target_aha.wire import Request

logger = logging.getLogger("target-aha")


PLACEHOLDER_START = "<ref "
"""How a parent named by key starts (`<ref stream:key>`)."""


@dataclass(frozen=True)
class Parent:
    """One reference of one record: the child's field, the parent stream and key."""

    field: str
    in_path: bool
    """A template parameter (True) or a body field (False)."""
    stream: str
    key: str

    @property
    def order(self) -> Hashable:
        """The dispatcher's ordering key of the parent's record (see sinks.AhaSink)."""
        return ("key", self.stream, self.key)

    @property
    def placeholder(self) -> str:
        """How a dry run shows a parent the ledger does not know yet (and how a child's
        ledger row names its parent container: by key, see `shape`)."""
        return f"{PLACEHOLDER_START}{self.stream}:{self.key}>"


def parents_of(dest: Destination, record: Mapping[str, Any]) -> list[Parent]:
    """The parents a record names; a key template's missing field rejects the record."""
    return [
        Parent(name, in_path, ref.stream,
               ref.key.render(record, name, f"the key of reference '{name}' to stream "
                              f"'{ref.stream}'"))
        for refs, in_path in ((dest.refs, True), (dest.references, False))
        for name, ref in refs.items()
    ]


class Resolver:
    """Looks parents up in the key ledger of one account."""

    def __init__(self, ledger: Ledger | None, account: str) -> None:
        self._ledger = ledger
        self._account = account
        self._warned: set[tuple[str, str]] = set()

    def value(self, parent: Parent) -> str | None:
        """The parent's reference number (else its id), or None if the ledger has no object
        for it.

        A key the ledger knows as several objects was created in several containers (its
        record moved, to another release say, and was created again there): the object it
        became last is the one its record stands for now, so that one is used, and the
        others are named once in a warning (they stay in Aha! until someone deletes them).
        """
        if self._ledger is None:
            return None
        rows = self._ledger.find_key(parent.stream, self._account, parent.key)
        if not rows:
            return None
        _, newest_id, newest_ref = rows[0]
        newest = newest_ref or newest_id
        others = [f"{ref or aha_id}" for _, aha_id, ref in rows[1:] if (ref or aha_id) != newest]
        if others and (parent.stream, parent.key) not in self._warned:
            self._warned.add((parent.stream, parent.key))
            logger.warning(
                "Stream '%s' key %r became several Aha! objects (its record moved to another "
                "container and was created again there): references to it use the newest, "
                "%s; the older %s stay%s in Aha! until you delete %s there.",
                parent.stream, parent.key, newest, ", ".join(others),
                "s" if len(others) == 1 else "", "it" if len(others) == 1 else "them",
            )
        return newest

    def resolve(self, parents: list[Parent]) -> tuple[dict[str, str], list[Parent]]:
        """The values of the parents the ledger knows (by field), and the others."""
        values, missing = {}, []
        for parent in parents:
            found = self.value(parent)
            if found is None:
                missing.append(parent)
            else:
                values[parent.field] = found
        return values, missing


def unresolved(where: str, missing: list[Parent]) -> str:
    """The rejection of a record whose parents never came: child, parent stream and key."""
    named = "; ".join(
        f"its reference '{p.field}' names {p.stream} key {p.key!r}" for p in missing
    )
    return (
        f"{where}: {named}, but no record of that stream created it (not in this input, "
        "nor in the key ledger from an earlier run, or its create was rejected); load the "
        "parent first or fix the key"
    )


def check_references(destinations: Mapping[str, Destination], ledger_on: bool) -> None:
    """Refuse at start-up what the configuration already proves cannot resolve."""
    for stream, dest in destinations.items():
        for name, ref in _refs(dest):
            where = f"streams.{stream}.{name}"
            if not ledger_on:
                raise ConfigError(
                    f"{where} refers to stream '{ref.stream}', but ledger_path is \"\": "
                    "references are resolved through the key ledger; set ledger_path."
                )
            parent = destinations.get(ref.stream)
            if parent is None:
                raise ConfigError(
                    f"{where} refers to stream '{ref.stream}', which is not configured in "
                    f"`streams`; configured: {', '.join(destinations)}. Add it with a create_* "
                    "endpoint and a key_property, or fix the name."
                )
            template = parent.template
            if (template.name == CUSTOM or template.operation != "create"
                    or template.update_path is None):
                raise ConfigError(
                    f"{where} refers to stream '{ref.stream}', whose endpoint "
                    f"'{template.name}' creates nothing the key ledger keeps; a referenced "
                    "stream must use a create_* template (custom endpoints are not tracked)."
                )
            if parent.write_mode != "upsert":
                raise ConfigError(
                    f"{where} refers to stream '{ref.stream}', whose write_mode is "
                    f"'{parent.write_mode}': its creates are not kept in the key ledger, so "
                    "nothing could resolve; use write_mode upsert (the default)."
                )
    cycle = _cycle(destinations)
    if cycle:
        raise ConfigError(
            "The references between streams form a cycle: " + " -> ".join(cycle)
            + ". A child is sent after its parent, so no stream may (through others) refer "
            "to itself; remove one of these references."
        )


def _refs(dest: Destination) -> list[tuple[str, Ref]]:
    return [*dest.refs.items(), *(("references." + f, r) for f, r in dest.references.items())]


def _cycle(destinations: Mapping[str, Destination]) -> list[str]:
    """A cycle of references (its streams, the first repeated at the end), or []."""
    done: set[str] = set()

    def visit(stream: str, path: list[str]) -> list[str]:
        if stream in path:
            return [*path[path.index(stream):], stream]
        if stream in done or stream not in destinations:
            return []
        for parent in sorted(destinations[stream].parents):
            found = visit(parent, [*path, stream])
            if found:
                return found
        done.add(stream)
        return []

    for stream in destinations:
        found = visit(stream, [])
        if found:
            return found
    return []


def referenced(destinations: Mapping[str, Destination]) -> frozenset[str]:
    """The streams some reference names (each needs a single-field key at its SCHEMA)."""
    return frozenset().union(*(d.parents for d in destinations.values()))


class Shaped(NamedTuple):
    """A record shaped into its request: the parameters (references resolved), the values
    references gave the path (`pinned`, hashed with the body), the path of its ledger row,
    and the parents not known yet."""

    request: Request
    values: Mapping[str, str]
    pinned: Mapping[str, str]
    path: str
    missing: list[Parent]


def shape(dest: Destination, record: Mapping[str, Any], resolver: Resolver, *, dry_run: bool,
          disable_mailers: bool) -> Shaped:
    """A record's request, its parents resolved where the ledger knows them.

    Parents the ledger does not know are `missing` (a dry run shows them as
    `<ref stream:key>` instead); the request is still built with placeholders, so a
    record that cannot be shaped is rejected now, not at the end of the input.
    """
    values = param_values(dest, record)
    if not dest.refs and not dest.references:
        request = build_request(dest, record, values, disable_mailers)
        return Shaped(request, values, {}, request.path, [])
    parents = parents_of(dest, record)
    known, missing = resolver.resolve(parents)
    shown = {p.field: p.placeholder for p in missing}
    if dry_run:
        known, missing = {**known, **shown}, []
    linked = {**known, **shown}
    pinned = {p.field: linked[p.field] for p in parents if p.in_path}
    body = {p.field: linked[p.field] for p in parents if not p.in_path}
    request = build_request(dest, record, {**values, **pinned}, disable_mailers, body)
    # The ledger row of a child does not move when its parent is created again: its
    # path names the parent by key; the digest (Keyed.pinned) sees the new id.
    stable = fill_path(dest.template.path, {
        **values, **{p.field: p.placeholder for p in parents if p.in_path},
    })
    return Shaped(request, {**values, **pinned}, pinned, stable, missing)
