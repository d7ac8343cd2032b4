"""Where a stream goes: a stream's entry in `streams`, checked and resolved once at start-up.

The target turns each configured entry (or a stream named after a template) into a
`Destination`, so that a typo in the configuration is reported before any record is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from target_aha import placeholders
from target_aha.custom import CUSTOM_KEYS, Custom, parse_custom
from target_aha.endpoints import CUSTOM, ENDPOINT_NAMES, TEMPLATES, Template
from target_aha.errors import ConfigError, RecordError
from target_aha.redact import REDACTOR
from target_aha.urls import check_header, parse_http_url

PROTECTED_HEADERS = frozenset({"authorization", "content-type"})
COMMON_KEYS = frozenset(
    {
        "endpoint",
        "key_property",
        "exclude_attributes",
        "request_headers",
        "response_webhook_url",
        "write_mode",
        "update_fields",
        "references",
    }
)
WRITE_MODES = ("upsert", "create")
UPDATE_FIELDS = ("changed", "all")
"""What a changed record's update sends (spec §13): only the fields whose digest changed
(the default: edits made in Aha! to other fields stay), or the whole body."""


@dataclass(frozen=True)
class Pattern:
    """A parameter value: a literal, or text with `{field}` placeholders that read the record."""

    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, value: object, where: str) -> Pattern:
        """Parse a configured value; `where` names it in the error message."""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(f"{where} must be a string or a number, got {value!r}.")
        try:
            parsed = placeholders.split(str(value))
        except ValueError as exc:
            raise ConfigError(
                f"{where} = {value!r} is not a valid value ({exc}). Use a literal such as "
                '"PRJ1-R-1" or a placeholder such as "{release_field}".'
            ) from exc
        return cls(tuple((lit, name or None) for lit, name in parsed))

    @property
    def fields(self) -> frozenset[str]:
        """Record fields this value reads (they are consumed: not sent in the body)."""
        return frozenset(name for _, name in self.parts if name)

    def render(self, record: Mapping[str, Any], param: str, reader: str = "") -> str:
        """The value for one record; a missing or unusable field rejects the record.

        `reader` names what reads the field in messages (default: the parameter `param`).
        """
        fix = "change the reference's key" if reader else (
            f"set '{param}' in the stream's entry of `streams`")
        reader = reader or f"parameter '{param}'"
        out = []
        for literal, name in self.parts:
            out.append(literal)
            if name is None:
                continue
            value = record.get(name)
            if value is None or value == "":
                raise RecordError(
                    f"{reader} reads the record field '{name}', which is missing "
                    f"or empty; give every record a '{name}' or {fix}"
                )
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise RecordError(
                    f"{reader} reads the record field '{name}', whose value "
                    f"{value!r} is not a string or an integer"
                )
            out.append(str(value))
        return "".join(out)


@dataclass(frozen=True)
class Ref:
    """A value that names the Aha! object another stream's record became (spec §12).

    `{"ref": "<stream>", "key": "<literal or {field} template>"}`: the key template is read
    like a parameter (its fields are consumed, not sent); what the key became is looked up in
    the key ledger when the record is sent (references.py).
    """

    stream: str
    key: Pattern

    @classmethod
    def parse(cls, value: Mapping[str, Any], where: str) -> Ref:
        """Parse a `{ref, key}` object; `where` names it in the error message."""
        unknown = sorted(set(value) - {"ref", "key"})
        stream = value.get("ref")
        if unknown or not isinstance(stream, str) or not stream or "key" not in value:
            raise ConfigError(
                f"{where} must be a reference such as "
                '{"ref": "jira_epics", "key": "{epic_key}"}: "ref" names a configured '
                'stream, "key" the key of its record (a literal or {field} template)'
                + (f"; unknown key(s) {', '.join(unknown)}" if unknown else "") + "."
            )
        return cls(stream, Pattern.parse(value["key"], f"{where}.key"))


def is_ref(value: object) -> bool:
    """Whether a configured value is a reference (an object: `{ref, key}`), not a literal."""
    return isinstance(value, Mapping)


@dataclass(frozen=True)
class Destination:
    """A stream's resolved destination: the template, its parameters and the options.

    A custom endpoint gets a template row of its own (name `custom`, its method, its URL's
    path, `wrap_key` as wrapper) so parameters, consumed fields and results work alike, and
    `custom` holds the rest of its settings. Custom endpoints are never upserted
    (`write_mode` is `create`): the ledger does not know how to update what they create.
    """

    stream: str
    template: Template
    params: Mapping[str, Pattern]
    exclude: frozenset[str] = frozenset()
    headers: Mapping[str, str] = field(default_factory=dict)
    key_property: str | None = None
    webhook_url: str | None = None
    write_mode: str = "upsert"
    update_fields: str = "changed"
    custom: Custom | None = None
    refs: Mapping[str, Ref] = field(default_factory=dict)
    """Template parameters set by a reference (they are not in `params`)."""
    references: Mapping[str, Ref] = field(default_factory=dict)
    """Body fields set by a reference (the stream's `references`)."""

    @property
    def endpoint(self) -> str:
        """The `endpoint` name, as written in results lines."""
        return self.template.name

    @property
    def consumed(self) -> frozenset[str]:
        """Record fields read by URL placeholders and reference keys: never sent in the body."""
        return frozenset().union(
            *(p.fields for p in self.params.values()),
            *(r.key.fields for r in (*self.refs.values(), *self.references.values())),
        )

    @property
    def parents(self) -> frozenset[str]:
        """The streams this stream's references name."""
        return frozenset(r.stream for r in (*self.refs.values(), *self.references.values()))

    @classmethod
    def from_entry(
        cls, stream: str, entry: Mapping[str, Any] | None, base_url: str = ""
    ) -> Destination:
        """Resolve a `streams` entry (None: the stream is named after a template).

        `base_url` is the API root: a custom endpoint's URL is resolved against it.
        """
        where = f"streams.{stream}"
        if entry is None:
            if stream not in TEMPLATES:
                raise unmapped_stream(stream)
            entry = {"endpoint": stream}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be an object such as {{\"endpoint\": ...}}.")
        name = entry.get("endpoint")
        custom = None
        if name == CUSTOM:
            allowed = (COMMON_KEYS - {"write_mode"}) | CUSTOM_KEYS
            _check_keys(entry, allowed, where, name)
            custom = parse_custom(entry, where, base_url)
            template = Template(CUSTOM, custom.method, custom.path, custom.wrap_key)
        elif name in TEMPLATES:
            template = TEMPLATES[name]
            _check_keys(entry, COMMON_KEYS | set(template.params), where, name)
        else:
            raise ConfigError(
                f"{where}.endpoint is {name!r}; it must be one of: {', '.join(ENDPOINT_NAMES)}."
            )
        write_mode = entry.get("write_mode", "create" if custom else "upsert")
        if write_mode not in WRITE_MODES:
            raise ConfigError(
                f"{where}.write_mode must be 'upsert' or 'create', not {write_mode!r}."
            )
        update_fields = entry.get("update_fields", "changed")
        if update_fields not in UPDATE_FIELDS:
            raise ConfigError(
                f"{where}.update_fields must be 'changed' or 'all', not {update_fields!r}."
            )
        key_property = entry.get("key_property")
        if key_property is not None and not isinstance(key_property, str):
            raise ConfigError(f"{where}.key_property must be a field name (a string).")
        webhook = parse_webhook_url(entry.get("response_webhook_url"),
                                    f"{where}.response_webhook_url")
        # A custom URL's placeholders always read the record (its entry has no parameters).
        settings = {} if custom else entry
        refs = {p: Ref.parse(settings[p], f"{where}.{p}")
                for p in template.params if is_ref(settings.get(p))}
        references = parse_references(entry.get("references"), f"{where}.references")
        if references and custom is not None and custom.batch is not None:
            raise ConfigError(
                f"{where}.references: a batched custom endpoint sends many records in one "
                "call, so its records cannot wait for their parents one by one; remove "
                "`batch` or `references`."
            )
        return cls(
            stream=stream,
            template=template,
            params={
                p: Pattern.parse(settings.get(p, "{" + p + "}"), f"{where}.{p}")
                for p in template.params if p not in refs
            },
            exclude=frozenset(
                parse_list(entry.get("exclude_attributes"), f"{where}.exclude_attributes")
            ),
            headers=parse_headers(entry.get("request_headers"), f"{where}.request_headers"),
            key_property=key_property,
            webhook_url=webhook,
            write_mode=write_mode,
            update_fields=update_fields,
            custom=custom,
            refs=refs,
            references=references,
        )


def parse_references(value: object, where: str) -> dict[str, Ref]:
    """`references`: body field name → `{ref, key}` (the field is set to what the key became)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f'{where} must be an object such as {{"epic": {{"ref": "jira_epics", '
            '"key": "{epic_key}"}}: a body field name, then the reference that sets it.'
        )
    refs = {}
    for name, ref in value.items():
        if not isinstance(ref, Mapping):
            raise ConfigError(f"{where}.{name} must be an object {{ref, key}}, got {ref!r}.")
        refs[str(name)] = Ref.parse(ref, f"{where}.{name}")
    return refs


def _check_keys(entry: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str,
                name: str) -> None:
    """Unknown keys in an entry are typos: name them and list what the endpoint takes."""
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(
            f"{where} has unknown setting(s) {', '.join(unknown)}; the endpoint "
            f"'{name}' takes: {', '.join(sorted(allowed))}."
        )


def unmapped_stream(stream: str) -> ConfigError:
    """The error for a stream that has no entry in `streams` and is not a template name."""
    return ConfigError(
        f"Stream '{stream}' has no destination. Add it to the `streams` setting, for example "
        f'"streams": {{"{stream}": {{"endpoint": "create_feature", "release_id": "PRJ1-R-1"}}}}, '
        "or rename it with a stream map to one of the template names: "
        f"{', '.join(TEMPLATES)} (or use endpoint 'custom')."
    )


def parse_webhook_url(value: object, where: str) -> str | None:
    """`response_webhook_url`: an https URL (plain http only for loopback hosts).

    Its secret-looking query values are registered with the redactor: only the webhook's
    own requests carry them.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a URL such as https://hooks.example.com/aha.")
    REDACTOR.add_url(value)
    parse_http_url(value, where, ", such as https://hooks.example.com/aha")
    return value


def parse_list(value: object, where: str) -> list[str]:
    """A list of names, given as a JSON list or as a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where} must be a list of field names, got {value!r}.")


def parse_headers(value: object, where: str) -> dict[str, str]:
    """`request_headers` as `"h1:v1,h2:v2"` or an object; never Authorization/Content-Type.

    Values of credential-looking headers are registered with the redactor; a name or value
    that is not a valid header (a line break, a control character) is a ConfigError that
    never shows the value.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        pairs = []
        for number, item in enumerate(value.split(","), start=1):
            header, sep, header_value = item.partition(":")
            if not sep or not header.strip():
                raise ConfigError(
                    f"{where}: item {number} is not of the form 'Header-Name:value' (its "
                    'text is not shown, it may be a secret); write several as "h1:v1,h2:v2" '
                    "or as an object."
                )
            pairs.append((header.strip(), header_value.strip()))
    elif isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        raise ConfigError(f"{where} must be a string 'h1:v1,h2:v2' or an object.")
    REDACTOR.add_headers(pairs)
    for header, header_value in pairs:
        check_header(header, header_value, where)
        if header.lower() in PROTECTED_HEADERS:
            raise ConfigError(
                f"{where} may not set {header}: target-aha sets it (Authorization from "
                "api_key, Content-Type from the content format)."
            )
    return dict(pairs)
