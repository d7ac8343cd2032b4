"""What target-aha knows of Aha!'s API beyond the catalog's rows, in one place.

The catalog (endpoints.py) says where each template writes; this module says how Aha!'s
answers and listings are shaped, as its API reference documents them: the object sits under
its singular wrapper key (`{"feature": {...}}`), lists under their plural key with a
`pagination` object, `q=`/`updated_since=`/`page=`/`per_page=` narrow a listing, a custom table
record carries its fields as `[{"key": ..., "value": ...}]`, objects are deleted at
`/<collection>/<id>`, and a few reads (`GET /me`, `GET /products/{id}`, ...) prove that the
key works or that a container exists. Upsert, preflight, the sinks and the ledger read it from
here, so a change in Aha!'s API is a change in this file.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from target_aha.endpoints import COMMENTABLE, TEMPLATES
from target_aha.errors import RecordError

if TYPE_CHECKING:
    from target_aha.wire import Answer, Request

logger = logging.getLogger("target-aha")

MAILERS_OFF: Mapping[str, str] = {"disable_mailers": "true"}
"""The query that keeps a write from e-mailing the object's watchers."""
PER_PAGE = 200
"""Items asked for per page of a listing (the most Aha! gives)."""
MAX_LIST_PAGES = 20
"""Bound on the pages of one container listing read while looking for a pending create."""


def text(value: object) -> str | None:
    """A value of an answer as text (ids are numbers or strings), None kept."""
    return None if value is None else str(value)


def object_in(data: Any, wrapper: str | None) -> dict[str, Any]:
    """The object inside an Aha! answer (`{"feature": {...}}` → the feature)."""
    if not isinstance(data, dict):
        return {}
    inner = data.get(wrapper) if wrapper else None
    if isinstance(inner, dict):
        return inner
    if len(data) == 1 and isinstance(only := next(iter(data.values())), dict):
        return only
    return data


def named_object(data: Any, wrapper: str | None) -> dict[str, Any] | None:
    """The object an answer names by its Aha! id, or None when it names none.

    A 2xx to a create is only proof of an object when it carries the object's id: an HTML
    page from a proxy, an empty body or `{"feature": {"name": "x"}}` says nothing about
    whether Aha! created anything, so the caller must treat the outcome as unknown.
    """
    obj = object_in(data, wrapper)
    ident = obj.get("id")
    if isinstance(ident, bool) or not isinstance(ident, (str, int)) or str(ident).strip() == "":
        return None
    return obj


def created_object(
    answer: Answer, request: Request, wrapper: str | None, *, where: str, keyed: bool
) -> dict[str, Any]:
    """The object a create's 2xx answer names; a RecordError (logged loudly) if none.

    Such an answer leaves the outcome unknown: the record is not a success (its STATE must
    not move silently, and it has no id to remember). A keyed record's pending mark stays in
    the ledger, so the next attempt looks for the object before creating it again.
    """
    obj = named_object(answer.data, wrapper)
    if obj is not None:
        return obj
    shown = answer.excerpt() or "an empty body"
    after = (
        "The key stays pending in the ledger: the next run looks for the object in its "
        "container before creating it again."
        if keyed
        else "Nothing marks this record pending (it has no key, there is no ledger, or the "
        "stream's write_mode is create), so target-aha cannot look for it later: check Aha! "
        "for the object before sending the record again."
    )
    message = (
        f"{request.describe()} answered {answer.status} but named no object (no id in the "
        f"answer, which began: {shown[:200]}), so whether Aha! created it is unknown. {after} "
        "Check that base_url is Aha!'s API (https://<subdomain>.aha.io/api/v1), not a proxy "
        "or a login page"
    )
    logger.warning("%s: %s", where, message)
    raise RecordError(message)


def listing_query(*, since: float | None, search: str | None) -> dict[str, str]:
    """The query of a container listing, narrowed where the caller knows the list takes it:
    `updated_since=` (objects touched since a time) and `q=` (a name search)."""
    query = {"per_page": str(PER_PAGE)}
    if since is not None:
        query["updated_since"] = dt.datetime.fromtimestamp(since, dt.timezone.utc).isoformat()
    if search is not None:
        query["q"] = search
    return query


def page_query(page: int) -> dict[str, str]:
    """The query part that asks for one page (numbered from 1) of a listing."""
    return {"page": str(page)}


def listed(data: Any) -> list[dict[str, Any]] | None:
    """The objects of a listing's answer (`{"features": [...], "pagination": ...}`): its
    first list, items with an id only; None when the answer is not a listing."""
    if not isinstance(data, dict):
        return None
    items = next((v for v in data.values() if isinstance(v, list)), [])
    return [o for o in items if isinstance(o, dict) and o.get("id") is not None]


