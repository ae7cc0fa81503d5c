"""Runs endpoints of the LangGraph Server API: runs on a thread, joins, cancels, streams.

Plus ``GET /usage``, staffgraph's own: token usage and cost summed over finished runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query
from starlette.responses import Response

from server.auth import Access, protect
from server.json_body import JsonRoute
from server.repos import run_to_api
from server.routes import _runs, stateless_runs
from server.routes._common import fail, json_response, no_content, raise_run_error, valid_uuid
from server.routes._threads import load_thread
from server.routes._waiting import JsonWaitResponse, join_body
from server.runtime import RunError, Runtime, RuntimeDep
from server.runtime.outcome import RUN_NOT_FOUND
from server.runtime.sse import run_events, run_not_found, sse_response, thread_events
from server.runtime.thread_runs import UnannouncedRuns
from server.schemas import STREAM_MODES, RunCreate

__all__ = ["router"]

router = APIRouter(tags=["Runs"], route_class=JsonRoute)

CreateRun = Annotated[Access, protect("threads", "create_run")]
Read = Annotated[Access, protect("threads", "read")]
Update = Annotated[Access, protect("threads", "update")]
Delete = Annotated[Access, protect("threads", "delete")]

# -- runs on a thread -------------------------------------------------------------------------


@router.post("/threads/{thread_id}/runs")
async def create_run(
    thread_id: str, body: RunCreate, runtime: RuntimeDep, access: CreateRun
) -> Response:
    """Create a background run on the thread."""
    created = await _runs.create(runtime, body, valid_uuid(thread_id, "thread"), access)
    return json_response(
        created.run, headers={"Content-Location": _runs.paths(created, stateless=False)}
    )


@router.post("/threads/{thread_id}/runs/stream")
async def stream_run(
    thread_id: str, body: RunCreate, runtime: RuntimeDep, access: CreateRun
) -> Response:
    """Create a run on the thread and stream its events (SSE)."""
    return await _runs.stream(runtime, body, valid_uuid(thread_id, "thread"), access)


@router.post("/threads/{thread_id}/runs/wait")
async def wait_run(
    thread_id: str, body: RunCreate, runtime: RuntimeDep, access: CreateRun
) -> Response:
    """Create a run on the thread and answer with its final values (errors as ``__error__``)."""
    return await _runs.wait(runtime, body, valid_uuid(thread_id, "thread"), access)


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str,
    runtime: RuntimeDep,
    access: Read,
    limit: int = Query(default=10, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=1_000_000),
    status: str | None = Query(default=None, max_length=20),
    select: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> Response:
    """The thread's runs, newest first."""
    thread_id = str((await load_thread(runtime, thread_id, access))["thread_id"])
    rows = [
        run_to_api(row, with_usage=True)
        for row in await runtime.runs.for_thread(
            thread_id, limit=limit, offset=offset, status=status
        )
    ]
    if select:
        rows = [{k: row[k] for k in select if k in row} for row in rows]
    return json_response(rows)


async def _run_row(runtime: Runtime, access: Access, thread_id: str, run_id: str) -> dict[str, Any]:
    run_id = valid_uuid(run_id, "run")
    thread = await load_thread(runtime, thread_id, access, value={"run_id": run_id})
    thread_id = str(thread["thread_id"])
    row = await runtime.runs.get(thread_id, run_id)
    if row is None:
        fail(404, f"Run {run_id} not found")
    return row


async def _run_row_or_none(
    runtime: Runtime, access: Access, thread_id: str, run_id: str
) -> dict[str, Any] | None:
    """:func:`_run_row`, or ``None`` for a run (or thread) that does not exist or that the
    caller may not see: joins answer those in their body, as for a run deleted while joined."""
    try:
        return await _run_row(runtime, access, thread_id, run_id)
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        return None


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(thread_id: str, run_id: str, runtime: RuntimeDep, access: Read) -> Response:
    """One run, with its token usage and cost under ``usage`` (``{}`` until it ends)."""
    row = await _run_row(runtime, access, thread_id, run_id)
    return json_response(run_to_api(row, with_usage=True))


