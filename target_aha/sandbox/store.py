"""In-memory Aha! objects: ids, reference numbers, containers and the seed data.

One re-entrant lock guards everything, so HTTP handler threads and the test-facing `Sandbox`
methods always see a consistent store. Callers that need several steps to be atomic (resolve a
container, validate, then write) hold `Store.lock` around all of them.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


class ApiError(Exception):
    """An answer in Aha!'s error shape, raised below the HTTP layer and sent as JSON by it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def payload(self) -> dict[str, Any]:
        """The body Aha! sends for most errors."""
        return {"errors": {"message": self.message}}


def not_found() -> ApiError:
    """Aha!'s answer for an unknown object, container or route."""
    return ApiError(404, "Record not found")


@dataclass(frozen=True)
class Kind:
    """One type of Aha! object: its JSON wrapper key (= name), URL plural and reference format.

    `page` is where the object's page (`url`) lives in Aha!'s web app, which is not always the
    API's plural (goals are strategic imperatives there, products projects); None means the
    object has no page and Aha! answers no `url` or `resource` (custom table records, teams).
    `dated`: whether Aha! answers `created_at`/`updated_at` (teams carry neither).
    `workflow`: whether the object has a workflow status (answered as an object).
    `whole_in_lists`: lists answer the whole object, not a short item (custom table records
    and comments: what tells one from another is not a name).
    """

    name: str
    plural: str
    # Middle part of the reference number: "E" gives PRJ1-E-7, "" gives PRJ1-7 (features);
    # None means the object has no reference number (products use their prefix instead).
    ref_infix: str | None
    page: str | None
    dated: bool = True
    workflow: bool = False
    whole_in_lists: bool = False


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("product", "products", None, "projects"),
        Kind("release", "releases", "R", "releases"),
        Kind("epic", "epics", "E", "epics", workflow=True),
        Kind("feature", "features", "", "features", workflow=True),
        Kind("goal", "goals", "G", "strategic_imperatives", workflow=True),
        Kind("initiative", "initiatives", "S", "initiatives", workflow=True),
        Kind("idea", "ideas", "I", "ideas", workflow=True),
        Kind("custom_object_record", "custom_object_records", None, None, whole_in_lists=True),
        Kind("team", "teams", None, None, dated=False),
        # Objects inside another object: their reference number extends their container's
        # (requirement PRJ1-1-1 of feature PRJ1-1, key result PRJ1-G-1-KR-1 of goal PRJ1-G-1).
        Kind("requirement", "requirements", "", "requirements", workflow=True),
        Kind("key_result", "key_results", "KR", "key_results"),
        Kind("comment", "comments", None, "comments", whole_in_lists=True),
    )
}
DEFAULT_STATUS = "New"
"""The workflow status Aha! gives an object created without one."""
LIST_ITEM_FIELDS = ("id", "reference_num", "name", "created_at", "url", "resource")
"""What a list endpoint answers per object: a short item, not the whole object."""
LINKS: dict[str, dict[str, str]] = {
    "feature": {"epic": "epic", "initiative": "initiative", "release": "release"},
    "epic": {"initiative": "initiative", "release": "release"},
    "idea": {"feature": "feature", "epic": "epic", "initiative": "initiative"},
    "initiative": {"goal": "goal"},
}
"""Body fields that name another object, by the kind they name (Aha! takes its id or its
reference number, and answers the object named): spec §12's references land here."""

DESCRIBED = frozenset({"release", "epic", "feature", "goal", "initiative", "idea", "requirement"})
"""Kinds whose `description` Aha! stores as a note and answers as `{"id", "body"}`."""


@dataclass(frozen=True)
class CustomField:
    """One column of a custom table, as Aha! describes it in a record's `custom_fields`."""

    key: str
    name: str
    type: str


@dataclass(frozen=True)
class CustomTable:
    """A custom table (custom object) of a product; records must only use its field keys."""

    key: str
    name: str
    product_id: str
    fields: tuple[CustomField, ...]

    def field(self, key: str) -> CustomField:
        """The column `key`, or a 422 like Aha! gives for an unknown field key."""
        for column in self.fields:
            if column.key == key:
                return column
        raise ApiError(
            422, f"Validation failed: Unknown custom field key '{key}' for table '{self.key}'"
        )


@dataclass
class Entry:
    """A stored object: its public JSON plus what the store needs to find and guard it."""

    kind: Kind
    id: str
    ref: str | None
    product_id: str | None  # owning product (the product itself for products; None for teams)
    container_id: str | None  # release id (features, epics), table key (records), product id
    data: dict[str, Any]
    # Fields the client may not overwrite (id, reference number, container, timestamps, ...).
    system: dict[str, Any]
    updated: datetime


