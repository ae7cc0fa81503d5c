"""Response and path helpers shared by the assistants, threads and runs routers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NoReturn

from fastapi import HTTPException
from starlette.responses import Response

from server.repos import page_headers
from server.runtime import RunError
from server.serde import dumps

__all__ = [
    "fail",
    "json_response",
    "no_content",
    "page_response",
    "raise_run_error",
    "select_fields",
    "valid_uuid",
]


def json_response(
    content: Any, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``content`` as compact JSON (orjson; messages and datetimes handled by serde)."""
    body = content if isinstance(content, bytes) else dumps(content)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def select_fields(rows: list[dict[str, Any]], fields: Sequence[str] | None) -> list[dict[str, Any]]:
    """Each row cut to ``fields`` in that order (a search's ``select``); all of it when None.

    A field a row lacks is left out rather than failing the whole page.
    """
    if not fields:
        return rows
    return [{k: row[k] for k in fields if k in row} for row in rows]


def page_response(rows: list[dict[str, Any]], total: int, *, offset: int, limit: int) -> Response:
    """One page of search results, with the pagination headers clients page by."""
    return json_response(rows, headers=page_headers(total, offset=offset, limit=limit))


def no_content() -> Response:
    """An empty 204."""
    return Response(status_code=204)


def fail(status: int, detail: str) -> NoReturn:
    """Stop the request with ``{"detail": detail}``."""
    raise HTTPException(status_code=status, detail=detail)


def raise_run_error(exc: RunError) -> NoReturn:
    """Turn a runtime :class:`RunError` into the HTTP error it describes."""
    raise HTTPException(status_code=exc.status, detail=exc.detail) from None


def valid_uuid(value: str, what: str) -> str:
    """``value`` normalised, or a 422 ``Invalid <what> ID: must be a UUID``."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        fail(422, f"Invalid {what} ID: must be a UUID")
