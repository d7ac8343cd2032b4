"""The shape of one `streams` entry, declared for `--about` and the Hub.

A user writing `streams` by hand, or a UI building it, sees every key an entry may hold, its
type and what it does: the common keys, the template parameters (read off the catalog) and
the custom endpoint's keys. The declaration is published, not used to validate:
destination.py and custom.py check each entry and say what is wrong in the stream's own terms
(tests/test_settings.py holds both to the same keys). The SDK's typing makes every optional
key nullable; a null is refused by those checks where it means nothing.
"""

from __future__ import annotations

from singer_sdk import typing as th

from target_aha.custom import BATCH_ALGORITHMS, DEFAULT_BATCH_SIZE, METHODS
from target_aha.destination import UPDATE_FIELDS, WRITE_MODES
from target_aha.endpoints import CUSTOM, ENDPOINT_NAMES, TEMPLATES
from target_aha.wire import CONTENT_TYPES

REFERENCE = th.ObjectType(
    th.Property("ref", th.StringType, required=True,
                description="The configured stream whose record the value names."),
    th.Property("key", th.OneOf(th.StringType, th.IntegerType), required=True,
                description="That record's key: a literal, or text with {field} "
                "placeholders read from each record (those fields are not sent)."),
    additional_properties=False,
)
"""`{"ref": "<stream>", "key": "..."}`: the Aha! object another stream's record became (its
reference number, else its id), spec §12."""

PARAMETERS = tuple(dict.fromkeys(p for template in TEMPLATES.values() for p in template.params))
"""The template parameters a `streams` entry may set (each template takes some of them)."""

ENTRY_KEYS: dict[str, th.Property] = {
    prop.name: prop for prop in (
        th.Property(
            "endpoint", th.StringType(allowed_values=list(ENDPOINT_NAMES)), required=True,
            description=f"Where the stream's records go: a template, or `{CUSTOM}` (any Aha! "
            "endpoint, or another host with allow_other_hosts).",
        ),
        th.Property(
            "key_property", th.StringType,
            description="The record field that identifies it for upsert (default: the "
            "stream's key properties).",
        ),
        th.Property(
            "exclude_attributes", th.OneOf(th.ArrayType(th.StringType), th.StringType),
            description="Record fields never sent: a list, or names separated by commas.",
        ),
        th.Property(
            "request_headers",
            th.OneOf(th.StringType, th.ObjectType(additional_properties=th.StringType)),
            description="Extra headers: \"h1:v1,h2:v2\" or an object (never Authorization "
            "or Content-Type).",
        ),
        th.Property(
            "response_webhook_url", th.StringType,
            description="POST each Aha! response of this stream here (overrides the "
            "top-level setting).",
        ),
        th.Property(
            "references", th.ObjectType(additional_properties=REFERENCE),
            description="Body fields set by a reference to another stream's record: field "
            "name → {ref, key} (such as epic: {ref: jira_epics, key: \"{epic_key}\"}).",
        ),
        th.Property(
            "write_mode", th.StringType(allowed_values=list(WRITE_MODES)),
            description="upsert (the default for templates: keyed records through the "
            "ledger) or create (every record; the only mode of custom endpoints).",
        ),
        th.Property(
            "update_fields", th.StringType(allowed_values=list(UPDATE_FIELDS)),
            description="What an update of a changed record sends: changed (the default: "
            "only the fields that changed since the last run, so edits made in Aha! to "
            "other fields stay) or all (the whole body).",
        ),
        *(
            th.Property(
                param, th.OneOf(th.StringType, th.IntegerType, REFERENCE),
                description="Parameter of "
                + ", ".join(t.name for t in TEMPLATES.values() if param in t.params)
                + ": a literal, text with {field} placeholders read from each record, or "
                f"a reference {{ref, key}} (default: the record's {param} field).",
            )
            for param in PARAMETERS
        ),
        th.Property(
            "method", th.StringType(allowed_values=list(METHODS)),
            description=f"{CUSTOM}: the HTTP method (default POST).",
        ),
        th.Property(
            "url", th.StringType,
            description=f"{CUSTOM}: the endpoint's URL, relative to base_url or absolute; "
            "{field} placeholders fill path segments from each record.",
        ),
        th.Property(
            "content_format", th.StringType(allowed_values=list(CONTENT_TYPES)),
            description=f"{CUSTOM}: json (the default) or form (Rails-style keys).",
        ),
        th.Property(
            "wrap_key", th.StringType,
            description=f"{CUSTOM}: put the body under this key (such as feature).",
        ),
        th.Property(
            "allow_other_hosts", th.BooleanType,
            description=f"{CUSTOM}: allow a URL outside the Aha! account's host (the API key "
            "is never sent there).",
        ),
        th.Property(
            "batch",
            th.ObjectType(
                th.Property(
                    "size", th.IntegerType(minimum=1), default=DEFAULT_BATCH_SIZE,
                    description="Records per call.",
                ),
                th.Property(
                    "algorithm", th.StringType(allowed_values=list(BATCH_ALGORITHMS)),
                    default=BATCH_ALGORITHMS[0],
                    description="property: the records under property_name beside "
                    "other_props; code: the body is the result of an expression.",
                ),
                th.Property(
                    "property_name", th.StringType, default="records",
                    description="property: the key that holds the records.",
                ),
                th.Property(
                    "other_props", th.ObjectType(additional_properties=True),
                    description="property: other keys of the body, as they are.",
                ),
                th.Property(
                    "code", th.StringType,
                    description="code: an expression of `records` that makes the body.",
                ),
                additional_properties=False,
            ),
            description=f"{CUSTOM}: send records in batches, one call per batch.",
        ),
    )
}
"""What a `streams` entry may hold, by key."""
STREAM_ENTRY = th.ObjectType(*ENTRY_KEYS.values(), additional_properties=False)
"""A `streams` entry: the value of each stream's name in `streams`."""
