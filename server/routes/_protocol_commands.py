"""``POST /threads/{id}/commands``: protocol v2 commands, answered as the reference answers them.

A command is ``{"id": <int>, "method": <str>, "params": {...}}``; the answer is
``{"type": "success", "id", "result", "meta": {"applied_through_seq": 0}}`` or
``{"type": "error", "id", "error": <code>, "message"}`` (HTTP 200 either way). Over HTTP a
command belongs to no connection, so, as on the reference, ``agent.getTree`` and
``subscription.reconnect`` find no run bound to it, ``subscription.subscribe`` only validates
and names a subscription, and ``subscription.unsubscribe`` knows none.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from server.auth import Access
from server.errors import validation_detail
from server.routes._decision_audit import create_with_decisions
from server.routes._gates import guard_run
from server.routes._runs import check_user
from server.runtime import RunError, Runtime, is_uuid
from server.runtime.protocol import PROTOCOL_MODE
from server.schemas import RunCreate
from server.schemas.runs import MultitaskStrategy

__all__ = ["ProtocolError", "error_answer", "handle_command", "supported_channel"]

# How long input.respond waits for an in-flight run to store the interrupt the client saw on
# the stream (the event is sent before the run's outcome is committed).
_SETTLE_SECONDS = 5.0
_STRATEGIES: tuple[str, ...] = MultitaskStrategy.__args__  # type: ignore[attr-defined]
_CHANNELS = frozenset(
    {"values", "updates", "messages", "tools", "custom", "lifecycle", "input", "tasks"}
    | {"checkpoints"}
)


class ProtocolError(Exception):
    """A command that fails with a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def supported_channel(value: Any) -> bool:
    """Whether a stream or subscription may ask for channel ``value``."""
    if not isinstance(value, str):
        return False
    return value in _CHANNELS or (value.startswith("custom:") and len(value) > len("custom:"))


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _checkpoint_id(params: dict[str, Any]) -> str | None:
    configurable = _object(_object(params.get("config")).get("configurable"))
    checkpoint_id = configurable.get("checkpoint_id")
    if checkpoint_id is None:
        return None
    if not isinstance(checkpoint_id, str) or not checkpoint_id.strip():
        raise ProtocolError(
            "invalid_argument", "config.configurable.checkpoint_id must be a non-empty string."
        )
    try:
        uuid.UUID(checkpoint_id)
    except ValueError:
        raise ProtocolError(
            "invalid_argument", f"Invalid config.configurable.checkpoint_id: {checkpoint_id!r}."
        ) from None
    return checkpoint_id


def _check_tracer(params: dict[str, Any]) -> None:
    tracer = params.get("langsmith_tracer")
    if tracer is None:
        return
    if not isinstance(tracer, dict):
        raise ProtocolError("invalid_argument", "langsmith_tracer must be an object.")
    unknown = sorted(set(tracer) - {"project_name", "example_id"})
    if unknown:
        raise ProtocolError(
            "invalid_argument", f"langsmith_tracer has unsupported fields: {unknown!r}."
        )
    for key, value in tracer.items():
        if not isinstance(value, str):
            raise ProtocolError("invalid_argument", f"langsmith_tracer.{key} must be a string.")


async def _interrupt_ids(runtime: Runtime, thread_id: str) -> set[str] | None:
    """Ids of the thread's pending interrupts; ``None`` when the thread does not exist."""
    try:
        thread_id = str(uuid.UUID(thread_id))
    except ValueError:
        return None  # a malformed id names no thread
    thread = await runtime.threads.get(thread_id)
    if thread is None:
        return None
    found: set[str] = set()
    for entries in _object(thread.get("interrupts")).values():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                found.add(entry["id"])
    return found


