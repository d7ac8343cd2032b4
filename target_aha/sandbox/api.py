"""The /api/v1 routes: Aha!'s paths, validation and answers, on top of the Store.

Nothing here knows HTTP: a `Call` (method, decoded path segments, query, parsed body) goes in,
a status and a JSON payload come out, so the rules can be read in one place.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

from .store import KINDS, ApiError, Entry, Store, not_found

LOG = logging.getLogger(__name__)
Response = tuple[int, Any]

# Kinds whose create needs a non-empty name, as Aha! validates them.
NAMED_KINDS = frozenset(
    {"feature", "epic", "goal", "initiative", "team", "idea", "release", "requirement",
     "key_result"}
)
# Where comments are posted and listed (`/<plural>/{id}/comments`), by the commented kind.
COMMENTED_KINDS = ("feature", "epic", "requirement", "idea", "initiative", "goal", "release")
# Lists whose documented filters are `q` (name search) and `updated_since`; Aha! documents
# neither for goals and teams, so those lists ignore both and answer everything.
FILTERED_LISTS = frozenset({"feature", "epic", "initiative", "idea", "custom_object_record"})
SEARCHED_LISTS = FILTERED_LISTS - {"custom_object_record"}
ECHO = "echo"
"""First path segment of the catch-all that answers any request with what it received."""
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class Call:
    """One authenticated /api/v1 request, as the routes need it."""

    method: str
    segments: tuple[str, ...]  # decoded, after /api/v1
    query: Mapping[str, str]
    body: Any
    body_error: str | None  # why the body could not be decoded, if it could not
    forbidden: frozenset[str]  # upper-cased ids / prefixes of products the token may not touch
    relax_goal_validation: bool = False  # a goal needs only a name (a sandbox setting)


Handler = Callable[..., Response]


class AhaApi:
    """Routes a Call to the handler of its path and turns ApiError into Aha!'s error answer."""

    def __init__(self, store: Store) -> None:
        self._store = store
        show, update = self._show, self._update
        # (method, path pattern, handler); "*" captures one segment, passed to the handler.
        self._routes: list[tuple[str, tuple[str, ...], Handler]] = [
            ("GET", ("me",), self._me),
            ("GET", ("products", "*"), partial(show, "product")),
            ("GET", ("products", "*", "releases"), partial(self._list_in_product, "release")),
            ("POST", ("products", "*", "releases"), partial(self._create_in_product, "release")),
            ("GET", ("products", "*", "releases", "*"), partial(self._show_in_product, "release")),
            ("PUT", ("products", "*", "releases", "*"),
             partial(self._update_in_product, "release")),
            ("GET", ("products", "*", "epics"), partial(self._list_in_product, "epic")),
            ("POST", ("products", "*", "epics"), partial(self._create_in_product, "epic")),
            ("GET", ("products", "*", "goals"), partial(self._list_in_product, "goal")),
            ("POST", ("products", "*", "goals"), partial(self._create_in_product, "goal")),
            ("GET", ("products", "*", "goals", "*"), partial(self._show_in_product, "goal")),
            ("PUT", ("products", "*", "goals", "*"), partial(self._update_in_product, "goal")),
            ("GET", ("products", "*", "initiatives"), partial(self._list_in_product, "initiative")),
            ("POST", ("products", "*", "initiatives"),
             partial(self._create_in_product, "initiative")),
            ("GET", ("products", "*", "initiatives", "*"),
             partial(self._show_in_product, "initiative")),
            ("PUT", ("products", "*", "initiatives", "*"),
             partial(self._update_in_product, "initiative")),
            ("GET", ("products", "*", "ideas"), partial(self._list_in_product, "idea")),
            ("POST", ("products", "*", "ideas"), partial(self._create_in_product, "idea")),
            ("GET", ("products", "*", "custom_objects", "*", "records"), self._list_records),
            ("POST", ("products", "*", "custom_objects", "*", "records"), self._create_record),
            ("GET", ("releases", "*"), partial(show, "release")),
            ("GET", ("releases", "*", "features"), partial(self._list_in_release, "feature")),
            ("POST", ("releases", "*", "features"), partial(self._create_in_release, "feature")),
            ("GET", ("releases", "*", "epics"), partial(self._list_in_release, "epic")),
            ("POST", ("releases", "*", "epics"), partial(self._create_in_release, "epic")),
            ("GET", ("epics", "*"), partial(show, "epic")),
            ("PUT", ("epics", "*"), partial(update, "epic")),
            ("DELETE", ("epics", "*"), partial(self._delete, "epic")),
            ("GET", ("features", "*"), partial(show, "feature")),
            ("PUT", ("features", "*"), partial(update, "feature")),
            # Goals and initiatives are read here, but only updated through their product.
            ("GET", ("goals", "*"), partial(show, "goal")),
            ("GET", ("initiatives", "*"), partial(show, "initiative")),
            ("GET", ("ideas", "*"), partial(show, "idea")),
            ("PUT", ("ideas", "*"), partial(update, "idea")),
            ("GET", ("features", "*", "requirements"),
             partial(self._list_in_parent, "feature", "requirement")),
            ("POST", ("features", "*", "requirements"),
             partial(self._create_in_parent, "feature", "requirement")),
            ("GET", ("requirements", "*"), partial(show, "requirement")),
            ("PUT", ("requirements", "*"), partial(update, "requirement")),
            ("GET", ("goals", "*", "key_results"),
             partial(self._list_in_parent, "goal", "key_result")),
            ("POST", ("goals", "*", "key_results"),
             partial(self._create_in_parent, "goal", "key_result")),
            ("GET", ("key_results", "*"), partial(show, "key_result")),
            ("PUT", ("key_results", "*"), partial(update, "key_result")),
            ("GET", ("comments", "*"), partial(show, "comment")),
            ("PUT", ("comments", "*"), partial(update, "comment")),
            ("GET", ("custom_object_records", "*"), partial(show, "custom_object_record")),
            ("PUT", ("custom_object_records", "*"), partial(update, "custom_object_record")),
            ("GET", ("teams",), self._list_teams),
            ("POST", ("teams",), self._create_team),
            ("GET", ("teams", "*"), partial(show, "team")),
            ("PUT", ("teams", "*"), partial(update, "team")),
        ]
        for commented in COMMENTED_KINDS:
            where = (KINDS[commented].plural, "*", "comments")
            self._routes += [
                ("GET", where, partial(self._list_in_parent, commented, "comment")),
                ("POST", where, partial(self._create_in_parent, commented, "comment")),
            ]
        # Aha! is a Rails app: every update route takes PATCH as well as PUT.
        self._routes += [
            ("PATCH", pattern, handler)
            for method, pattern, handler in list(self._routes)
            if method == "PUT"
        ]

    def handle(self, call: Call) -> Response:
        """Answer the call; an unknown route is a 404 like an unknown object."""
        if call.segments[:1] == (ECHO,):
            return _echo(call)
        for method, pattern, handler in self._routes:
            if method == call.method and _matches(pattern, call.segments):
                args = [
                    segment
                    for part, segment in zip(pattern, call.segments, strict=True)
                    if part == "*"
                ]
                try:
                    with self._store.lock:
                        return handler(call, *args)
                except ApiError as error:
                    return error.status, error.payload()
                except Exception:
                    # A sandbox bug must still answer (and settle the log), not kill the thread.
                    LOG.exception("sandbox error on %s /%s", call.method, "/".join(call.segments))
                    return 500, {"errors": {"message": "Internal server error (sandbox bug)"}}
        return 404, not_found().payload()

    # -- reads -----------------------------------------------------------------------------

    def _me(self, _call: Call) -> Response:
        return 200, {"user": dict(self._store.user)}

    def _show(self, kind: str, call: Call, key: str) -> Response:
        return 200, {kind: self._store.public(self._visible(call, kind, key))}

    def _show_in_product(self, kind: str, call: Call, product_key: str, key: str) -> Response:
        return 200, {kind: self._store.public(self._in_product(call, kind, product_key, key))}

    def _list_in_product(self, kind: str, call: Call, product_key: str) -> Response:
        product = self._visible(call, "product", product_key)
        return self._page(
            call, kind, self._store.entries(kind, lambda e: e.product_id == product.id)
        )

    def _list_in_release(self, kind: str, call: Call, release_key: str) -> Response:
        release = self._visible(call, "release", release_key)
        return self._page(
            call, kind, self._store.entries(kind, lambda e: e.container_id == release.id)
        )

    def _list_in_parent(self, parent_kind: str, kind: str, call: Call, parent_key: str) -> Response:
        parent = self._visible(call, parent_kind, parent_key)
        return self._page(
            call, kind, self._store.entries(kind, lambda e: e.container_id == parent.id)
        )

    def _list_records(self, call: Call, product_key: str, table_key: str) -> Response:
        product = self._visible(call, "product", product_key)
        table = self._store.table(product, table_key)
        records = self._store.entries(
            "custom_object_record",
            lambda e: e.product_id == product.id and e.container_id == table.key,
        )
        return self._page(call, "custom_object_record", records)

    def _list_teams(self, call: Call) -> Response:
        return self._page(call, "team", self._store.entries("team"))

    # -- writes ----------------------------------------------------------------------------

    def _create_in_release(self, kind: str, call: Call, release_key: str) -> Response:
        release = self._visible(call, "release", release_key)
        product = self._store.get("product", release.product_id or "")
        entry = self._store.create(
            kind, _fields(call, kind, creating=True), product=product, release=release
        )
        return 200, {kind: self._store.public(entry)}

    def _create_in_product(self, kind: str, call: Call, product_key: str) -> Response:
        product = self._visible(call, "product", product_key)
        release = self._store.default_release(product) if kind == "epic" else None
        entry = self._store.create(
            kind, _fields(call, kind, creating=True), product=product, release=release
        )
        return 200, {kind: self._store.public(entry)}

    def _create_in_parent(
        self, parent_kind: str, kind: str, call: Call, parent_key: str
    ) -> Response:
        """A requirement in its feature, a key result in its goal, a comment on its object."""
        parent = self._visible(call, parent_kind, parent_key)
        product = self._store.find("product", parent.product_id or "")
        entry = self._store.create(
            kind, _fields(call, kind, creating=True), product=product, parent=parent
        )
        return 200, {kind: self._store.public(entry)}

    def _create_record(self, call: Call, product_key: str, table_key: str) -> Response:
        product = self._visible(call, "product", product_key)
        table = self._store.table(product, table_key)
        kind = "custom_object_record"
        entry = self._store.create(
            kind, _fields(call, kind, creating=True), product=product, table=table
        )
        return 200, {kind: self._store.public(entry)}

    def _create_team(self, call: Call) -> Response:
        entry = self._store.create("team", _fields(call, "team", creating=True), product=None)
        return 200, {"team": self._store.public(entry)}

    def _update(self, kind: str, call: Call, key: str) -> Response:
        entry = self._visible(call, kind, key)
        self._store.update(entry, _fields(call, kind, creating=False))
        return 200, {kind: self._store.public(entry)}

    def _update_in_product(self, kind: str, call: Call, product_key: str, key: str) -> Response:
        entry = self._in_product(call, kind, product_key, key)
        self._store.update(entry, _fields(call, kind, creating=False))
        return 200, {kind: self._store.public(entry)}

    def _delete(self, kind: str, call: Call, key: str) -> Response:
        self._store.delete(self._visible(call, kind, key))
        return 204, None

    # -- helpers ---------------------------------------------------------------------------

    def _visible(self, call: Call, kind: str, key: str) -> Entry:
        """The object, 404 if unknown, 403 if it belongs to a product the token may not use."""
        entry = self._store.get(kind, key)
        product = self._store.find("product", entry.product_id or "")
        if product is not None and (
            product.id.upper() in call.forbidden or (product.ref or "").upper() in call.forbidden
        ):
            raise ApiError(403, "You do not have permission to access this product")
        return entry

    def _in_product(self, call: Call, kind: str, product_key: str, key: str) -> Entry:
        """An object addressed through its product's path; another product's object is 404."""
        product = self._visible(call, "product", product_key)
        entry = self._store.get(kind, key)
        if entry.product_id != product.id:
            raise not_found()
        return entry

    def _page(self, call: Call, kind: str, entries: list[Entry]) -> Response:
        """Aha!'s list answer: `q` and `updated_since` filters where Aha! documents them (other
        lists ignore them), then one page of short items."""
        needle = call.query.get("q", "").lower() if kind in SEARCHED_LISTS else ""
        if needle:
            entries = [entry for entry in entries if needle in _searchable(entry)]
        if "updated_since" in call.query and kind in FILTERED_LISTS:
            since = _parse_time(call.query["updated_since"])
            entries = [entry for entry in entries if entry.updated >= since]
        per_page = min(MAX_PER_PAGE, max(1, _int(call.query.get("per_page"), DEFAULT_PER_PAGE)))
        page = max(1, _int(call.query.get("page"), 1))
        chunk = entries[(page - 1) * per_page : page * per_page]
        return 200, {
            KINDS[kind].plural: [self._store.list_item(entry) for entry in chunk],
            "pagination": {
                "total_records": len(entries),
                "total_pages": math.ceil(len(entries) / per_page),
                "current_page": page,
            },
        }


