"""State payloads as protocol v2 ``values`` events carry them: messages in their compact form.

Facts taken from the reference's wire: a message is ``{"type", "content", "id"}`` plus only what
it has (``name``, non-empty ``response_metadata``, a tool message's ``tool_call_id`` /
``status`` / ``artifact``, an AI message's non-empty ``tool_calls`` and
``invalid_tool_calls`` typed as content blocks); ``user`` / ``assistant`` read as ``human`` /
``ai``; list content becomes protocol content blocks; ``__interrupt__`` keys are dropped (they
travel as ``input.requested`` events).
"""

from __future__ import annotations

from typing import Any

__all__ = ["normalize_state"]

_MESSAGE_TYPES = frozenset({"human", "ai", "system", "tool", "function", "remove"})
_ALIASES = {"user": "human", "assistant": "ai"}
_BLOCK_TYPES = frozenset(
    {
        "text",
        "reasoning",
        "tool_call",
        "tool_call_chunk",
        "invalid_tool_call",
        "server_tool_call",
        "server_tool_call_chunk",
        "server_tool_call_result",
        "image",
        "audio",
        "video",
        "file",
        "non_standard",
    }
)


def _message_type(value: Any) -> str | None:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    kind = _ALIASES.get(value["type"], value["type"])
    return kind if kind in _MESSAGE_TYPES else None


def _block(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        return {"type": "text", "text": value}
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    if value["type"] in _BLOCK_TYPES:
        return value
    if value["type"] == "image_url":
        image = value.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return {"type": "image", "url": url} if isinstance(url, str) else None
    return {"type": "non_standard", "value": dict(value)}


def _content(content: Any) -> Any:
    if not isinstance(content, list):
        return content
    return [block for block in map(_block, content) if block is not None]


def _tool_calls(message: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        if not isinstance(call.get("name"), str) or not isinstance(call.get("args"), dict):
            entry = {"type": "invalid_tool_call", "error": "Malformed args."}
            entry.update({k: call[k] for k in ("id", "name") if isinstance(call.get(k), str)})
            invalid.append(entry)
            continue
        entry = {"type": "tool_call", "name": call["name"], "args": call["args"]}
        if isinstance(call.get("id"), str):
            entry["id"] = call["id"]
        valid.append(entry)
    for call in message.get("invalid_tool_calls") or []:
        if isinstance(call, dict):
            entry = {"type": "invalid_tool_call"}
            entry.update({k: call[k] for k in ("id", "name", "args") if _is_text(call.get(k))})
            error = call.get("error")
            entry["error"] = error if isinstance(error, str) else "Malformed args."
            invalid.append(entry)
    return valid, invalid


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _tool_fields(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value.get("tool_call_id"), str):
        out["tool_call_id"] = value["tool_call_id"]
    if value.get("status") in ("success", "error"):
        out["status"] = value["status"]
    if value.get("artifact") is not None:
        out["artifact"] = value["artifact"]
    return out


def _ai_fields(value: dict[str, Any]) -> dict[str, Any]:
    valid, invalid = _tool_calls(value)
    out: dict[str, Any] = {}
    if valid:
        out["tool_calls"] = valid
    if invalid:
        out["invalid_tool_calls"] = invalid
    return out


def _message(value: dict[str, Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "content": _content(value.get("content", ""))}
    for key in ("id", "name"):
        if isinstance(value.get(key), str):
            out[key] = value[key]
    if isinstance(value.get("response_metadata"), dict) and value["response_metadata"]:
        out["response_metadata"] = value["response_metadata"]
    if kind == "tool":
        out.update(_tool_fields(value))
    elif kind == "ai":
        out.update(_ai_fields(value))
    return out


def normalize_state(value: Any) -> Any:
    """``value`` (plain JSON) with every message in protocol form and no ``__interrupt__``."""
    if isinstance(value, list):
        out = []
        for item in value:
            kind = _message_type(item)
            out.append(_message(item, kind) if kind is not None else normalize_state(item))
        return out
    if isinstance(value, dict):
        return {k: normalize_state(v) for k, v in value.items() if k != "__interrupt__"}
    return value
