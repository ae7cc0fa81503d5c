"""Crons endpoints of the LangGraph Server API: scheduled runs, stateless or on a thread.

A cron stores the run request it makes (``payload``, as the reference server keeps it: the
body as sent, with the assistant resolved to its id and ``config.configurable.cron_id`` set)
and fires it on ``schedule`` (see :mod:`server.runtime.cron`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

from fastapi import APIRouter
from starlette.responses import Response

from server.auth import Access, Caller, matches, protect
from server.deps import Ctx
from server.ids import new_id
from server.json_body import JsonRoute
from server.limits import allowed_models, model_problem
from server.repos.crons import CronsRepo, cron_to_api
from server.routes._common import fail, json_response, no_content, page_response, valid_uuid
from server.routes._runs import assistant_usable
from server.routes.webhooks import check_webhook_or_422
from server.runtime import RunError, Runtime, RuntimeDep
from server.runtime.cron import ScheduleError, check_schedule, check_timezone, next_run_date
from server.schemas.crons import CronCount, CronCreate, CronPatch, CronSearch, ThreadCronCreate

__all__ = ["router"]

router = APIRouter(tags=["Crons"], route_class=JsonRoute)

_RESCHEDULE = ("schedule", "timezone")


def _crons(ctx: Ctx) -> CronsRepo:
    return CronsRepo(ctx.persistence.pool)


def _not_found(cron_id: str) -> NoReturn:
    fail(404, f"Cron '{cron_id}' not found")


async def _check(ctx: Ctx, fields: dict[str, Any]) -> None:
    """422 for a schedule, timezone, webhook or model the cron could not use."""
    try:
        if fields.get("schedule") is not None:
            check_schedule(fields["schedule"])
        check_timezone(fields.get("timezone"))
    except ScheduleError as exc:
        fail(422, str(exc))
    if fields.get("webhook") is not None:
        await check_webhook_or_422(fields["webhook"], ctx.settings.webhooks)
    # The payload of the runs the cron will make: refused now rather than at every firing.
    context = fields.get("context") or {}
    configurable = (fields.get("config") or {}).get("configurable") or {}
    problem = model_problem(
        allowed_models(ctx.settings.limits, ctx.settings.model),
        ctx.settings.model,
        {
            "body.context.model": context.get("model"),
            "body.config.configurable.model": configurable.get("model"),
        },
    )
    if problem is not None:
        fail(422, problem)


async def _assistant(runtime: Runtime, value: str) -> str:
    try:
        assistant_id = runtime.resolve_assistant(value)
    except RunError:
        fail(404, f"Assistant '{value}' not found")
    if await runtime.assistants.get(assistant_id) is None:
        fail(404, f"Assistant '{value}' not found")
    return assistant_id


async def _create(
    ctx: Ctx, runtime: Runtime, body: ThreadCronCreate, thread_id: str | None, caller: Caller
) -> Response:
    sent = body.model_dump(mode="json", exclude_unset=True)
    await _check(ctx, sent)
    assistant_id = await _assistant(runtime, body.assistant_id)
    if thread_id is not None and await runtime.threads.get(thread_id) is None:
        fail(
            404,
            f"Thread with ID '{thread_id}' not found. Please verify the ID is correct and the "
            "thread hasn't been deleted or expired.",
        )
    cron_id = new_id()
    payload = {**sent, "assistant_id": assistant_id}
    config = dict(payload.get("config") or {})
    config["configurable"] = {**(config.get("configurable") or {}), "cron_id": cron_id}
    payload["config"] = config
    on_run_completed = None
    if thread_id is None:
        on_run_completed = getattr(body, "on_run_completed", None) or "delete"
    row = await _crons(ctx).create(
        cron_id=cron_id,
        assistant_id=assistant_id,
        thread_id=thread_id,
        user_id=caller.identity,
        schedule=body.schedule,
        timezone=body.timezone,
        end_time=body.end_time,
        enabled=body.enabled,
        on_run_completed=on_run_completed,
        payload=payload,
        metadata=body.metadata or {},
        next_run_date=_first_run(body.schedule, body.timezone),
        auth=caller.stored(),  # its runs run as their creator (server.runtime.cron_creator)
    )
    if ctx.crons is not None:
        ctx.crons.wake()
    return json_response(cron_to_api(row))


def _first_run(schedule: str, timezone: str | None) -> datetime | None:
    return next_run_date(schedule, timezone, after=datetime.now(UTC))


Create = Annotated[Access, protect("crons", "create")]
Read = Annotated[Access, protect("crons", "read")]
Search = Annotated[Access, protect("crons", "search")]
Update = Annotated[Access, protect("crons", "update")]
Delete = Annotated[Access, protect("crons", "delete")]
CronBody = TypeVar("CronBody", bound=ThreadCronCreate)


async def _owned(ctx: Ctx, access: Access, cron_id: str) -> dict[str, Any]:
    """The cron if the caller may act on it; another owner's answers like a missing one."""
    flt = await access.check({"cron_id": cron_id})
    row = await _crons(ctx).get(cron_id)
    if row is None or not matches(flt, row["metadata"]):
        _not_found(cron_id)
    return row