def now_utc() -> datetime:
    """The current time, timezone-aware, truncated to Aha!'s millisecond precision."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(moment: datetime) -> str:
    """Aha!'s timestamp format: `2026-11-27T10:00:00.123Z`."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """All objects of one sandbox, with Aha!'s id and reference-number rules."""

    def __init__(self, id_seed: int) -> None:
        self.lock = threading.RLock()
        # Ids come from their own seeded generator that survives reset(), so an id handed out
        # before a reset never names a different object afterwards (a stale ledger gets 404).
        self._id_rng = random.Random(id_seed)
        self._issued: set[str] = set()
        self._site_url = ""
        self._entries: dict[str, dict[str, Entry]] = {name: {} for name in KINDS}
        self._refs: dict[str, dict[str, Entry]] = {name: {} for name in KINDS}
        self._counters: dict[tuple[str, str], int] = {}
        self._tables: dict[tuple[str, str], CustomTable] = {}
        self._default_release: dict[str, str] = {}
        self._statuses: dict[str, str] = {}  # workflow status name (lower case) -> its id
        self.user: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def reset(self, site_url: str) -> None:
        """Forget every object and load the seed data; `site_url` prefixes objects' urls."""
        with self.lock:
            self._site_url = site_url
            for kind in KINDS:
                self._entries[kind].clear()
                self._refs[kind].clear()
            self._counters.clear()
            self._tables.clear()
            self._default_release.clear()
            self._seed()

    def _seed(self) -> None:
        stamp = iso(now_utc())
        self.user = {
            "id": self._new_id(),
            "name": "Sandbox User",
            "email": "sandbox@example.com",
            "created_at": stamp,
            "updated_at": stamp,
        }
        first = self._add_product("PRJ1", "Sandbox Product")
        second = self._add_product("PRJ2", "Second Product")
        release_1 = self.create("release", {"name": "Release 1"}, product=first)
        self.create("release", {"name": "Release 2"}, product=first)
        other_release = self.create("release", {"name": "Release 1"}, product=second)
        self._default_release[first.id] = release_1.id
        self._default_release[second.id] = other_release.id
        vendors = CustomTable(
            key="vendors",
            name="Vendors",
            product_id=first.id,
            fields=(
                CustomField("name", "Name", "string"),
                CustomField("contact_email", "Contact email", "email"),
                CustomField("tier", "Tier", "string"),
                CustomField("since", "Since", "date"),
            ),
        )
        self._tables[(first.id, vendors.key)] = vendors
        self.create("epic", {"name": "Seed epic"}, product=first, release=release_1)

    def _add_product(self, prefix: str, name: str) -> Entry:
        return self._add(
            KINDS["product"], {"name": name}, ref=prefix, product_id=None, container_id=None,
            extra={"reference_prefix": prefix},
        )

    # -- reading ---------------------------------------------------------------------------

    def find(self, kind: str, key: str) -> Entry | None:
        """The object of `kind` whose id or reference number (any case) is `key`."""
        with self.lock:
            return self._entries[kind].get(key) or self._refs[kind].get(key.upper())

    def get(self, kind: str, key: str) -> Entry:
        """Like find(), but a missing object is Aha!'s 404."""
        entry = self.find(kind, key)
        if entry is None:
            raise not_found()
        return entry

    def entries(self, kind: str, keep: Callable[[Entry], bool] = lambda _: True) -> list[Entry]:
        """Objects of `kind` in creation order, filtered by `keep`."""
        with self.lock:
            return [entry for entry in self._entries[kind].values() if keep(entry)]

    def public(self, entry: Entry) -> dict[str, Any]:
        """A copy of the object's JSON, safe to hand to another thread or serialize later."""
        with self.lock:
            return copy.deepcopy(entry.data)

    def list_item(self, entry: Entry) -> dict[str, Any]:
        """The object as a list answers it: short, except custom table records and comments.

        Matching a record needs its values, so record lists answer whole records (Aha!'s
        reference shows no short form for them); comment lists answer whole comments, bodies
        included, as the Comments API's examples do.
        """
        with self.lock:
            if entry.kind.whole_in_lists:
                return copy.deepcopy(entry.data)
            return {k: copy.deepcopy(entry.data[k]) for k in LIST_ITEM_FIELDS if k in entry.data}

    def table(self, product: Entry, key: str) -> CustomTable:
        """The product's custom table `key`, or 404."""
        with self.lock:
            table = self._tables.get((product.id, key))
        if table is None:
            raise not_found()
        return table

    def default_release(self, product: Entry) -> Entry:
        """Where `POST /products/{id}/epics` puts an epic."""
        with self.lock:
            release = self._entries["release"].get(self._default_release.get(product.id, ""))
        if release is None:  # deleted behind the API's back
            raise not_found()
        return release

    # -- writing ---------------------------------------------------------------------------

    def create(
        self,
        kind: str,
        fields: dict[str, Any],
        *,
        product: Entry | None,
        release: Entry | None = None,
        table: CustomTable | None = None,
        parent: Entry | None = None,
    ) -> Entry:
        """Store a new object in its container and give it an id and a reference number.

        `parent` is the object a requirement, key result or comment is created in: it numbers
        them (below its own reference number) and is named in their answer.
        """
        with self.lock:
            spec = KINDS[kind]
            if "custom_fields" in fields:
                # Validate before anything is stored or a reference number is used up.
                values = _custom_fields(table, [], fields["custom_fields"])
                fields = {**fields, "custom_fields": values}
            if spec.workflow and "workflow_status" not in fields:
                fields = {**fields, "workflow_status": DEFAULT_STATUS}
            fields = self._answered(spec, fields, {})
            ref = None
            numbered_in = parent if parent is not None else product
            if spec.ref_infix is not None and numbered_in is not None:
                counter = (numbered_in.id, kind)
                self._counters[counter] = self._counters.get(counter, 0) + 1
                middle = f"{spec.ref_infix}-" if spec.ref_infix else ""
                ref = f"{numbered_in.ref}-{middle}{self._counters[counter]}"
            extra: dict[str, Any] = {}
            container_id = product.id if product is not None else None
            if release is not None:
                extra["release"] = {
                    "id": release.id,
                    "reference_num": release.ref,
                    "name": release.data.get("name"),
                }
                container_id = release.id
            elif product is not None:
                extra["product_id"] = product.id
            if table is not None:
                extra["key"] = table.key
                container_id = table.key
            if parent is not None:
                extra.update(_in_parent(spec, parent))
                container_id = parent.id
            return self._add(
                spec, fields, ref=ref, product_id=product.id if product else None,
                container_id=container_id, extra=extra,
            )

    def update(self, entry: Entry, fields: dict[str, Any]) -> None:
        """Merge `fields` into the object like Aha!'s PUT: omitted fields stay as they are."""
        with self.lock:
            merged = {**entry.data, **self._answered(entry.kind, fields, entry.data)}
            if "custom_fields" in fields:
                table = (
                    self._tables.get((entry.product_id or "", entry.container_id or ""))
                    if entry.kind.name == "custom_object_record"
                    else None
                )
                merged["custom_fields"] = _custom_fields(
                    table, entry.data.get("custom_fields", []), fields["custom_fields"]
                )
            entry.updated = now_utc()
            if entry.kind.dated:
                entry.system["updated_at"] = iso(entry.updated)
            merged.update(entry.system)
            entry.data = merged

    def delete(self, entry: Entry) -> None:
        """Remove the object and everything inside it (a release's features, a product's all)."""
        with self.lock:
            self._entries[entry.kind.name].pop(entry.id, None)
            if entry.ref is not None:
                self._refs[entry.kind.name].pop(entry.ref.upper(), None)
            if entry.kind.name == "product":
                for key in [key for key in self._tables if key[0] == entry.id]:
                    del self._tables[key]
            inside = [
                other
                for kind in self._entries.values()
                for other in kind.values()
                if other.container_id == entry.id
                or (entry.kind.name == "product" and other.product_id == entry.id)
            ]
            for other in inside:
                self.delete(other)

    # -- internals -------------------------------------------------------------------------

    def _answered(
        self, kind: Kind, fields: dict[str, Any], existing: dict[str, Any]
    ) -> dict[str, Any]:
        """Fields as Aha! answers them: a description is a note, a workflow status an object.

        Aha! takes `"description": "<p>html</p>"` and `"workflow_status": "Done"` (or
        `{"name": "Done"}`), and answers `{"id", "body"}` and `{"id", "name", "complete"}`.
        """
        out = dict(fields)
        for link, linked in LINKS.get(kind.name, {}).items():
            if isinstance(fields.get(link), str | int) and not isinstance(fields[link], bool):
                other = self.find(linked, str(fields[link]))
                if other is None:
                    raise ApiError(
                        422, f"Validation failed: {link.title()} {fields[link]} not found"
                    )
                out[link] = {"id": other.id, "reference_num": other.ref,
                             "name": other.data.get("name")}
        if kind.name in DESCRIBED and "description" in fields:
            text = fields["description"]
            if isinstance(text, dict):
                text = text.get("body")
            note = existing.get("description")
            note_id = note["id"] if isinstance(note, dict) else self._new_id()
            out["description"] = {"id": note_id, "body": "" if text is None else str(text)}
        if kind.workflow and "workflow_status" in fields:
            status = fields["workflow_status"]
            name = status.get("name") if isinstance(status, dict) else status
            if not isinstance(name, str) or not name.strip():
                raise ApiError(422, "Validation failed: Workflow status is invalid")
            known = name.strip().lower()
            if known not in self._statuses:
                self._statuses[known] = self._new_id()
            status_id = self._statuses[known]
            out["workflow_status"] = {
                "id": status_id, "name": name.strip(),
                "complete": name.strip().lower() in {"shipped", "done", "achieved", "completed"},
            }
        return out

    def _new_id(self) -> str:
        """A 19-digit id, unique over the store's whole life (Aha! ids are strings in JSON)."""
        while True:
            candidate = str(self._id_rng.randrange(10**18, 10**19))
            if candidate not in self._issued:
                self._issued.add(candidate)
                return candidate

    def _add(
        self,
        kind: Kind,
        fields: dict[str, Any],
        *,
        ref: str | None,
        product_id: str | None,
        container_id: str | None,
        extra: dict[str, Any],
    ) -> Entry:
        entry_id = self._new_id()
        handle = ref or entry_id
        created = now_utc()
        system: dict[str, Any] = {"id": entry_id}
        if ref is not None and kind.ref_infix is not None:
            system["reference_num"] = ref
        system.update(extra)
        if kind.page is not None:
            system["url"] = f"{self._site_url}/{kind.page}/{handle}"
            system["resource"] = f"{self._site_url}/api/v1/{kind.plural}/{handle}"
        if kind.dated:
            system["created_at"] = iso(created)
            system["updated_at"] = iso(created)
        entry = Entry(
            kind=kind,
            id=entry_id,
            ref=ref,
            product_id=entry_id if kind.name == "product" else product_id,
            container_id=container_id,
            data={**fields, **system},
            system=system,
            updated=created,
        )
        self._entries[kind.name][entry_id] = entry
        if ref is not None:
            self._refs[kind.name][ref.upper()] = entry
        return entry