@router.delete("/threads/{thread_id}/runs/{run_id}")
async def delete_run(thread_id: str, run_id: str, runtime: RuntimeDep, access: Delete) -> Response:
    """Delete a run (stopping it first if it is still going)."""
    row = await _run_row(runtime, access, thread_id, run_id)
    tid, rid = str(row["thread_id"]), str(row["run_id"])
    if row["status"] not in ("pending", "running"):
        await runtime.runs.delete(tid, rid)
        return no_content()
    # Flagged, deleted, then stopped: the run's end finds it gone, and its runs/wait and join
    # answer that it no longer exists (as the reference does), never its last values.
    stopped = await runtime.runs.cancel(action="interrupt", thread_id=tid, run_ids=[rid])
    await runtime.runs.delete(tid, rid)
    await _runs.stop_deleted_runs(runtime, stopped)
    return no_content()


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(
    thread_id: str,
    run_id: str,
    runtime: RuntimeDep,
    access: Read,
    cancel_on_disconnect: bool = False,
) -> Response:
    """Wait for the run and answer with the thread's values (or the run's error).

    A newline is written every 5 s while the run is quiet (see ``server.routes._waiting``).
    """
    row = await _run_row_or_none(runtime, access, thread_id, run_id)
    if row is None:  # as the reference: 200, the error as the document
        return Response(RUN_NOT_FOUND, media_type="application/json")
    tid, rid = str(row["thread_id"]), str(row["run_id"])
    base = f"/threads/{tid}/runs/{rid}"
    body = join_body(runtime, thread_id=tid, run_id=rid, cancel_on_disconnect=cancel_on_disconnect)
    return JsonWaitResponse(body, headers={"Content-Location": base, "Location": f"{base}/join"})


@router.get("/threads/{thread_id}/runs/{run_id}/stream")
async def join_run_stream(
    thread_id: str,
    run_id: str,
    runtime: RuntimeDep,
    access: Read,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
    stream_mode: Annotated[list[str] | None, Query(max_length=20)] = None,
    cancel_on_disconnect: bool = False,
) -> Response:
    """Stream a run's events from now on, or replay after ``Last-Event-ID`` (resumable runs).

    A run that does not exist (or that the caller may not see) streams one ``error`` event, as
    the reference does.
    """
    row = await _run_row_or_none(runtime, access, thread_id, run_id)
    if row is None:
        return sse_response(run_not_found())
    modes = None
    # The SDK sends an empty ``stream_mode=`` when none is given: no filter, as the reference.
    stream_mode = [m for m in stream_mode or () if m]
    if stream_mode:
        unknown = [m for m in stream_mode if m not in STREAM_MODES]
        if unknown:
            fail(422, f"Invalid stream_mode {unknown[0]!r}: expected one of {list(STREAM_MODES)}")
        modes = frozenset(stream_mode)
    tid, rid = str(row["thread_id"]), str(row["run_id"])
    base = f"/threads/{tid}/runs/{rid}"
    headers = {"Content-Location": base, "Location": f"{base}/stream"}
    resumable = bool((row["kwargs"] or {}).get("resumable"))
    finished = row["status"] not in ("pending", "running")
    if finished and not (resumable and last_event_id):
        return sse_response(_nothing(), headers=headers)
    events = run_events(
        runtime,
        rid,
        thread_id=tid,
        after=last_event_id if resumable else None,
        live=True,
        with_ids=resumable,
        modes=modes,
        cancel_on_disconnect=cancel_on_disconnect,
    )
    return sse_response(events, headers=headers)