def last_page(data: Any, page: int) -> bool:
    """Whether a listing's answer (a dict, see `listed`) is its last page (no `pagination`:
    a single page)."""
    pages = (data.get("pagination") or {}).get("total_pages") or 1
    return not isinstance(pages, int) or page >= pages


def pages(data: Any) -> int:
    """How many pages a listing's answer (a dict, see `listed`) says it has (1 when its
    `pagination` says nothing usable)."""
    total = (data.get("pagination") or {}).get("total_pages")
    return total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else 1


def carries(
    obj: Mapping[str, Any], fields: Mapping[str, Any], nest: str | None, same_by: str = "name"
) -> bool:
    """The listed object carries what a create sent: its `same_by` field (a name; a comment's
    body), or (`nest`, custom table records, which list their fields as
    `[{"key": ..., "value": ...}]`) its fields."""
    if nest is None:
        return obj.get(same_by) == fields.get(same_by)
    have = {f.get("key"): f.get("value") for f in obj.get(nest) or [] if isinstance(f, dict)}
    want = fields.get(nest) or {}
    return bool(want) and all(str(have.get(k)) == str(v) for k, v in want.items())


def created_at(obj: Mapping[str, Any]) -> float | None:
    """Aha!'s creation time of a listed object; None when it gives none (teams) or garbage."""
    when = obj.get("created_at")
    if not isinstance(when, str):
        return None
    try:
        return dt.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


COLLECTIONS: dict[str, str] = {
    t.path.rsplit("/", 1)[-1]: t.update_path.split("/")[-2]
    for t in TEMPLATES.values() if t.update_path is not None
}
"""The collection a created object lives in (as delete paths name it), by the last segment of
its create path: `.../features` makes `features`, `.../custom_objects/{key}/records` makes
`custom_object_records`."""


def collection_of(create_url: str) -> str:
    """The collection of the objects a create URL (or path) makes."""
    made = create_url.rstrip("/").rsplit("/", 1)[-1]
    return COLLECTIONS.get(made, made)


def object_path(path: str) -> tuple[str, str]:
    """(collection, id or reference number) of an object's path (`/epics/PRJ1-E-2`)."""
    head, _, ident = path.rstrip("/").rpartition("/")
    return head.rsplit("/", 1)[-1], unquote(ident)


ME_PATH = "/me"
"""The read that proves an API key works: it answers the key's user."""
ME_WRAPPER = "user"


@dataclass(frozen=True)
class Read:
    """How to check that a parameter names something that exists: one GET."""

    param: str
    kind: str
    path: str
    example: str
    query: tuple[tuple[str, str], ...] = ()
    listing: str | None = None
    """For a read that lists (a custom table's records): the key of the list it answers.
    Any other read answers its object under `kind` (`{"product": {"id": ...}}`)."""

    wrappers: tuple[str, ...] = ()
    """For a read whose collection is itself a parameter (a commented object): the wrappers
    its answer may carry, one per collection (`feature` for `/features/...`)."""

    @property
    def answer(self) -> str:
        """What a 2xx must carry to prove the object exists, for messages."""
        if self.listing:
            return f'a "{self.listing}" list'
        if self.wrappers:
            return f"one of {', '.join(self.wrappers)} with its id"
        return f"a {self.kind} with its id"

    def proves(self, data: Any) -> bool:
        """Whether a 2xx body is Aha!'s answer to this read, not a proxy's page or garbage."""
        if not isinstance(data, dict):
            return False
        if self.listing is not None:
            return isinstance(data.get(self.listing), list)
        wrapper = next((w for w in self.wrappers if w in data), None) or self.kind
        return isinstance(data.get(wrapper), dict) and named_object(data, wrapper) is not None


READS = (
    Read("product_id", "product", "/products/{product_id}", "its prefix such as PRJ1, or its id"),
    Read("release_id", "release", "/releases/{release_id}", "its reference such as PRJ1-R-1"),
    Read(
        "custom_table_key", "custom table",
        "/products/{product_id}/custom_objects/{custom_table_key}/records",
        "the table's API key as shown in Aha! (custom tables need an Enterprise+ plan)",
        (("per_page", "1"),), listing="custom_object_records",
    ),
    Read("epic_id", "epic", "/epics/{epic_id}", "its reference such as PRJ1-E-1"),
    Read("feature_id", "feature", "/features/{feature_id}", "its reference such as PRJ1-1"),
    Read("goal_id", "goal", "/goals/{goal_id}", "its reference such as PRJ1-G-1"),
    Read(
        "commentable_id", "commented object", "/{commentable_type}/{commentable_id}",
        "the reference of an object of commentable_type, such as PRJ1-1 for features",
        wrappers=tuple(c.removesuffix("s") for c in COMMENTABLE),
    ),
)
"""Per template parameter, the read that proves it names an existing object: the reads
aha-api.md documents (a commented object is read where its comments are posted, under its own
collection). Other parameters (initiative_id) are reported as not checked."""