async def _authorized(
    access: Access, runtime: Runtime, body: CronBody, thread_id: str | None
) -> CronBody:
    """Stamp the owner on the cron and check the caller may run on the thread, as the caller."""
    if thread_id is not None:
        flt = await access.check({"thread_id": thread_id}, resource="threads", action="create_run")
        thread = await runtime.threads.get(thread_id)
        if thread is None or not matches(flt, thread["metadata"]):
            fail(
                404,
                f"Thread with ID '{thread_id}' not found. Please verify the ID is correct and "
                "the thread hasn't been deleted or expired.",
            )
    if access.caller.enforced and not access.caller.is_admin:
        named = (body.context or {}).get("user_id") if hasattr(body, "context") else None
        if named is not None and named != access.caller.identity:
            fail(403, "context.user_id must be the authenticated user's id, or left out")
    if access.caller.enforced and not await assistant_usable(runtime, access, body.assistant_id):
        fail(404, f"Assistant '{body.assistant_id}' not found")
    value: dict[str, Any] = {"metadata": dict(body.metadata or {}), "thread_id": thread_id}
    await access.check(value)
    return body.model_copy(update={"metadata": value.get("metadata") or {}})


@router.post("/runs/crons")
async def create_cron(body: CronCreate, ctx: Ctx, runtime: RuntimeDep, access: Create) -> Response:
    """Create a cron whose every run starts on a new thread."""
    body = await _authorized(access, runtime, body, None)
    return await _create(ctx, runtime, body, None, access.caller)


@router.post("/threads/{thread_id}/runs/crons")
async def create_thread_cron(
    thread_id: str, body: ThreadCronCreate, ctx: Ctx, runtime: RuntimeDep, access: Create
) -> Response:
    """Create a cron that runs on this thread."""
    thread_id = valid_uuid(thread_id, "thread")
    body = await _authorized(access, runtime, body, thread_id)
    return await _create(ctx, runtime, body, thread_id, access.caller)


@router.post("/runs/crons/search")
async def search_crons(body: CronSearch, ctx: Ctx, access: Search) -> Response:
    """Crons matching the filters, a page at a time (``X-Pagination-Total``)."""
    flt = await access.check({"metadata": body.metadata or {}})
    rows, total = await _crons(ctx).search(
        assistant_id=valid_uuid(body.assistant_id, "assistant") if body.assistant_id else None,
        thread_id=valid_uuid(body.thread_id, "thread") if body.thread_id else None,
        enabled=body.enabled,
        metadata=body.metadata,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
        auth=flt,
    )
    crons = [cron_to_api(row) for row in rows]
    if body.select:
        crons = [{key: cron[key] for key in body.select} for cron in crons]
    return page_response(crons, total, offset=body.offset, limit=body.limit)


@router.post("/runs/crons/count")
async def count_crons(body: CronCount, ctx: Ctx, access: Search) -> Response:
    """How many crons match the filters."""
    flt = await access.check({"metadata": body.metadata or {}})
    count = await _crons(ctx).count(
        assistant_id=valid_uuid(body.assistant_id, "assistant") if body.assistant_id else None,
        thread_id=valid_uuid(body.thread_id, "thread") if body.thread_id else None,
        metadata=body.metadata,
        auth=flt,
    )
    return json_response(count)


@router.get("/runs/crons/{cron_id}")
async def get_cron(cron_id: str, ctx: Ctx, access: Read) -> Response:
    """One cron."""
    row = await _owned(ctx, access, valid_uuid(cron_id, "cron"))
    return json_response(cron_to_api(row))


@router.patch("/runs/crons/{cron_id}")
async def patch_cron(cron_id: str, body: CronPatch, ctx: Ctx, access: Update) -> Response:
    """Change a cron: the fields sent replace its own (``metadata`` is merged) and its payload's."""
    cron_id = valid_uuid(cron_id, "cron")
    sent = body.model_dump(mode="json", exclude_unset=True)
    if not sent:
        fail(400, "Request body cannot be empty")
    await _check(ctx, sent)
    repo = _crons(ctx)
    row = await _owned(ctx, access, cron_id)
    if body.metadata is not None:
        body = body.model_copy(
            update={"metadata": {k: v for k, v in body.metadata.items() if k != "owner"}}
        )
    changes: dict[str, Any] = {}
    for column in ("schedule", "timezone", "end_time", "enabled", "on_run_completed"):
        if column in sent and (sent[column] is not None or column == "end_time"):
            changes[column] = getattr(body, column)
    if body.metadata is not None:
        changes["metadata"] = {**(row["metadata"] or {}), **body.metadata}
    payload = {**(row["payload"] or {}), **sent, "assistant_id": row["payload"]["assistant_id"]}
    config = dict(payload.get("config") or {})
    config["configurable"] = {**(config.get("configurable") or {}), "cron_id": cron_id}
    payload["config"] = config
    changes["payload"] = payload
    if access.caller.enforced and access.caller.identity == row["user_id"]:
        # The creator changing it (say, re-enabling it with a new key) renews who it runs as.
        changes["auth"] = access.caller.stored()
    if any(key in changes for key in _RESCHEDULE):
        changes["next_run_date"] = _first_run(
            changes.get("schedule", row["schedule"]), changes.get("timezone", row["timezone"])
        )
    updated = await repo.update(cron_id, changes)
    if updated is None:
        _not_found(cron_id)
    if ctx.crons is not None:
        ctx.crons.wake()
    return json_response(cron_to_api(updated))


@router.delete("/runs/crons/{cron_id}")
async def delete_cron(cron_id: str, ctx: Ctx, access: Delete) -> Response:
    """Delete a cron (runs it already started go on)."""
    cron_id = valid_uuid(cron_id, "cron")
    await _owned(ctx, access, cron_id)
    if not await _crons(ctx).delete(cron_id):
        _not_found(cron_id)
    return no_content()
