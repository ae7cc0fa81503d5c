"""No way around an approval gate: the checks run before a run is created or state is written.

* A run that answers or steers a thread waiting on approval (``command.resume``, ``goto``,
  ``update``; also from a forked checkpoint) needs authority for every pending request.
* ``update_state`` needs the gate's authority when ``as_node`` is a gate node (marked with
  :data:`nodes.approval.GATE_METADATA_KEY`, or langchain's HITL middleware node), and the
  authority of every request pending at the checkpoint it writes on.
* A tool message in a run's input (or ``command.update``) must answer a tool call the thread is
  waiting on (else 422), and never one that waits for approval (403): its result would be
  trusted as if the tool had returned it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from nodes.approval import GATE_METADATA_KEY
from server.auth import Caller
from server.auth.approvals import PendingGate, pending_gates, require_authority
from server.routes._common import fail
from server.routes._inbox import translate_resume
from server.routes._threads import load_graph, state_config
from server.runtime import Runtime
from server.schemas import CheckpointConfig, RunCreate
from state.roles.approvals import TOOL_GATE, ApprovalPolicy

__all__ = [
    "approval_metadata",
    "gate_of_node",
    "guard_run",
    "guard_update_state",
    "needs_thread",
]

_HITL_NODE = "HumanInTheLoopMiddleware.after_model"
_MAX_SCANNED = 1_000


def gate_of_node(graph: Pregel, name: str) -> str | None:
    """The gate ``name`` asks at in ``graph``, if it is a gate node."""
    node = graph.nodes.get(name)
    if node is None:
        return None
    gate = (node.metadata or {}).get(GATE_METADATA_KEY)
    if isinstance(gate, str) and gate:
        return gate
    return TOOL_GATE if name.endswith(_HITL_NODE) else None


def _owner(thread: Mapping[str, Any]) -> str | None:
    owner = (thread.get("metadata") or {}).get("owner")
    return owner if isinstance(owner, str) else None


async def _started_by(runtime: Runtime, thread_id: str) -> str | None:
    """Who started the thread's latest run (the one that raised what it waits on)."""
    rows = await runtime.runs.for_thread(thread_id, limit=1, offset=0, status=None)
    if not rows:
        return None
    configurable = (rows[0].get("config") or {}).get("configurable") or {}
    found = configurable.get("langgraph_auth_user_id")
    return found if isinstance(found, str) and found else None


async def authorize_gates(
    runtime: Runtime,
    caller: Caller,
    policy: ApprovalPolicy,
    thread: Mapping[str, Any],
    gates: list[PendingGate],
    *,
    doing: str,
) -> None:
    """403 unless ``caller`` may decide every one of ``gates`` of ``thread``."""
    if not gates or not caller.enforced:
        return
    started = None
    if any(g.requested_by is None and not policy.rule_for(g.gate).self_approval for g in gates):
        started = await _started_by(runtime, str(thread["thread_id"]))
    require_authority(caller, gates, policy, owner=_owner(thread), started_by=started, doing=doing)


def _checkpoint_id(checkpoint: CheckpointConfig | None, checkpoint_id: str | None) -> str | None:
    if checkpoint_id:
        return checkpoint_id
    return checkpoint.checkpoint_id if checkpoint is not None else None


async def _state_at(
    runtime: Runtime,
    thread: Mapping[str, Any],
    checkpoint: CheckpointConfig | None,
    cid: str | None,
    *,
    subgraphs: bool = False,
) -> tuple[list[PendingGate], list[Any]]:
    """The requests pending at a checkpoint of the thread (``None``: its latest), and the
    values of the graph there (with those of interrupted subgraphs when ``subgraphs``)."""
    graph = await load_graph(runtime, dict(thread), required=False)
    if graph is None:
        return [], []
    config = state_config(str(thread["thread_id"]), checkpoint, checkpoint_id=cid)
    snapshot = await graph.aget_state(config, subgraphs=subgraphs)
    values: list[Any] = []
    pending = [snapshot]
    while pending and len(values) < _MAX_SCANNED:
        current = pending.pop()
        values.append(current.values)
        pending.extend(t.state for t in current.tasks if isinstance(t.state, StateSnapshot))
    return pending_gates(list(snapshot.interrupts)), values


# -- tool messages ---------------------------------------------------------------------------


def _field(message: Any, name: str) -> Any:
    if isinstance(message, Mapping):
        if message.get("lc") == 1 and isinstance(message.get("kwargs"), Mapping):
            return message["kwargs"].get(name)
        return message.get(name)
    return getattr(message, name, None)


def _kind(message: Any) -> str | None:
    if isinstance(message, Mapping):
        if message.get("lc") == 1 and isinstance(message.get("id"), list):
            return {"ToolMessage": "tool", "AIMessage": "ai"}.get(str(message["id"][-1]))
        kind = message.get("type") or message.get("role")
        return {"assistant": "ai"}.get(str(kind), str(kind)) if kind is not None else None
    if isinstance(message, list | tuple) and message:
        return str(message[0])
    return getattr(message, "type", None)


def _messages(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        found = value.get("messages")
        if isinstance(found, list):
            return found[:_MAX_SCANNED]
        return [found] if found is not None else []
    if isinstance(value, list):  # command.update as [(key, value), ...]
        out: list[Any] = []
        for pair in value[:_MAX_SCANNED]:
            if isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] == "messages":
                out.extend(_messages({"messages": pair[1]}))
        return out
    return []


