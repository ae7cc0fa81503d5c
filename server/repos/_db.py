"""Small helpers over the shared pool: JSON parameters and paging."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from psycopg.types.json import Jsonb

from server.serde import dumps

__all__ = ["UnstorableJson", "encoded_jsonb", "jsonb", "page_headers", "storable", "storable_json"]

_NUL = b"\\u0000"
"""How JSON writes the NUL character, which no jsonb value may hold."""


class UnstorableJson(HTTPException):
    """A JSON value Postgres cannot store: a string holds ``\u0000``. Answered with a 422."""

    def __init__(self) -> None:
        super().__init__(
            status_code=422,
            detail="JSON strings must not contain the NUL character (\\u0000): "
            "Postgres cannot store it",
        )


def _checked(data: bytes) -> bytes:
    if _NUL in data:
        raise UnstorableJson()
    return data  # psycopg sends bytes as they are (a str it would encode again)


def _dumps(obj: Any) -> bytes:
    return _checked(dumps(obj))


def storable(value: Any) -> bool:
    """Whether ``value`` can be stored as jsonb (no NUL character in any string)."""
    return storable_json(dumps(value))


def storable_json(data: bytes) -> bool:
    """Whether ``data`` (JSON from :func:`server.serde.dumps`) can be stored as jsonb."""
    return _NUL not in data


def jsonb(value: Any) -> Jsonb | None:
    """``value`` as a jsonb parameter (``None`` stays SQL NULL).

    Raises:
        UnstorableJson: when the value is dumped (at execution), if a string holds a NUL.
    """
    return None if value is None else Jsonb(value, dumps=_dumps)


def encoded_jsonb(data: bytes | None) -> Jsonb | None:
    """``data``, a value already written as JSON by :func:`server.serde.dumps`, as a jsonb
    parameter sent as it is (``None`` stays SQL NULL).

    Raises:
        UnstorableJson: at execution, if a string holds a NUL.
    """
    return None if data is None else Jsonb(data, dumps=_checked)


def page_headers(total: int, *, offset: int, limit: int) -> dict[str, str]:
    """``X-Pagination-Total`` and, when more rows follow, ``X-Pagination-Next``."""
    headers = {"X-Pagination-Total": str(total)}
    if offset + limit < total:
        headers["X-Pagination-Next"] = str(offset + limit)
    return headers