async def _settled_interrupt_ids(runtime: Runtime, thread_id: str) -> set[str] | None:
    """Pending interrupt ids once the thread's in-flight runs have stored their outcome."""
    found = await _interrupt_ids(runtime, thread_id)
    if found or found is None:
        return found
    inflight = await runtime.runs.inflight(thread_id)
    if inflight:
        waits = [asyncio.ensure_future(runtime.wait(run_id)) for run_id in inflight]
        _, pending = await asyncio.wait(waits, timeout=_SETTLE_SECONDS)
        for task in pending:
            task.cancel()
    # Read again even when nothing is in flight now: a run that was still recording its end at
    # the first read may have finished (interrupts stored) before the in-flight check.
    return await _interrupt_ids(runtime, thread_id)


async def _start(
    runtime: Runtime, access: Access, thread_id: str, payload: dict[str, Any], strategy: str
) -> str:
    try:
        body = RunCreate.model_validate(
            {
                **payload,
                "if_not_exists": "create",
                "multitask_strategy": strategy,
                "stream_resumable": True,
            }
        )
    except ValidationError as exc:
        raise ProtocolError("invalid_argument", validation_detail(exc.errors())) from None
    caller = access.caller
    try:
        check_user(body, caller)  # a run never names another user than its caller
        thread = await runtime.threads.get(thread_id) if is_uuid(thread_id) else None
        # An answer to an approval needs the gate's authority, as on the runs endpoints.
        body, gates = await guard_run(runtime, caller, access.approvals, body, thread)
        if gates:
            created = await create_with_decisions(
                runtime,
                body,
                thread_id=thread_id,
                identity=caller.run_configurable(),
                actor=caller.identity or None,
                gates=gates,
                stream_modes=[PROTOCOL_MODE],
            )
        else:
            created = await runtime.create_run(
                body,
                thread_id=thread_id,
                stream_modes=[PROTOCOL_MODE],
                identity=caller.run_configurable(),  # only the server says who started a run
            )
    except HTTPException as exc:
        raise ProtocolError("unknown_error", f"{exc.status_code}: {exc.detail}") from None
    except RunError as exc:
        raise ProtocolError("unknown_error", f"{exc.status}: {exc.detail}") from None
    return created.run_id


async def _run_start(
    runtime: Runtime, caller: Access, thread_id: str, params: dict[str, Any]
) -> dict[str, Any]:
    assistant_id = params.get("assistant_id")
    if not isinstance(assistant_id, str) or not assistant_id:
        raise ProtocolError("invalid_argument", "run.start requires an assistant_id.")
    checkpoint_id = _checkpoint_id(params)
    _check_tracer(params)
    strategy = params.get("multitaskStrategy")
    graph_input = params.get("input")
    # Input sent to a thread that waits on an interrupt answers it, as on the reference.
    resume = graph_input is not None and bool(await _settled_interrupt_ids(runtime, thread_id))
    run_id = await _start(
        runtime,
        caller,
        thread_id,
        {
            "assistant_id": assistant_id,
            "input": None if resume else graph_input,
            "command": {"resume": graph_input} if resume else None,
            "config": params.get("config"),
            "metadata": params.get("metadata"),
            "checkpoint_id": checkpoint_id,
        },
        strategy if strategy in _STRATEGIES else "enqueue",
    )
    return {"run_id": run_id}


def _namespace(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(part, str) for part in raw):
        raise ProtocolError(
            "invalid_argument", "input.respond requires namespace to be a list of strings."
        )
    return raw


def _responses(params: dict[str, Any]) -> dict[str, Any]:
    """``{interrupt_id: response}`` from the one-answer or the ``responses`` form."""
    batch = params.get("responses")
    if not isinstance(batch, list):
        if not isinstance(params.get("interrupt_id"), str):
            raise ProtocolError("invalid_argument", "input.respond requires an interrupt_id.")
        _namespace(params.get("namespace", []))
        return {params["interrupt_id"]: params.get("response")}
    if not batch:
        raise ProtocolError("invalid_argument", "input.respond requires at least one response.")
    answers: dict[str, Any] = {}
    for entry in batch:
        if not isinstance(entry, dict):
            raise ProtocolError(
                "invalid_argument", "input.respond responses entries must be objects."
            )
        if not isinstance(entry.get("interrupt_id"), str):
            raise ProtocolError(
                "invalid_argument", "input.respond responses entries require an interrupt_id."
            )
        _namespace(entry.get("namespace", []))
        answers[entry["interrupt_id"]] = entry.get("response")
    return answers