def _tool_messages(body: RunCreate) -> list[tuple[str, Any]]:
    """``(where, tool_call_id)`` of every tool message the run would add."""
    found: list[tuple[str, Any]] = []
    sources = [("input", body.input)]
    if body.command is not None:
        sources.append(("command.update", body.command.update))
    for where, value in sources:
        for index, message in enumerate(_messages(value)):
            if _kind(message) == "tool":
                found.append((f"{where}.messages[{index}]", _field(message, "tool_call_id")))
    return found


def _waiting_calls(states: list[Any]) -> dict[str, str]:
    """``{tool_call_id: tool name}`` of the calls still without a result: those of the latest
    AI message of each state (the graph's and its interrupted subgraphs')."""
    found: dict[str, str] = {}
    for values in states:
        found.update(_unanswered(_messages(values) if isinstance(values, Mapping) else []))
    return found


def _unanswered(messages: list[Any]) -> dict[str, str]:
    waiting: dict[str, str] = {}
    for message in messages:
        kind = _kind(message)
        if kind == "ai":
            waiting = {}
            for call in _field(message, "tool_calls") or []:
                call_id = _field(call, "id")
                if isinstance(call_id, str):
                    waiting[call_id] = str(_field(call, "name"))
        elif kind == "tool":
            waiting.pop(str(_field(message, "tool_call_id")), None)
    return waiting


def _check_tool_messages(
    found: list[tuple[str, Any]], states: list[Any], gates: Iterable[PendingGate]
) -> None:
    waiting = _waiting_calls(states)
    for where, call_id in found:
        if not isinstance(call_id, str) or call_id not in waiting:
            listed = ", ".join(sorted(waiting)) or "none"
            fail(
                422,
                f"{where}: a tool message must answer a tool call the thread is waiting on; "
                f"tool_call_id {call_id!r} is not one (waiting: {listed})",
            )
        for gate in gates:
            if waiting[call_id] in gate.actions:
                fail(
                    403,
                    f"{where}: tool call {call_id!r} ({waiting[call_id]}) waits for "
                    f"{gate.describe()}; answer the approval with command.resume, not with a "
                    "tool message",
                )


# -- the guards ------------------------------------------------------------------------------


def needs_thread(body: RunCreate) -> bool:
    """Whether :func:`guard_run` looks at the thread for this run (else it lets it through)."""
    return _steers(body) is not None or bool(_tool_messages(body))


def _steers(body: RunCreate) -> str | None:
    command = body.command
    if command is None:
        return None
    if command.goto is not None or command.update is not None:
        return "skip"
    return "answer" if command.resume is not None else None


async def guard_run(
    runtime: Runtime,
    caller: Caller,
    policy: ApprovalPolicy,
    body: RunCreate,
    thread: Mapping[str, Any] | None,
) -> tuple[RunCreate, list[PendingGate]]:
    """Refuse a run that would get past an approval without authority, or forge a tool result.

    An Agent Inbox answer to our approval requests is translated (:mod:`server.routes._inbox`).

    Args:
        thread: the thread row (``None`` for a stateless run or a thread the run creates).

    Returns:
        The run to create (its resume translated) and the approval requests it answers.

    Raises:
        HTTPException: 403 naming the gate; 422 for a tool message that answers nothing or
            an Agent Inbox answer that cannot be mapped.
    """
    tools = _tool_messages(body)
    doing = _steers(body)
    if thread is None:
        if tools:
            _check_tool_messages(tools, [], ())
        return body, []
    if doing is None and not tools:
        return body, []
    cid = _checkpoint_id(body.checkpoint, body.checkpoint_id)
    states: list[Any] = []
    if cid is not None or tools:
        gates, states = await _state_at(
            runtime, thread, body.checkpoint, cid, subgraphs=bool(tools)
        )
    else:
        gates = pending_gates(thread.get("interrupts"))
    if doing is not None:
        await authorize_gates(runtime, caller, policy, thread, gates, doing=doing)
    if tools:
        _check_tool_messages(tools, states, gates)
    if doing is None:
        return body, []
    return _translated(body, gates), gates


def _translated(body: RunCreate, gates: list[PendingGate]) -> RunCreate:
    command = body.command
    if command is None or command.resume is None:
        return body
    resume = translate_resume(command.resume, gates)
    if resume is command.resume:
        return body
    return body.model_copy(update={"command": command.model_copy(update={"resume": resume})})


async def guard_update_state(
    runtime: Runtime,
    caller: Caller,
    policy: ApprovalPolicy,
    graph: Pregel,
    thread: Mapping[str, Any],
    *,
    as_node: str | None,
    checkpoint: CheckpointConfig | None,
    checkpoint_id: str | None,
) -> list[PendingGate]:
    """Refuse ``update_state`` as a gate node, or on a checkpoint waiting for approval.

    Returns:
        The gates the update writes as or past (for the audit log).

    Raises:
        HTTPException: 403 naming the gate.
    """
    gates: list[PendingGate] = []
    gate = gate_of_node(graph, as_node) if as_node else None
    if gate is not None:
        gates.append(PendingGate(gate=gate, interrupt_id=None, actions=(str(as_node),)))
    cid = _checkpoint_id(checkpoint, checkpoint_id)
    if cid is not None:
        gates += (await _state_at(runtime, thread, checkpoint, cid))[0]
    else:
        gates += pending_gates(thread.get("interrupts"))
    await authorize_gates(runtime, caller, policy, thread, gates, doing="write past")
    return gates


def approval_metadata(caller: Caller, gates: list[PendingGate]) -> dict[str, Any]:
    """What a run that answers approval requests records about it in its metadata."""
    return {
        "decided_by": caller.identity or None,
        "gates": sorted({g.gate for g in gates}),
        "interrupt_ids": [g.interrupt_id for g in gates if g.interrupt_id],
    }
