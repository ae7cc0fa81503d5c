"""Small helpers over the shared pool: JSON parameters and paging."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from psycopg.types.json import Jsonb

from server.serde import dumps

__all__ = ["UnstorableJson", "jsonb", "page_headers", "storable"]


class UnstorableJson(HTTPException):
    """A JSON value Postgres cannot store: a string holds ``\u0000``. Answered with a 422."""

    def __init__(self) -> None:
        super().__init__(
            status_code=422,
            detail="JSON strings must not contain the NUL character (\\u0000): "
            "Postgres cannot store it",
        )


def _dumps(obj: Any) -> bytes:
    data = dumps(obj)  # psycopg sends bytes as they are (a str it would encode again)
    if b"\\u0000" in data:
        raise UnstorableJson()
    return data


def storable(value: Any) -> bool:
    """Whether ``value`` can be stored as jsonb (no NUL character in any string)."""
    return b"\\u0000" not in dumps(value)


def jsonb(value: Any) -> Jsonb | None:
    """``value`` as a jsonb parameter (``None`` stays SQL NULL).

    Raises:
        UnstorableJson: when the value is dumped (at execution), if a string holds a NUL.
    """
    return None if value is None else Jsonb(value, dumps=_dumps)


def page_headers(total: int, *, offset: int, limit: int) -> dict[str, str]:
    """``X-Pagination-Total`` and, when more rows follow, ``X-Pagination-Next``."""
    headers = {"X-Pagination-Total": str(total)}
    if offset + limit < total:
        headers["X-Pagination-Next"] = str(offset + limit)
    return headers
