"""Request and response models of the Store API, with the bounds every input is held to.

The bounds exist so that a request can neither make Postgres fail half-way (NUL characters,
lone surrogates, non-finite numbers and integers beyond 64 bits are rejected by ``jsonb`` or by
the JSON encoders) nor cost unbounded work (namespace depth, key length, value size, page size).
A request that breaks one is answered 422 before the store is touched.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "MAX_FILTER_KEYS",
    "MAX_INDEX_FIELDS",
    "MAX_KEY_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_NAMESPACE_DEPTH",
    "MAX_NAMESPACE_LIMIT",
    "MAX_OFFSET",
    "MAX_QUERY_CHARS",
    "MAX_SEARCH_LIMIT",
    "MAX_TTL_MINUTES",
    "MIN_TTL_MINUTES",
    "MAX_VALUE_BYTES",
    "MAX_VALUE_DEPTH",
    "FILTER_OPERATORS",
    "ItemOut",
    "ListNamespacesRequest",
    "ListNamespacesResponse",
    "SearchItemOut",
    "SearchItemsRequest",
    "SearchItemsResponse",
    "StoreDeleteRequest",
    "StorePutRequest",
    "check_label",
    "check_text",
]

MAX_NAMESPACE_DEPTH = 32
MAX_LABEL_CHARS = 256
MAX_KEY_CHARS = 1024
MAX_VALUE_BYTES = 1024 * 1024
MAX_VALUE_DEPTH = 64
MAX_INDEX_FIELDS = 32
MAX_FILTER_KEYS = 64
MAX_QUERY_CHARS = 10_000
MAX_SEARCH_LIMIT = 1000
MAX_NAMESPACE_LIMIT = 1000
MAX_OFFSET = 1_000_000
# The store turns minutes into an interval literal; below 6 ms it would be written in exponent
# notation, which Postgres cannot parse, and above ten years intervals stop being meaningful.
MIN_TTL_MINUTES = 0.0001
MAX_TTL_MINUTES = 10 * 366 * 24 * 60
FILTER_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})

_INT64 = 2**63


def check_text(text: str, what: str) -> str:
    """Reject text Postgres cannot store: NUL characters and lone UTF-16 surrogates.

    Raises:
        ValueError: naming ``what`` and the problem.
    """
    if "\x00" in text:
        raise ValueError(f"{what} must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode (lone surrogate)") from None
    return text


def check_label(label: str) -> str:
    """One namespace label: non-empty, no ``.`` (the store's separator), bounded, storable.

    Raises:
        ValueError: the label is unusable; the message says why.
    """
    if not label:
        raise ValueError("namespace labels must be non-empty strings")
    if "." in label:
        raise ValueError(f"namespace label {label!r} must not contain '.'")
    if len(label) > MAX_LABEL_CHARS:
        raise ValueError(f"namespace labels must be at most {MAX_LABEL_CHARS} characters")
    return check_text(label, "namespace label")


def _check_key(key: str) -> str:
    return check_text(key, "key")


def _check_json(value: Any, what: str) -> None:
    """Walk ``value`` iteratively (no recursion limit to hit) and reject what ``jsonb`` refuses."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            check_text(node, f"{what} strings")
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if not -_INT64 <= node < _INT64:
                raise ValueError(f"{what} holds an integer outside the 64-bit range")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValueError(f"{what} holds NaN or Infinity, which JSON cannot store")
        elif isinstance(node, dict | list):
            if depth > MAX_VALUE_DEPTH:
                raise ValueError(f"{what} is nested deeper than {MAX_VALUE_DEPTH} levels")
            if isinstance(node, dict):
                for key, child in node.items():
                    check_text(key, f"{what} keys")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in node)
        else:
            raise ValueError(f"{what} holds a value that is not JSON")


def _check_value(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value, "value")
    size = len(orjson.dumps(value))
    if size > MAX_VALUE_BYTES:
        raise ValueError(f"value is {size} bytes as JSON; the limit is {MAX_VALUE_BYTES}")
    return value


Label = Annotated[str, AfterValidator(check_label)]
Namespace = Annotated[list[Label], Field(min_length=1, max_length=MAX_NAMESPACE_DEPTH)]
NamespacePath = Annotated[list[Label], Field(max_length=MAX_NAMESPACE_DEPTH)]
Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS), AfterValidator(_check_key)]
IndexField = Annotated[
    str,
    Field(min_length=1, max_length=MAX_LABEL_CHARS),
    AfterValidator(lambda s: check_text(s, "index field")),
]

