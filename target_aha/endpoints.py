"""The catalog of Aha! write templates: one row per template, nothing else.

Everything that differs between the templates (the eleven of 0.1.0 and the six added after it)
is data in this table. Sinks, shaping and the ledger read it; adding a template is one more row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from target_aha import placeholders

CUSTOM = "custom"
"""The `endpoint` value of the manual configuration (any Aha! endpoint)."""

COMMENTABLE: tuple[str, ...] = (
    "features", "epics", "requirements", "ideas", "initiatives", "goals", "releases",
)
"""The collections whose objects take comments (`POST /<collection>/{id}/comments`), as
Aha!'s Comments API lists them: the allowed values of `create_comment`'s `commentable_type`."""


@dataclass(frozen=True)
class Template:
    """One Aha! write endpoint as target-aha uses it.

    `wrapper` is the singular resource key Aha! expects around the record (None: no body).
    `nest` names a key the record is placed under inside the wrapper (custom table records
    carry their fields under `custom_fields`). `update_path` is where an upsert sends a
    changed record (`{id}` is the Aha! id, other placeholders come from the create's
    parameters); `list_path` is the container listing used to find an object again.
    What that listing offers, as Aha!'s reference documents it: `list_search` (it takes
    `q=`, a name search), `list_since` (it takes `updated_since=`), `list_dated` (its items
    carry `created_at`; teams and custom table records do not, so crash recovery notes which
    same-named objects existed before a create instead). `same_by` is the field that tells a
    listed object for the one a lost create made: its name, or for comments (which have none)
    their body; the listing is the container's own, so the container matches too. `choices`
    limits a parameter to a few values (a record with another value is rejected).
    """

    name: str
    method: str
    path: str
    wrapper: str | None
    nest: str | None = None
    update_path: str | None = None
    list_path: str | None = None
    list_search: bool = False
    list_since: bool = False
    list_dated: bool = True
    same_by: str = "name"
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()
    params: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", placeholders.names(self.path))

    @property
    def operation(self) -> str:
        """The results file's `operation` for a plain call of this template."""
        if self.name == CUSTOM:
            return CUSTOM
        return {"POST": "create", "PUT": "update", "DELETE": "delete"}[self.method]


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "create_feature", "POST", "/releases/{release_id}/features", "feature",
            update_path="/features/{id}", list_path="/releases/{release_id}/features",
            list_search=True, list_since=True,
        ),
        Template(
            "create_epic", "POST", "/releases/{release_id}/epics", "epic",
            update_path="/epics/{id}", list_path="/releases/{release_id}/epics",
            list_search=True, list_since=True,
        ),
        Template(
            "create_epic_in_default_release", "POST", "/products/{product_id}/epics", "epic",
            update_path="/epics/{id}", list_path="/products/{product_id}/epics",
            list_search=True, list_since=True,
        ),
        Template("update_epic", "PUT", "/epics/{epic_id}", "epic"),
        Template("delete_epic", "DELETE", "/epics/{epic_id}", None),
        Template(
            "create_goal", "POST", "/products/{product_id}/goals", "goal",
            update_path="/products/{product_id}/goals/{id}",
            list_path="/products/{product_id}/goals",
        ),
        Template("update_goal", "PUT", "/products/{product_id}/goals/{goal_id}", "goal"),
        Template(
            "create_initiative", "POST", "/products/{product_id}/initiatives", "initiative",
            update_path="/products/{product_id}/initiatives/{id}",
            list_path="/products/{product_id}/initiatives",
            list_search=True, list_since=True,
        ),
        Template(
            "update_initiative", "PUT",
            "/products/{product_id}/initiatives/{initiative_id}", "initiative",
        ),
        Template(
            "create_custom_table_record", "POST",
            "/products/{product_id}/custom_objects/{custom_table_key}/records",
            "custom_object_record", nest="custom_fields",
            update_path="/custom_object_records/{id}",
            list_path="/products/{product_id}/custom_objects/{custom_table_key}/records",
            list_since=True, list_dated=False,
        ),
        Template(
            "create_team", "POST", "/teams", "team",
            update_path="/teams/{id}", list_path="/teams", list_dated=False,
        ),
        # The six of contract section 11.
        Template("update_feature", "PUT", "/features/{feature_id}", "feature"),
        Template(
            "create_requirement", "POST", "/features/{feature_id}/requirements", "requirement",
            update_path="/requirements/{id}", list_path="/features/{feature_id}/requirements",
        ),
        Template(
            "create_release", "POST", "/products/{product_id}/releases", "release",
            update_path="/products/{product_id}/releases/{id}",
            list_path="/products/{product_id}/releases",
        ),
        Template(
            "create_idea", "POST", "/products/{product_id}/ideas", "idea",
            update_path="/ideas/{id}", list_path="/products/{product_id}/ideas",
            list_search=True, list_since=True,
        ),
        Template(
            "create_key_result", "POST", "/goals/{goal_id}/key_results", "key_result",
            update_path="/key_results/{id}", list_path="/goals/{goal_id}/key_results",
        ),
        Template(
            "create_comment", "POST", "/{commentable_type}/{commentable_id}/comments", "comment",
            update_path="/comments/{id}",
            list_path="/{commentable_type}/{commentable_id}/comments",
            same_by="body", choices=(("commentable_type", COMMENTABLE),),
        ),
    )
}

ENDPOINT_NAMES: tuple[str, ...] = (*TEMPLATES, CUSTOM)
