"""Tool calls with side effects go through the effect ledger, so they happen once per task.

Tools declaring risk ``write`` or ``external`` (``tool.metadata["risk"]``) are executed through
:class:`state.effects.EffectLedger` when the run has one (the server sets it for every run it
executes; elsewhere, e.g. under ``langgraph dev``, tools are simply called). A task executed
again after a crash, a requeue or a lease takeover gets the recorded ``ToolMessage`` back
without the tool being called. ``read`` tools are never recorded.

- :class:`EffectLedgerMiddleware` does it for ``langchain.agents.create_agent`` agents (every
  role agent has it, innermost).
- :func:`call_once` does it for a node that calls a tool itself.

A tool that may safely be called again after a crash mid-call declares
``metadata["idempotent"] = True``; any other gets an error ``ToolMessage`` saying its effect is
unknown (see :mod:`state.effects` for what is and is not covered).

A tool that returns a :class:`~langgraph.types.Command` has it recorded with the checkpoint
serializer (strict msgpack: only allow-listed types revive, nothing is pickled) and replayed as
the same ``Command``. One holding a value that serializer cannot bring back unchanged (an object
of a type outside its allow-list, a set) is recorded as a note that the tool ran, and replayed as
that note (a ``ToolMessage``), with a warning when it is recorded.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from state.db import strict_serializer
from state.effects import CURRENT_LEDGER, EffectKey, EffectLedger, EffectUnknown

__all__ = ["LEDGERED_RISKS", "EffectLedgerMiddleware", "call_once", "effect_key", "is_ledgered"]

LEDGERED_RISKS = frozenset({"write", "external"})
"""Risk levels whose calls go through the ledger."""

_TASK_ID_KEY = "__pregel_task_id"  # LangGraph's configurable key for the executing task's id
_COMMAND = "__command__"  # a recorded Command: {"__command__": base64 of its serialized form}
_SERDE = strict_serializer()

log = logging.getLogger(__name__)


def is_ledgered(tool: BaseTool | None) -> bool:
    """Whether calls of ``tool`` go through the ledger (its declared risk has effects)."""
    return tool is not None and str((tool.metadata or {}).get("risk")) in LEDGERED_RISKS


def effect_key(config: Mapping[str, Any] | None, tool_call_id: str | None) -> EffectKey | None:
    """The ledger key of a tool call made by the task executing with ``config``.

    None outside a task of a graph with a thread (nothing to key the call by).
    """
    configurable = (config or {}).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    task_id = configurable.get(_TASK_ID_KEY)
    if not thread_id or not task_id or not tool_call_id:
        return None
    return EffectKey(
        thread_id=str(thread_id),
        checkpoint_ns=str(configurable.get("checkpoint_ns") or ""),
        task_id=str(task_id),
        tool_call_id=str(tool_call_id),
    )


def _recordable(message: ToolMessage) -> dict[str, Any]:
    artifact = message.artifact
    try:
        json.dumps(artifact)
    except (TypeError, ValueError):
        artifact = None  # not JSON: the replayed message goes without it
    return {
        "content": message.content,
        "status": message.status,
        "name": message.name,
        "artifact": artifact,
    }


def _same(revived: Any, command: Command[Any]) -> bool:
    """Whether ``revived`` is ``command`` (a sequence ``goto`` comes back a list)."""

    def goto(value: Any) -> Any:
        return list(value) if isinstance(value, tuple | list) else value

    return isinstance(revived, Command) and (
        (revived.graph, revived.update, revived.resume, goto(revived.goto))
        == (command.graph, command.update, command.resume, goto(command.goto))
    )


def _recordable_command(command: Command[Any], tool_name: str) -> dict[str, Any] | None:
    """The Command as JSON, or None when the strict serializer cannot bring it back unchanged."""
    try:
        kind, blob = _SERDE.dumps_typed(command)
        intact = kind == "msgpack" and _same(_SERDE.loads_typed((kind, blob)), command)
    except Exception:
        intact = False
    if not intact:
        log.warning(
            "%s returned a Command that cannot be recorded intact; a re-execution gets a note "
            "that it ran instead",
            tool_name,
        )
        return None
    return {_COMMAND: base64.b64encode(blob).decode()}


def _replayed(recorded: Any, tool_call: ToolCall, tool_name: str) -> ToolMessage | Command[Any]:
    if isinstance(recorded, Mapping) and _COMMAND in recorded:
        revived: Command[Any] = _SERDE.loads_typed(
            ("msgpack", base64.b64decode(recorded[_COMMAND]))
        )
        if isinstance(revived.goto, list):  # a sequence comes back a list; Command's is a tuple
            revived = dataclasses.replace(revived, goto=tuple(revived.goto))
        return revived
    if not isinstance(recorded, Mapping):  # a Command that could not be recorded intact
        return ToolMessage(
            content=f"{tool_name} already ran for this call; its effect was applied once.",
            tool_call_id=str(tool_call["id"]),
            name=tool_name,
        )
    return ToolMessage(
        content=recorded.get("content", ""),
        tool_call_id=str(tool_call["id"]),
        name=recorded.get("name") or tool_name,
        status=recorded.get("status") or "success",
        artifact=recorded.get("artifact"),
    )


def _unknown(exc: EffectUnknown, tool_call: ToolCall, tool_name: str) -> ToolMessage:
    return ToolMessage(
        content=f"Error: {exc}. Check whether it took effect before asking for it again.",
        tool_call_id=str(tool_call["id"]),
        name=tool_name,
        status="error",
    )


async def _through_ledger(
    ledger: EffectLedger,
    key: EffectKey,
    tool: BaseTool,
    tool_call: ToolCall,
    call: Callable[[], Awaitable[ToolMessage | Command[Any]]],
) -> ToolMessage | Command[Any]:
    live: list[ToolMessage | Command[Any]] = []

    async def execute() -> Any:
        result = await call()
        live.append(result)
        if isinstance(result, ToolMessage):
            return _recordable(result)
        return _recordable_command(result, tool.name)

    try:
        recorded = await ledger.once(
            key,
            execute,
            tool_name=tool.name,
            idempotent=bool((tool.metadata or {}).get("idempotent")),
        )
    except EffectUnknown as exc:
        return _unknown(exc, tool_call, tool.name)
    if live:  # called now: hand back the real result (a Command stays a Command)
        return live[0]
    return _replayed(recorded, tool_call, tool.name)


async def call_once(
    tool: BaseTool,
    tool_call: ToolCall,
    *,
    config: RunnableConfig | None = None,
    ledger: EffectLedger | None = None,
) -> ToolMessage | Command[Any]:
    """Call ``tool`` for ``tool_call`` from a node, through the ledger when it has effects.

    Args:
        tool: the tool.
        tool_call: the call (its ``id`` keys the ledger record).
        config: the node's config (default: the current one).
        ledger: the ledger (default: the run's, :data:`state.effects.CURRENT_LEDGER`).
    """
    ledger = ledger if ledger is not None else CURRENT_LEDGER.get()
    run_config = config if config is not None else get_config()

    async def call() -> ToolMessage | Command[Any]:
        return await tool.ainvoke({**tool_call, "type": "tool_call"}, run_config)

    key = effect_key(run_config, tool_call.get("id"))
    if ledger is None or key is None or not is_ledgered(tool):
        return await call()
    return await _through_ledger(ledger, key, tool, tool_call, call)


class EffectLedgerMiddleware(AgentMiddleware[Any, Any]):
    """Agent middleware: ``write`` / ``external`` tool calls go through the run's ledger."""

    def __init__(self, *, ledger: EffectLedger | None = None) -> None:
        """Use ``ledger`` (default: the run's, :data:`state.effects.CURRENT_LEDGER`)."""
        super().__init__()
        self._ledger = ledger

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Execute the call once per task; a repeated execution gets the recorded result."""
        ledger = self._ledger if self._ledger is not None else CURRENT_LEDGER.get()
        tool = request.tool
        config = getattr(request.runtime, "config", None)
        key = effect_key(config, request.tool_call.get("id"))
        if ledger is None or key is None or tool is None or not is_ledgered(tool):
            return await handler(request)
        return await _through_ledger(ledger, key, tool, request.tool_call, lambda: handler(request))
