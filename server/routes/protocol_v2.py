"""Protocol v2 (thread-centric streaming), as ``langgraph_sdk``'s ``client.threads.stream`` uses it.

- ``POST /threads/{thread_id}/commands``: one JSON command in, one JSON answer out
  (``run.start``, ``input.respond``, ``agent.getTree``, ``subscription.*``; see
  :mod:`server.routes._protocol_commands`).
- ``POST /threads/{thread_id}/stream/events``: the thread's events as SSE, filtered by the
  body's ``channels`` / ``namespaces`` / ``depth``, resumed after ``since``; see
  :mod:`server.routes._protocol_stream`.

Runs started here execute like any other run (queue, workers, broker), streaming LangGraph's
own v3 protocol events (:mod:`server.runtime.protocol`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.auth import Access, matches, protect
from server.auth.approvals import may_review
from server.json_body import JsonRoute
from server.routes._common import fail, json_response, valid_uuid
from server.routes._protocol_commands import error_answer, handle_command, supported_channel
from server.routes._protocol_stream import EventFilter, protocol_stream
from server.runtime import Runtime, RuntimeDep, is_uuid
from server.runtime.sse import sse_response

__all__ = ["router"]

router = APIRouter(tags=["Threads"], route_class=JsonRoute)

_BAD_COMMAND = "Protocol commands must include an integer id and string method."
_ALLOWED = (
    "values, updates, messages, tools, custom, lifecycle, input, tasks, or any `custom:<name>`"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()  # strict and within budget (server.json_body)
    except json.JSONDecodeError:
        return ...


async def _own_thread(
    runtime: Runtime, access: Access, thread_id: str, *, answering: bool = False
) -> None:
    """404 for another owner's thread; a thread a command is about to create gets its owner.

    An approver may answer (``answering``: ``input.respond``) another owner's thread while it
    waits for a decision they may take, as on the runs endpoints. A malformed id names no
    thread: the command answers that itself, as the reference does.
    """
    if not is_uuid(thread_id):
        await access.check({"thread_id": thread_id})
        return
    thread_id = valid_uuid(thread_id, "thread")
    flt = await access.check({"thread_id": thread_id})
    row = await runtime.threads.get(thread_id)
    if row is not None and not matches(flt, row["metadata"]):
        if not (answering and may_review(access.caller, access.approvals, row)):
            fail(404, f"Thread with ID {thread_id} not found")
    if row is None and access.caller.enforced and access.action == "create_run":
        stamped: dict[str, Any] = {"thread_id": thread_id, "metadata": {}}
        await access.check(stamped, action="create")
        await runtime.threads.create(
            thread_id, metadata=stamped.get("metadata") or {}, if_exists="do_nothing"
        )


@router.post("/threads/{thread_id}/commands")
async def post_command(
    thread_id: str,
    request: Request,
    runtime: RuntimeDep,
    access: Annotated[Access, protect("threads", "create_run")],
) -> Response:
    """Run one protocol command on the thread (as the caller, on the caller's thread)."""
    command = await _json_body(request)  # read once; the owner check comes first still
    answering = isinstance(command, dict) and command.get("method") == "input.respond"
    await _own_thread(runtime, access, thread_id, answering=answering)
    if command is ...:
        return json_response({"detail": "Invalid JSON body"}, status_code=400)
    if not isinstance(command, dict) or not (
        _is_int(command.get("id")) and isinstance(command.get("method"), str)
    ):
        command_id = command.get("id") if isinstance(command, dict) else None
        # The reference's protocol error, with this server's ``detail`` next to it.
        body = {
            **error_answer(command_id, "invalid_argument", _BAD_COMMAND),
            "detail": _BAD_COMMAND,
        }
        return json_response(body, status_code=400)
    return json_response(await handle_command(runtime, thread_id, command, access))


def _namespaces(raw: Any) -> tuple[tuple[str, ...], ...] | None:
    if isinstance(raw, list) and all(
        isinstance(ns, list) and all(isinstance(part, str) for part in ns) for ns in raw
    ):
        return tuple(tuple(ns) for ns in raw)
    return None  # like the reference, a malformed filter is ignored rather than refused


def _whole(raw: Any) -> int | None:
    return raw if _is_int(raw) and raw >= 0 else None


@router.post("/threads/{thread_id}/stream/events")
async def stream_events(
    thread_id: str,
    request: Request,
    runtime: RuntimeDep,
    access: Annotated[Access, protect("threads", "read")],
) -> Response:
    """The thread's events (its latest run, then every new one) until the client leaves."""
    await _own_thread(runtime, access, thread_id)
    body = await _json_body(request)
    if body is ...:
        return json_response({"detail": "Invalid JSON body"}, status_code=400)
    channels = body.get("channels") if isinstance(body, dict) else None
    if not isinstance(channels, list) or not channels:
        return json_response(
            {"detail": "channels is required and must be a non-empty array"}, status_code=400
        )
    bad = [str(c) for c in channels if not supported_channel(c)]
    if bad:
        detail = f"channels contains unsupported entries: {', '.join(bad)}. Allowed: {_ALLOWED}."
        return json_response({"detail": detail}, status_code=400)
    # The reference streams nothing, forever, for a malformed id; a 422 says what is wrong.
    thread_id = valid_uuid(thread_id, "thread")
    want = EventFilter(
        channels=frozenset(channels),
        namespaces=_namespaces(body.get("namespaces")),
        depth=_whole(body.get("depth")),
    )
    events = protocol_stream(runtime, thread_id, want, since=_whole(body.get("since")))
    return sse_response(events)
