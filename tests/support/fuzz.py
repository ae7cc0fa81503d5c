"""Hypothesis strategies for the requests an OpenAPI document describes, and its response check.

Schemas become strategies here (objects, arrays, strings, numbers, ``anyOf``, ``enum``,
``const``, ``$ref`` into ``components``), because the ready-made generators do not fit this
environment: schemathesis needs a ``jsonschema-rs`` that langgraph-api (the official dev
server, our oracle) refuses, and hypothesis-jsonschema no longer runs on current hypothesis.

Values are mostly valid for the schema, so requests reach the code behind validation; some
carry a value nothing can store (a huge integer, a lone surrogate, NUL, ``NaN``), and
property names that name ids draw from ids that exist, so lookups sometimes find something.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st
from jsonschema import Draft202012Validator

__all__ = ["NASTY", "Operation", "operations", "response_problem", "schema_values"]

NASTY: tuple[str, ...] = (
    "123456789012345678901234567890",
    "-99999999999999999999",
    '"\\ud800"',
    '"a\\u0000b"',
    "NaN",
    "Infinity",
    "1e400",
)
"""JSON texts of values nothing downstream can hold; a body carrying one must get a 4xx."""

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), _TEXT)
_ANY_JSON = st.recursive(
    _LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=6,
)


class Operation:
    """One operation of the document: method, path template and its parameters' schemas."""

    def __init__(self, path: str, method: str, spec: Mapping[str, Any]) -> None:
        self.path = path
        self.method = method.upper()
        self.spec = spec
        parameters = spec.get("parameters") or []
        self.path_params = {p["name"]: p.get("schema", {}) for p in parameters if p["in"] == "path"}
        self.query_params = [p for p in parameters if p["in"] == "query"]
        content = (spec.get("requestBody") or {}).get("content") or {}
        self.body = (content.get("application/json") or {}).get("schema")

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


def operations(document: Mapping[str, Any]) -> list[Operation]:
    """Every operation of ``document``."""
    methods = ("get", "post", "put", "patch", "delete")
    return [
        Operation(path, method, item[method])
        for path, item in sorted(document["paths"].items())
        for method in methods
        if method in item
    ]


def schema_values(
    schema: Mapping[str, Any],
    document: Mapping[str, Any],
    known: Mapping[str, list[Any]],
    *,
    name: str = "",
    depth: int = 0,
) -> st.SearchStrategy[Any]:
    """Values of ``schema`` (``$ref`` resolved in ``document``); ``known[name]`` mixed in."""
    own = _schema_values(schema, document, known, depth)
    if name in known:
        return st.one_of(st.sampled_from(known[name]), own)
    return own


def _schema_values(
    schema: Mapping[str, Any],
    document: Mapping[str, Any],
    known: Mapping[str, list[Any]],
    depth: int,
) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        target = _resolve(document, schema["$ref"])
        return _schema_values({**target, **_without(schema, "$ref")}, document, known, depth)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([_schema_values(s, document, known, depth + 1) for s in schema[key]])
    if depth > 6:
        return _LEAF
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(
            [_schema_values({**schema, "type": k}, document, known, depth) for k in kind]
        )
    return _typed(kind, schema, document, known, depth)


def _typed(
    kind: Any,
    schema: Mapping[str, Any],
    document: Mapping[str, Any],
    known: Mapping[str, list[Any]],
    depth: int,
) -> st.SearchStrategy[Any]:
    if kind == "string":
        low = int(schema.get("minLength", 0))
        high = max(low, min(int(schema.get("maxLength", 24)), 24))
        if schema.get("format") == "uuid":
            return st.one_of(st.uuids().map(str), _TEXT)
        return st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
            min_size=low,
            max_size=high,
        )
    if kind == "integer":
        return st.integers(_bound(schema, "minimum", -(2**40)), _bound(schema, "maximum", 2**40))
    if kind == "number":
        low, high = _bound(schema, "minimum", -1e9), _bound(schema, "maximum", 1e9)
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = schema.get("items") or {}
        high = min(int(schema.get("maxItems", 3)), 3)
        low = min(int(schema.get("minItems", 0)), high)
        return st.lists(
            _schema_values(items, document, known, depth + 1), min_size=low, max_size=high
        )
    if kind == "object" or "properties" in schema:
        return _object(schema, document, known, depth)
    return _ANY_JSON


def _object(
    schema: Mapping[str, Any],
    document: Mapping[str, Any],
    known: Mapping[str, list[Any]],
    depth: int,
) -> st.SearchStrategy[Any]:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    fields = {
        key: schema_values(sub, document, known, name=key, depth=depth + 1)
        for key, sub in properties.items()
    }
    if not properties:
        return st.dictionaries(_TEXT, _ANY_JSON, max_size=3)
    return st.fixed_dictionaries(
        {k: v for k, v in fields.items() if k in required},
        optional={k: v for k, v in fields.items() if k not in required},
    )


def _bound(schema: Mapping[str, Any], key: str, default: float) -> Any:
    value = schema.get(key, schema.get(f"exclusive{key.capitalize()}"))
    if value is None or not math.isfinite(value):
        return default
    if f"exclusive{key.capitalize()}" in schema and key not in schema:
        value = value + (1 if key == "minimum" else -1)
    return value


def _without(schema: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _resolve(document: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


def poisoned(body: Any, nasty: str, pick: int) -> str:
    """``body`` as JSON text carrying ``nasty``, chosen by ``pick``: as a new member of every
    object (free-form objects such as ``metadata`` store it), or in place of one leaf."""
    marker = "__nasty_marker__"
    places: list[tuple[str, tuple[Any, ...]]] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, dict):
            places.append(("insert", path))
            for key, child in value.items():
                walk(child, (*path, key))
        elif isinstance(value, list) and value:
            for i, child in enumerate(value):
                walk(child, (*path, i))
        else:
            places.append(("replace", path))

    walk(body, ())
    root: Any = json.loads(json.dumps(body))
    inserts = [path for how, path in places if how == "insert"]
    if pick % 2 == 0 and inserts:
        for path in inserts:  # a new member in every object: free-form ones keep it
            _at(root, path)["fuzz"] = marker
        return json.dumps(root).replace(json.dumps(marker), nasty)
    leaves = [path for how, path in places if how == "replace"] or [()]
    path = leaves[pick % len(leaves)]
    if not path:
        return nasty
    _at(root, path[:-1])[path[-1]] = marker
    return json.dumps(root).replace(json.dumps(marker), nasty, 1)


def _at(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        root = root[part]
    return root


def response_problem(
    document: Mapping[str, Any], operation: Operation, status: int, body: Any
) -> str | None:
    """Why a JSON response does not match what the document promises for ``status``."""
    responses = operation.spec.get("responses") or {}
    promised = responses.get(str(status)) or responses.get("default")
    if promised is None:
        return None  # an undocumented status: nothing promised to check against
    schema = ((promised.get("content") or {}).get("application/json") or {}).get("schema")
    if not schema:
        return None
    validator = Draft202012Validator({**schema, "components": document.get("components", {})})
    error = next(iter(validator.iter_errors(body)), None)
    return None if error is None else f"{error.json_path}: {error.message}"