def _echo(call: Call) -> Response:
    """/api/v1/echo/...: any method, any body; answers what it received (not an Aha! route).

    For endpoints the sandbox does not model (custom endpoints, batch bodies). The hooks work
    as on writes: a FAIL-400 / FAIL-422 string anywhere in the body answers 400 / 422.
    """
    for status, problem in (
        (400, call.body_error),
        (400, _contains(call.body, "FAIL-400") and "Bad request (the FAIL-400 test hook)"),
        (422, _contains(call.body, "FAIL-422") and "Validation failed (the FAIL-422 test hook)"),
    ):
        if problem:
            return status, ApiError(status, problem).payload()
    echo = {"method": call.method, "path": "/".join(call.segments), "query": dict(call.query),
            "body": call.body}
    return 200, {"echo": echo}


def _matches(pattern: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    return len(pattern) == len(segments) and all(
        part in ("*", segment) for part, segment in zip(pattern, segments, strict=True)
    )


def _fields(call: Call, kind: str, *, creating: bool) -> dict[str, Any]:
    """The object inside the body's wrapper, validated the way Aha! validates it."""
    if call.body_error is not None:
        raise ApiError(400, call.body_error)
    body = call.body
    if not isinstance(body, dict):
        raise ApiError(400, f"Request body must be a JSON object with a '{kind}' key")
    fields = body.get(kind)
    if not isinstance(fields, dict):
        raise ApiError(400, f"param is missing or the value is empty: {kind}")
    if _contains(body, "FAIL-400"):
        raise ApiError(400, "Bad request (the FAIL-400 test hook)")
    if fields.get("name") == "FAIL-422":
        raise ApiError(422, "Validation failed: Name is invalid (the FAIL-422 test hook)")
    if kind in NAMED_KINDS and (creating or "name" in fields) and _blank(fields.get("name")):
        raise ApiError(422, "Validation failed: Name can't be blank")
    if kind == "comment" and (creating or "body" in fields) and _blank(fields.get("body")):
        raise ApiError(422, "Validation failed: Body can't be blank")
    if kind == "goal" and creating and not call.relax_goal_validation:
        _check_goal(fields)
    if (
        kind == "custom_object_record"
        and (creating or "custom_fields" in fields)
        and not isinstance(fields.get("custom_fields"), (dict, list))
    ):
        raise ApiError(422, "Validation failed: Custom fields can't be blank")
    return copy.deepcopy(fields)


def _check_goal(fields: dict[str, Any]) -> None:
    """What Aha!'s reference marks required on a goal's create, beyond its name.

    The success metric comes as `success_metric_name` / `success_metric_description` or, as
    the reference's examples send it, `success_metric: {"name", "description"}`.
    """
    metric = fields.get("success_metric")
    metric = metric if isinstance(metric, dict) else {}
    status = fields.get("workflow_status")
    missing = [
        label
        for label, value in (
            ("Success metric name", fields.get("success_metric_name", metric.get("name"))),
            ("Success metric description",
             fields.get("success_metric_description", metric.get("description"))),
            ("Workflow status", status.get("name") if isinstance(status, dict) else status),
        )
        if _blank(value)
    ]
    if missing:
        raise ApiError(
            422, "Validation failed: " + ", ".join(f"{label} can't be blank" for label in missing)
        )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _contains(value: Any, needle: str) -> bool:
    """Whether `needle` is any string value anywhere inside `value`."""
    if isinstance(value, dict):
        return any(_contains(item, needle) for item in value.values())
    if isinstance(value, list):
        return any(_contains(item, needle) for item in value)
    return value == needle


def _searchable(entry: Entry) -> str:
    """What `q=` searches: the name, or for custom table records every field value."""
    if entry.kind.name == "custom_object_record":
        values = [item["value"] for item in entry.data.get("custom_fields", [])]
        return "\n".join(str(value) for value in values if value is not None).lower()
    return str(entry.data.get("name") or "").lower()


def _parse_time(text: str) -> datetime:
    """An ISO-8601 date or date-time (`Z` allowed); no zone means UTC. Garbage is a 400."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"Invalid updated_since: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _int(text: str | None, default: int) -> int:
    """A paging parameter; Aha! ignores ones that are not integers."""
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
