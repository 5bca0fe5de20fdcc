"""The Elasticsearch index body (settings + mappings) of an item index, from mappings/*.json.

The JSON file is the mapping as Elasticsearch sees it, with placeholders that are filled in
from the config and the model's schema at index time:

- a string value `"{{shards}}"` / `"{{replicas}}"` is replaced by the configured number;
- a key `"{{keyword_fields}}"` / `"{{date_fields}}"` / `"{{number_fields}}"` /
  `"{{feature_fields}}"` under `mappings.properties` is a template expanded into one entry
  per field of that group of the schema (indexer.backend.IndexSchema).

Anything else is passed through unchanged, so the file can be tuned (e.g. more settings)
without touching code. Building is a pure function of (file contents, schema, settings).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import mappings

from .backend import SCHEMA_GROUPS, IndexSchema
from .errors import IndexerError
from .settings import ElasticsearchSettings

MAPPINGS_DIR = Path(mappings.__file__).resolve().parent
ITEMS_MAPPING = MAPPINGS_DIR / "items.json"

_VALUE_PLACEHOLDERS = ("{{shards}}", "{{replicas}}")
_FIELD_PLACEHOLDERS = {
    "{{keyword_fields}}": "keyword_fields",
    "{{date_fields}}": "date_fields",
    "{{number_fields}}": "number_fields",
    "{{feature_fields}}": "feature_fields",
}


class MappingError(IndexerError):
    """The mapping file or the schema cannot make a valid index body."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(
            f"{where}: {problem}",
            hint="fix mappings/items.json or the model's field names",
        )
        self.where = where
        self.problem = problem


def load_template(path: str | Path = ITEMS_MAPPING) -> dict[str, Any]:
    """The parsed mapping template file (errors name the file and line)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise MappingError(str(p), "mapping file not found (is the package installed whole?)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MappingError(f"{p}:{e.lineno}", f"invalid JSON: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mappings"), dict):
        raise MappingError(str(p), "expected an object with a 'mappings' object")
    return data


def _check_field_names(schema: IndexSchema) -> None:
    seen: dict[str, str] = {"id": "id"}
    for group in SCHEMA_GROUPS:
        for name in getattr(schema, group):
            if not name or name.startswith("_"):
                # Leading underscores are Elasticsearch's metadata fields (_id, _source ...).
                raise MappingError(f"schema.{group}", f"field name {name!r} is not allowed")
            if name in seen:
                raise MappingError(
                    f"schema.{group}", f"field {name!r} is also in {seen[name]}"
                )
            seen[name] = group


def _fill_values(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _fill_values(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_values(v, values) for v in node]
    if isinstance(node, str) and node.startswith("{{") and node.endswith("}}"):
        if node not in values:
            raise MappingError("mapping template", f"unknown placeholder {node}")
        return values[node]
    return node


def build_index_body(
    schema: IndexSchema,
    settings: ElasticsearchSettings,
    template: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """{"settings": ..., "mappings": ...} for `indices.create` of an index with this schema.

    `template` defaults to mappings/items.json; `meta` becomes the mapping's `_meta`.
    """
    _check_field_names(schema)
    tpl = copy.deepcopy(template if template is not None else load_template())
    if settings.shards < 1 or settings.replicas < 0:
        raise MappingError("[index.elasticsearch]", "shards must be >= 1 and replicas >= 0")

    props_in = tpl["mappings"].get("properties", {})
    props: dict[str, Any] = {}
    expanded: set[str] = set()
    for key, spec in props_in.items():
        group = _FIELD_PLACEHOLDERS.get(key)
        if group is None:
            if key.startswith("{{"):
                raise MappingError("mappings.properties", f"unknown placeholder {key}")
            props[key] = spec
            continue
        expanded.add(group)
        for name in getattr(schema, group):
            # A field written out explicitly in the file wins over its group's template.
            props.setdefault(name, copy.deepcopy(spec))
    for group in SCHEMA_GROUPS:
        if getattr(schema, group) and group not in expanded:
            missing = [n for n in getattr(schema, group) if n not in props]
            if missing:
                raise MappingError(
                    "mappings.properties", f"no {{{{{group}}}}} template for fields {missing}"
                )
    if props.get("id", {}).get("type") != "keyword":
        raise MappingError("mappings.properties.id", "must be a keyword field (the tie-break sort)")

    mappings = dict(tpl["mappings"])
    mappings["properties"] = props
    values = {"{{shards}}": settings.shards, "{{replicas}}": settings.replicas}
    body = _fill_values({"settings": tpl.get("settings", {}), "mappings": mappings}, values)
    if meta is not None:
        # Added after filling: _meta holds data, never placeholders.
        body["mappings"]["_meta"] = meta
    return body
