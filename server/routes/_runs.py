"""Helpers shared by the runs routers: creating runs and answering with a stream or a wait."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response

from server.auth import Access, Caller, Filter, matches
from server.auth.approvals import PendingGate, may_review
from server.auth.run_value import create_run_value
from server.repos import CancelResult
from server.routes._common import fail, raise_run_error
from server.routes._decision_audit import create_with_decisions
from server.routes._gates import approval_metadata, guard_run, needs_thread
from server.routes._run_checks import check_run_targets
from server.routes._waiting import JsonWaitResponse, wait_body
from server.routes.webhooks import check_webhook_or_422
from server.runtime import CreatedRun, RunError, Runtime
from server.runtime.outcome import RUN_NOT_FOUND, encode_done
from server.runtime.sse import run_events, sse_response
from server.schemas import RunCreate

log = logging.getLogger(__name__)

__all__ = [
    "NOT_FOUND",
    "NO_MATCH",
    "assistant_usable",
    "check_user",
    "create",
    "paths",
    "stream",
    "wait",
]

NO_MATCH = (
    "No matching runs to cancel. Please verify the thread ID and run IDs are correct, and the "
    "runs haven't been deleted or completed."
)


def paths(created: CreatedRun, *, stateless: bool) -> str:
    if stateless:
        return f"/runs/{created.run_id}"
    return f"/threads/{created.thread_id}/runs/{created.run_id}"


NOT_FOUND = "Thread or assistant not found."


def check_user(body: RunCreate, caller: Caller) -> None:
    """Refuse a run that names another user than the authenticated one (admins may)."""
    if not caller.enforced or caller.is_admin:
        return
    configurable = (body.config.configurable if body.config else None) or {}
    for where, named in (
        ("context.user_id", (body.context or {}).get("user_id")),
        ("config.configurable.user_id", configurable.get("user_id")),
    ):
        if named is not None and named != caller.identity:
            fail(403, f"{where} must be the authenticated user's id, or left out")


async def assistant_usable(runtime: Runtime, access: Access, assistant: str) -> bool:
    if assistant in runtime.registry:
        return True  # a graph id names its per-graph default assistant: everyone's
    try:
        assistant_id = runtime.resolve_assistant(assistant)
    except RunError as exc:
        raise_run_error(exc)
    row = await runtime.assistants.get(assistant_id)
    if row is None or (row["metadata"] or {}).get("created_by") == "system":
        return True  # a missing one is the runtime's 404; each graph's default is everyone's
    return await access.visible(
        row["metadata"], {"assistant_id": assistant_id}, resource="assistants", action="read"
    )


async def create(
    runtime: Runtime, body: RunCreate, thread_id: str | None, access: Access
) -> CreatedRun:
    """Authorize and create a run: on a thread the caller may run on, as the caller."""
    if body.webhook is not None:
        await check_webhook_or_422(body.webhook, runtime.settings.webhooks)
    await check_run_targets(runtime, body, thread_id)
    if not access.caller.enforced:
        # The local operator (no auth): nothing to scope, so no extra reads on the run path.
        body, gates = await _gated(runtime, body, thread_id, access, None)
        return await _create(runtime, body, thread_id, access, None, gates)
    check_user(body, access.caller)
    value = create_run_value(
        body, thread_id, if_not_exists=body.if_not_exists, after_seconds=body.after_seconds or 0
    )
    flt: Filter | None = await access.check(value, resource="threads", action="create_run")
    existing = None
    if thread_id is not None and needs_thread(body):
        # Approvals and gates look at the thread: read it once, for the owner check too.
        existing = await runtime.threads.get(thread_id)
        if existing is not None and not matches(flt, existing["metadata"]):
            if not (_only_answers(body) and may_review(access.caller, access.approvals, existing)):
                fail(404, NOT_FOUND)
            flt = None  # an approver answering another owner's run (may_review said yes)
    # Otherwise whether the thread is the caller's is checked by the SQL that creates the run
    # (a thread that does not match the filter is missing), not by reading it first.
    thread_metadata = None
    if thread_id is None or body.if_not_exists == "create":
        stamped: dict[str, Any] = {"thread_id": thread_id, "metadata": {}}
        await access.check(stamped, resource="threads", action="create")
        thread_metadata = stamped.get("metadata") or {}
    if not await assistant_usable(runtime, access, body.assistant_id):
        fail(404, NOT_FOUND)
    if value.get("metadata") != (body.metadata or {}):
        body = body.model_copy(update={"metadata": value.get("metadata")})
    body, gates = await _gated(runtime, body, thread_id, access, existing)
    return await _create(runtime, body, thread_id, access, thread_metadata, gates, flt)


def _only_answers(body: RunCreate) -> bool:
    """Whether the run only answers what the thread waits on (``command.resume`` alone)."""
    command = body.command
    return (
        command is not None
        and command.resume is not None
        and command.goto is None
        and command.update is None
        and body.input is None
        and body.checkpoint is None
        and body.checkpoint_id is None
    )


async def _gated(
    runtime: Runtime,
    body: RunCreate,
    thread_id: str | None,
    access: Access,
    thread: dict[str, Any] | None,
) -> tuple[RunCreate, list[PendingGate]]:
    """``body`` once :func:`guard_run` let it through, recording the approvals it answers in
    its metadata; and those approval requests."""
    if thread is None and thread_id is not None and needs_thread(body):
        thread = await runtime.threads.get(thread_id)
    body, gates = await guard_run(runtime, access.caller, access.approvals, body, thread)
    metadata = dict(body.metadata or {})
    # Only the server says who decided: a client's own "approval" key is dropped.
    if not gates and "approval" not in metadata:
        return body, gates
    metadata.pop("approval", None)
    if gates:
        metadata["approval"] = approval_metadata(access.caller, gates)
    return body.model_copy(update={"metadata": metadata}), gates


async def _create(
    runtime: Runtime,
    body: RunCreate,
    thread_id: str | None,
    access: Access,
    thread_metadata: dict[str, Any] | None,
    gates: list[PendingGate],
    thread_filter: Filter | None = None,
) -> CreatedRun:
    try:
        if gates and thread_id is not None:
            # The decisions go into the audit log with the run that carries them out.
            return await create_with_decisions(
                runtime,
                body,
                thread_id=thread_id,
                identity=access.caller.run_configurable(),
                actor=access.caller.identity or None,
                gates=gates,
                thread_filter=thread_filter,
            )
        return await runtime.create_run(
            body,
            thread_id=thread_id,
            identity=access.caller.run_configurable(),
            thread_metadata=thread_metadata,
            thread_filter=thread_filter,
        )
    except RunError as exc:
        raise_run_error(exc)


async def stream(
    runtime: Runtime, body: RunCreate, thread_id: str | None, access: Access
) -> Response:
    created = await create(runtime, body, thread_id, access)
    base = paths(created, stateless=thread_id is None)
    events = run_events(
        runtime,
        created.run_id,
        thread_id=created.thread_id,
        with_ids=created.resumable,
        cancel_on_disconnect=body.on_disconnect == "cancel",
    )
    return sse_response(events, headers={"Content-Location": base, "Location": f"{base}/stream"})


async def wait(
    runtime: Runtime, body: RunCreate, thread_id: str | None, access: Access
) -> Response:
    created = await create(runtime, body, thread_id, access)
    # Even a stateless wait names its temporary thread here, as the reference does.
    base = paths(created, stateless=False)
    output = wait_body(
        runtime,
        thread_id=created.thread_id,
        run_id=created.run_id,
        cancel_on_disconnect=body.on_disconnect == "cancel",
    )
    return JsonWaitResponse(output, headers={"Content-Location": base, "Location": f"{base}/join"})


async def stop_deleted_runs(runtime: Runtime, stopped: CancelResult) -> None:
    """After runs were flagged and deleted (with their thread, or alone): end the streams of
    those that were queued and stop those that were running, whose end then finds them gone.

    Best effort, each on its own: the deletion is done, and a run not reached here still stops
    (its lease fence and heartbeat find its row gone) and its followers read the end from
    Postgres.
    """
    for run_id in stopped.settled:
        try:
            await runtime.broker.finish(
                run_id, encode_done("interrupted", RUN_NOT_FOUND), resumable=True
            )
        except Exception:
            log.warning("could not end the stream of deleted run %s", run_id, exc_info=True)
    for _, run_id in stopped.running:
        try:
            await runtime.signal_cancel(run_id, "interrupt")
        except Exception:
            log.warning("could not signal deleted run %s to stop", run_id, exc_info=True)
