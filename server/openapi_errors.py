"""The error bodies the OpenAPI document promises, as the server really writes them.

FastAPI documents every 422 as its own ``HTTPValidationError`` (``detail`` a list); this server
answers ``{"detail": "<field>: <problem>; ...", "errors": [{"loc", "msg", "type"}]}`` (see
:mod:`server.errors`). Protected operations may also answer 429 (the caller's limits, with
``Retry-After``). :func:`document_errors` rewrites the document to say so.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_SCHEMAS", "document_errors"]

_REF = "#/components/schemas/"
_UNLIMITED = frozenset({"/ok", "/ready", "/metrics"})
"""Health routes: never rate-limited (``public(limited=False)``)."""

ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "FieldError": {
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    },
    "ErrorBody": {
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {"type": "string", "description": "What was wrong, naming the field."},
            "errors": {"type": "array", "items": {"$ref": f"{_REF}FieldError"}},
        },
    },
    "LimitErrorBody": {
        "type": "object",
        "required": ["detail", "limit", "retry_after"],
        "properties": {
            "detail": {"type": "string"},
            "limit": {"type": "string", "enum": ["requests_per_minute", "concurrent_runs"]},
            "retry_after": {"type": "integer", "minimum": 1},
        },
    },
}


def _json(name: str, description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"{_REF}{name}"}}},
        **extra,
    }


_UNPROCESSABLE = _json("ErrorBody", "Invalid input: the detail names each field and problem")
_TOO_MANY = _json(
    "LimitErrorBody",
    "Over the caller's request rate or runs at once",
    headers={"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
)


def document_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with every 422 documented as :data:`ERROR_SCHEMAS` ``ErrorBody`` and a 429."""
    paths: dict[str, Any] = {}
    for path, item in (spec.get("paths") or {}).items():
        paths[path] = {
            method: _operation(operation, limited=path not in _UNLIMITED)
            if isinstance(operation, dict)
            else operation
            for method, operation in item.items()
        }
    components = dict(spec.get("components") or {})
    schemas = {
        name: schema
        for name, schema in (components.get("schemas") or {}).items()
        if name not in ("HTTPValidationError", "ValidationError")
    }
    components["schemas"] = {**schemas, **ERROR_SCHEMAS}
    return {**spec, "paths": paths, "components": components}


def _operation(operation: dict[str, Any], *, limited: bool) -> dict[str, Any]:
    responses = dict(operation.get("responses") or {})
    if "422" in responses:
        responses["422"] = _UNPROCESSABLE
    if limited:
        responses.setdefault("429", _TOO_MANY)
    return {**operation, "responses": responses}