async def _nothing() -> Any:
    return
    yield  # an async generator with no items: the body is empty


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(
    thread_id: str,
    run_id: str,
    runtime: RuntimeDep,
    access: Update,
    wait: bool = False,
    action: str = Query(default="interrupt", pattern="^(interrupt|rollback)$"),
) -> Response:
    """Cancel a queued or running run (``action``: keep its checkpoints or roll them back)."""
    run_id = valid_uuid(run_id, "run")
    value = {"action": action, "metadata": {"run_ids": [run_id], "status": None}}
    thread = await load_thread(runtime, thread_id, access, value=value)
    thread_id = str(thread["thread_id"])
    result = await runtime.cancel(action=action, thread_id=thread_id, run_ids=[run_id], wait=wait)
    if not result.running and not result.settled:
        fail(404, _runs.NO_MATCH)
    if wait:
        return json_response({})
    return Response(status_code=202)


@router.get("/threads/{thread_id}/stream")
async def join_thread_stream(
    thread_id: str,
    runtime: RuntimeDep,
    access: Read,
    stream_modes: Annotated[list[str] | None, Query(max_length=10)] = None,
    stream_mode: Annotated[list[str] | None, Query(max_length=10)] = None,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """Stream the events of the thread's current and future runs.

    ``stream_modes`` is the documented parameter; the SDK sends ``stream_mode``. A client that
    reconnects with ``Last-Event-ID`` gets the in-flight runs' frames after that id, then live.
    """
    thread_id = str((await load_thread(runtime, thread_id, access))["thread_id"])
    modes = set(stream_modes or stream_mode or ["run_modes"])
    unknown = modes - {"run_modes", "lifecycle", "state_update"}
    if unknown:
        fail(422, f"Invalid stream_modes {sorted(unknown)}")
    # The clock before watching, watching before reading the runs: a run that starts while
    # they are read is in one or both, and one the watcher is not told of is found later.
    unannounced = await UnannouncedRuns.begin(runtime.runs.pool, thread_id)
    watcher = await runtime.broker.watch_thread(thread_id)
    try:
        first = await unannounced.check()
    except BaseException:
        await watcher.aclose()
        raise
    events = thread_events(
        runtime,
        watcher,
        unannounced,
        first=first,
        run_modes="run_modes" in modes,
        after=last_event_id,
    )
    return sse_response(events)


@router.get("/usage", tags=["Usage"])
async def usage_totals(
    runtime: RuntimeDep,
    access: Annotated[Access, protect("runs", "read")],
    assistant_id: Annotated[str | None, Query(max_length=100)] = None,
    user_id: Annotated[str | None, Query(max_length=256)] = None,
    graph_id: Annotated[str | None, Query(max_length=256)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    group_by: Literal["assistant", "user", "graph"] | None = None,
) -> Response:
    """Tokens, calls and cost summed over finished runs, in total and per role.

    Filters: ``assistant_id`` (a UUID or a graph id: its default assistant), ``user_id`` (the
    run's user: auth identity, else ``context.user_id``, ``configurable.user_id`` or
    ``metadata.user_id``), ``graph_id``, and ``since`` / ``until`` on the run's end time.
    ``group_by`` adds ``groups``: the same sums per assistant, user or graph. Costs are the
    ones stored with each run, priced when it ended; ``estimated`` / ``cost_estimated`` say
    whether any of it comes from the offline model's token estimates.

    With auth on, a caller sees their own runs' totals only (asking for another ``user_id`` is
    a 403); admins see everyone's.
    """
    await access.check({"user_id": user_id})
    caller = access.caller
    if caller.enforced and not caller.is_admin:
        if user_id is not None and user_id != caller.identity:
            fail(403, "You may see your own usage only")
        user_id = caller.identity
    assistant = None
    if assistant_id is not None:
        try:
            assistant = runtime.resolve_assistant(assistant_id)
        except RunError as exc:
            raise_run_error(exc)
    found = await runtime.runs.usage_totals(
        assistant_id=assistant,
        user_id=user_id,
        graph_id=graph_id,
        since=since,
        until=until,
        group_by=group_by,
    )
    body: dict[str, Any] = {**found.totals, "by_role": found.by_role}
    if group_by is not None:
        body["group_by"] = group_by
        body["groups"] = found.groups
    return json_response(body)


# Stateless runs and bulk cancel are in their own module to keep each router small.
router.include_router(stateless_runs.router)
