"""From LangGraph stream chunks to the API's SSE events (name + compact JSON data).

Event names follow the LangGraph Server API: the stream mode (``messages-tuple`` is sent as
``messages``; the legacy ``messages`` mode as ``messages/metadata``, ``messages/partial`` and
``messages/complete``), with ``|<namespace>`` appended for subgraph output, except the legacy
``messages/*`` names, which the reference sends without one whatever graph produced them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message

from server.serde import checkpoint_ref, dumps

__all__ = ["Converted", "StreamConverter", "graph_stream_modes", "mode_of_event"]

Converted = tuple[str, bytes]
"""An SSE event ready for the broker: ``(event name, JSON bytes)``."""

# Modes the executor always asks LangGraph for, whatever the client requested: ``values`` gives
# the final state (thread values, runs/wait output) and ``updates`` shows static breakpoints.
_ALWAYS = ("values", "updates")


def graph_stream_modes(requested: Iterable[str]) -> list[str]:
    """LangGraph ``stream_mode`` list for the API modes ``requested``."""
    modes: dict[str, None] = dict.fromkeys(_ALWAYS)
    for mode in requested:
        if mode in ("messages", "messages-tuple"):
            modes["messages"] = None
        elif mode != "events":
            modes[mode] = None
    return list(modes)


def mode_of_event(event: str) -> str:
    """The API stream mode an SSE event name belongs to (for ``stream_mode`` filters on join)."""
    base = event.split("|", 1)[0]
    if base.startswith("messages/"):
        return "messages"
    if base == "messages":
        return "messages-tuple"
    return base


class StreamConverter:
    """Turns one run's LangGraph chunks into SSE events, keeping per-run message state."""

    def __init__(self, requested: Iterable[str], *, emit_checkpoints: bool = True) -> None:
        """Create a converter.

        Args:
            requested: the API stream modes the client asked for.
            emit_checkpoints: ``False`` for runs whose thread is thrown away at the end
                (stateless runs): checkpoint events are then not sent, as the reference does.
        """
        self.requested = frozenset(requested)
        self.emit_checkpoints = emit_checkpoints
        self.last_values: Any = None
        self._last_values_json: bytes | None = None
        self.interrupted = False
        self.interrupts: list[Any] = []
        self._messages: dict[str, BaseMessageChunk | None] = {}

    def convert(self, namespace: Sequence[str], mode: str, payload: Any) -> list[Converted]:
        """Events for one ``(namespace, mode, payload)`` chunk (often none)."""
        root = not namespace
        suffix = "|" + "|".join(namespace) if namespace else ""
        requested = self.requested
        if mode == "values":
            data = dumps(payload) if "values" in requested else None
            if root:
                self.last_values, self._last_values_json = payload, data
            return [] if data is None else [("values" + suffix, data)]
        if mode == "updates":
            if root and isinstance(payload, dict) and "__interrupt__" in payload:
                self.interrupted = True
                self.interrupts = list(payload["__interrupt__"])
            return [("updates" + suffix, dumps(payload))] if "updates" in requested else []
        if mode == "messages":
            return self._message_events(payload, suffix)
        if mode in ("checkpoints", "debug"):
            return self._checkpoint_events(mode, payload, suffix)
        # custom, tasks: passed through as they are.
        return [(mode + suffix, dumps(payload))]

    def _message_events(self, payload: Any, suffix: str) -> list[Converted]:
        out: list[Converted] = []
        if "messages-tuple" in self.requested:
            out.append(("messages" + suffix, dumps(payload)))
        if "messages" in self.requested:
            out.extend(self._legacy_message(payload))
        return out

    def _checkpoint_events(self, mode: str, payload: Any, suffix: str) -> list[Converted]:
        # Checkpoints (and debug's checkpoint entries) are left out when not wanted.
        is_checkpoint = mode == "checkpoints" or (
            isinstance(payload, dict) and payload.get("type") == "checkpoint"
        )
        if is_checkpoint and not self.emit_checkpoints:
            return []
        if mode == "debug" and is_checkpoint:
            payload = _with_checkpoint_refs(payload)
        return [(mode + suffix, dumps(payload))]

    def _legacy_message(self, payload: Any) -> list[Converted]:
        message, metadata = payload
        if not isinstance(message, BaseMessage):
            return []
        msg_id = message.id or ""
        out: list[Converted] = []
        if msg_id not in self._messages:
            self._messages[msg_id] = None
            out.append(("messages/metadata", dumps({msg_id: {"metadata": metadata}})))
        if isinstance(message, BaseMessageChunk):
            previous = self._messages[msg_id]
            merged = message if previous is None else previous + message
            self._messages[msg_id] = merged
            whole = message_chunk_to_message(merged)
            out.append(("messages/partial", dumps([whole])))
        else:
            out.append(("messages/complete", dumps([message])))
        return out

    def last_values_json(self) -> bytes:
        """:attr:`last_values` as JSON (``{}`` when none was seen): the bytes of its ``values``
        event when one was sent, so the end of a run does not serialise its state again."""
        if self.last_values is None:
            return b"{}"
        if self._last_values_json is None:
            self._last_values_json = dumps(self.last_values)
        return self._last_values_json

    def final_values(self) -> Any:
        """The state after the run (``None`` if no values were seen), without interrupts."""
        values = self.last_values
        if isinstance(values, dict) and "__interrupt__" in values:
            values = {k: v for k, v in values.items() if k != "__interrupt__"}
        return values


def _with_checkpoint_refs(event: dict[str, Any]) -> dict[str, Any]:
    # Studio reads checkpoint/parent_checkpoint from debug checkpoint events to build its
    # timeline; LangGraph's own payload only has the configs.
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return event
    payload = {
        **payload,
        "checkpoint": checkpoint_ref(payload.get("config")),
        "parent_checkpoint": checkpoint_ref(payload.get("parent_config")),
    }
    return {**event, "payload": payload}