IndexFields = Annotated[list[IndexField], Field(max_length=MAX_INDEX_FIELDS)]


class _Request(BaseModel):
    # Unknown keys are ignored, as the official server does: newer SDKs may send more.
    model_config = ConfigDict(extra="ignore")


class StorePutRequest(_Request):
    """``PUT /store/items``: store or replace one item."""

    namespace: Namespace = Field(description="Namespace path, e.g. ['users', 'u1'].")
    key: Key = Field(description="Identifier of the item within its namespace.")
    value: dict[str, Any] = Field(description="The document, a JSON object.")
    index: Literal[False] | IndexFields | None = Field(
        default=None,
        description="null: the store's configured fields; false: not indexed; "
        "a list: these field paths.",
    )
    ttl: float | None = Field(
        default=None,
        ge=MIN_TTL_MINUTES,
        le=MAX_TTL_MINUTES,
        description="Minutes until the item expires (refreshed on read); null: never. "
        "Left out: the store's default TTL.",
    )

    @field_validator("namespace")
    @classmethod
    def _not_reserved(cls, value: list[str]) -> list[str]:
        if value[0] == "langgraph":
            raise ValueError("the root label 'langgraph' is reserved; choose another")
        return value

    @field_validator("value")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_value(value)


class StoreDeleteRequest(_Request):
    """``DELETE /store/items``: delete one item (no error when it does not exist)."""

    namespace: Namespace
    key: Key


class SearchItemsRequest(_Request):
    """``POST /store/items/search``: list (newest first) or, with ``query``, vector search."""

    namespace_prefix: NamespacePath | None = Field(
        default=None, description="Only items in this namespace or below it."
    )
    filter: dict[str, Any] | None = Field(
        default=None,
        description="Top-level value fields: equal to a JSON value, or an object of "
        "operators $eq, $ne, $gt, $gte, $lt, $lte.",
    )
    limit: int = Field(default=10, ge=1, le=MAX_SEARCH_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    query: str | None = Field(
        default=None, max_length=MAX_QUERY_CHARS, description="Natural-language query."
    )
    refresh_ttl: bool | None = Field(
        default=None, description="Refresh the TTL of returned items; null: store default."
    )

    @field_validator("query")
    @classmethod
    def _query_text(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "query")

    @field_validator("filter")
    @classmethod
    def _filter_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if len(value) > MAX_FILTER_KEYS:
            raise ValueError(f"filter has more than {MAX_FILTER_KEYS} fields")
        _check_json(value, "filter")
        for field, condition in value.items():
            if not isinstance(condition, dict):
                continue
            if not condition:
                raise ValueError(f"filter.{field}: an operator object needs at least one operator")
            for op, operand in condition.items():
                if op not in FILTER_OPERATORS:
                    raise ValueError(
                        f"filter.{field}: unknown operator {op!r}; "
                        f"use one of {', '.join(sorted(FILTER_OPERATORS))}"
                    )
                if op in ("$gt", "$gte", "$lt", "$lte") and (
                    isinstance(operand, bool) or not isinstance(operand, str | int | float)
                ):
                    raise ValueError(f"filter.{field}.{op} needs a number or a string")
        return value


class ListNamespacesRequest(_Request):
    """``POST /store/namespaces``: namespaces that exist, optionally matched and truncated."""

    prefix: NamespacePath | None = Field(default=None, description="'*' matches any one label.")
    suffix: NamespacePath | None = Field(default=None, description="'*' matches any one label.")
    max_depth: int | None = Field(
        default=None, ge=1, le=MAX_NAMESPACE_DEPTH, description="Truncate to this many labels."
    )
    limit: int = Field(default=100, ge=1, le=MAX_NAMESPACE_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class ItemOut(BaseModel):
    """A stored item as the API returns it."""

    namespace: list[str]
    key: str
    value: dict[str, Any]
    created_at: str = Field(description="ISO 8601 timestamp.")
    updated_at: str = Field(description="ISO 8601 timestamp.")


class SearchItemOut(ItemOut):
    """A search hit: ``score`` is the similarity to ``query``, null when there was none."""

    score: float | None = None


class SearchItemsResponse(BaseModel):
    """Body of ``POST /store/items/search``."""

    items: list[SearchItemOut]


class ListNamespacesResponse(BaseModel):
    """Body of ``POST /store/namespaces``."""

    namespaces: list[list[str]]
