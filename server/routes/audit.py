"""``GET /audit``: the audit log for admins — filtered, paged by ``seq``, or exported as NDJSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response, StreamingResponse

from server.auth import Access, protect
from server.deps import Ctx
from server.json_body import JsonRoute
from server.repos.audit import AuditFilter, AuditRepo
from server.routes._common import fail, json_response
from server.serde import dumps

__all__ = ["AuditEntryOut", "AuditError", "AuditPage", "router"]

router = APIRouter(tags=["Audit"], route_class=JsonRoute)

NDJSON = "application/x-ndjson"
_TEXT = r"^[^\x00]+$"  # no NUL: Postgres text cannot hold it


class AuditEntryOut(BaseModel):
    """One audit entry (see the README's "The audit log" for the hash encoding)."""

    seq: int = Field(description="Position in the chain: 1, 2, 3, … without gaps.")
    at: str = Field(description="When it was appended, UTC: YYYY-MM-DDTHH:MM:SS.ffffffZ.")
    actor: str | None = Field(description="User id of who did it; null for staffgraph itself.")
    action: str = Field(description="What happened, e.g. key.created, thread.deleted.")
    resource_type: str | None = Field(description="Kind of resource acted on.")
    resource_id: str | None = Field(description="Its id.")
    details: dict[str, Any] = Field(description="More about it.")
    prev_hash: str = Field(description="Hash of the entry before (64 zeros for the first).")
    hash: str = Field(description="SHA-256 (hex) of this entry's canonical encoding.")


class AuditPage(BaseModel):
    """A page of ``GET /audit``."""

    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class AuditError(BaseModel):
    """An error answer."""

    detail: str


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@router.get(
    "/audit",
    response_class=Response,
    responses={
        200: {
            "model": AuditPage,
            "description": "A page of entries (JSON), or every matching entry as NDJSON "
            "(one entry a line) with `format=ndjson` or `Accept: application/x-ndjson`.",
            "content": {NDJSON: {"schema": {"$ref": "#/components/schemas/AuditEntryOut"}}},
        },
        401: {"model": AuditError, "description": "Not authenticated."},
        403: {"model": AuditError, "description": "The caller is not an admin."},
    },
)
async def read_audit(
    request: Request,
    ctx: Ctx,
    access: Annotated[Access, protect("audit", "read")],
    action: Annotated[
        list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]] | None,
        Query(max_length=20, description="Only these actions (repeat for several)."),
    ] = None,
    actor: Annotated[str | None, Query(max_length=512, pattern=_TEXT)] = None,
    resource_type: Annotated[str | None, Query(max_length=512, pattern=_TEXT)] = None,
    resource_id: Annotated[str | None, Query(max_length=512, pattern=_TEXT)] = None,
    since: Annotated[datetime | None, Query(description="At or after (UTC if no zone).")] = None,
    until: Annotated[datetime | None, Query(description="Before (UTC if no zone).")] = None,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,18}$", description="`next_cursor` of a page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    order: Literal["asc", "desc"] = "asc",
    format: Annotated[Literal["json", "ndjson"] | None, Query()] = None,
) -> Response:
    """The audit log, oldest first (``order=desc``: newest first). Admins only.

    Filters combine: ``action`` (repeatable), ``actor``, ``resource_type``, ``resource_id``,
    ``since`` / ``until`` on the entry's time. Pages hold ``limit`` entries; pass
    ``next_cursor`` back as ``cursor`` for the next one (pages are by ``seq``, so they stay
    stable while entries are appended). With ``format=ndjson`` or
    ``Accept: application/x-ndjson`` every matching entry after ``cursor`` is streamed, one
    JSON object a line (``limit`` does not apply).
    """
    await access.check({"action": action})
    if not access.caller.is_admin:
        fail(403, "Only admins may read the audit log")
    flt = AuditFilter(
        actions=tuple(action or ()),
        actor=actor,
        resource_type=resource_type,
        resource_id=resource_id,
        since=_utc(since),
        until=_utc(until),
    )
    after = int(cursor) if cursor is not None else None
    repo = AuditRepo(ctx.persistence.pool)
    wants_ndjson = format == "ndjson" or (
        format is None and NDJSON in request.headers.get("accept", "")
    )
    if wants_ndjson:

        async def lines() -> AsyncIterator[bytes]:
            async for entry in repo.export(flt, after=after, order=order):
                yield dumps(entry.to_json()) + b"\n"

        return StreamingResponse(lines(), media_type=NDJSON)
    entries, next_seq = await repo.page(flt, after=after, limit=limit, order=order)
    body = {
        "entries": [entry.to_json() for entry in entries],
        "next_cursor": None if next_seq is None else str(next_seq),
    }
    return json_response(body)