def _in_parent(kind: Kind, parent: Entry) -> dict[str, Any]:
    """How an object created inside another names it: a comment its `commentable` (as the
    Comments API answers it), a requirement its feature, a key result its goal."""
    if kind.name == "comment":
        named: dict[str, Any] = {"type": parent.kind.name.title(), "id": parent.id}
        named.update({k: parent.data[k] for k in ("url", "resource") if k in parent.data})
        named["product_id"] = parent.product_id
        return {"commentable": named}
    return {parent.kind.name: {
        "id": parent.id, "reference_num": parent.ref, "name": parent.data.get("name"),
    }}


def _custom_fields(
    table: CustomTable | None, existing: list[dict[str, Any]], incoming: Any
) -> list[dict[str, Any]]:
    """Merge custom field values and answer them in Aha!'s list form.

    Aha! accepts an object keyed by field key or a list of `{"key", "value"}`, and always
    answers a list of `{"key", "name", "value", "type"}`. Custom table records are checked
    against their table's columns (`table`); other objects accept any key, since the sandbox
    has no per-product custom field definitions for them.
    """
    if isinstance(incoming, dict):
        pairs = list(incoming.items())
    elif isinstance(incoming, list) and all(
        isinstance(item, dict) and isinstance(item.get("key"), str) for item in incoming
    ):
        pairs = [(item["key"], item.get("value")) for item in incoming]
    else:
        raise ApiError(
            422, "Validation failed: Custom fields must be an object or a list of {key, value}"
        )
    values = {item["key"]: item["value"] for item in existing}
    for key, value in pairs:
        if table is not None:
            table.field(key)
        values[key] = value
    if table is not None:
        columns = [column for column in table.fields if column.key in values]
    else:
        columns = [CustomField(key, key, _value_type(values[key])) for key in values]
    return [
        {"key": column.key, "name": column.name, "value": values[column.key], "type": column.type}
        for column in columns
    ]


def _value_type(value: Any) -> str:
    """A plausible Aha! field type for a value sent to a field the sandbox has no definition of."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    return "string"