async def _input_respond(
    runtime: Runtime, caller: Access, thread_id: str, params: dict[str, Any]
) -> dict[str, Any]:
    answers = _responses(params)
    pending = await _settled_interrupt_ids(runtime, thread_id)
    if pending is not None:
        for interrupt_id in answers:
            if interrupt_id not in pending:
                raise ProtocolError(
                    "no_such_interrupt", f"Unknown or already-consumed interrupt: {interrupt_id}"
                )
    latest = await runtime.runs.for_thread(thread_id, limit=1, offset=0, status=None)
    if pending is None or not latest:
        raise ProtocolError("no_such_run", "No interrupted run is bound to this thread.")
    command: dict[str, Any] = {"resume": answers}
    for key in ("update", "goto"):
        if params.get(key) is not None:
            command[key] = params[key]
    payload = {
        "assistant_id": str(latest[0]["assistant_id"]),
        "command": command,
        "config": params.get("config"),
        "metadata": params.get("metadata"),
    }
    await _start(runtime, caller, thread_id, payload, "enqueue")
    return {}


def _subscribe(params: dict[str, Any]) -> dict[str, Any]:
    channels = params.get("channels")
    if not isinstance(channels, list) or not channels:
        raise ProtocolError(
            "invalid_argument", "subscription.subscribe requires a non-empty channels array."
        )
    if not all(supported_channel(c) for c in channels):
        raise ProtocolError(
            "invalid_argument", "subscription.subscribe received an unsupported channel."
        )
    return {"subscription_id": str(uuid.uuid4()), "replayed_events": 0}


def _unsubscribe(params: dict[str, Any]) -> dict[str, Any]:
    subscription_id = params.get("subscription_id")
    if not isinstance(subscription_id, str):
        raise ProtocolError(
            "invalid_argument", "subscription.unsubscribe requires a subscription_id."
        )
    raise ProtocolError("no_such_subscription", f"Unknown subscription: {subscription_id}")


async def _no_run(
    runtime: Runtime, caller: Access, thread_id: str, params: dict[str, Any]
) -> dict[str, Any]:
    raise ProtocolError("no_such_run", "No active run is bound to this thread.")


_Handler = Callable[[Runtime, Access, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def _subscribe_command(
    runtime: Runtime, caller: Access, thread_id: str, params: dict[str, Any]
) -> dict[str, Any]:
    return _subscribe(params)


async def _unsubscribe_command(
    runtime: Runtime, caller: Access, thread_id: str, params: dict[str, Any]
) -> dict[str, Any]:
    return _unsubscribe(params)


_HANDLERS: dict[str, _Handler] = {
    "run.start": _run_start,
    "input.respond": _input_respond,
    "agent.getTree": _no_run,
    "subscription.subscribe": _subscribe_command,
    "subscription.unsubscribe": _unsubscribe_command,
    "subscription.reconnect": _no_run,
}


async def handle_command(
    runtime: Runtime, thread_id: str, command: dict[str, Any], caller: Access
) -> dict[str, Any]:
    """The answer to one well-formed command (an int ``id`` and a string ``method``).

    Runs it starts are the caller's: they carry the caller's identity, as every run does; an
    answer to an approval request needs the gate's authority (else ``unknown_error`` with
    ``403: …`` naming the gate, as other refused run starts are answered).
    """
    command_id, method = command["id"], command["method"]
    handler = _HANDLERS.get(method)
    if handler is None:
        return error_answer(command_id, "unknown_command", f"Unknown protocol command: {method}")
    try:
        result = await handler(runtime, caller, thread_id, _object(command.get("params")))
    except ProtocolError as exc:
        return error_answer(command_id, exc.code, exc.message)
    return {
        "type": "success",
        "id": command_id,
        "result": result,
        "meta": {"applied_through_seq": 0},
    }


def error_answer(command_id: Any, code: str, message: str) -> dict[str, Any]:
    """A protocol error answer."""
    return {"type": "error", "id": command_id, "error": code, "message": message}
