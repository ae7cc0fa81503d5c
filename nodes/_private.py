"""Helpers shared by the node factories and graphs. Not public API: import from ``nodes``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage

from nodes.models import get_chat_model

C = TypeVar("C")

MAX_TEXT = 20_000
"""Most characters of one piece of work (a draft, a brief, a result) carried between nodes."""


def context_of(runtime: Any, schema: type[C]) -> C:
    """Return the run's context as ``schema``: its defaults when the run passed none.

    LangGraph hands ``None`` to nodes when a run has no context, and a plain dict when a
    subgraph with another schema is called; both become an instance of ``schema``.

    Raises:
        ValueError: The context dict names fields ``schema`` does not have.
    """
    context = getattr(runtime, "context", None)
    if isinstance(context, schema):
        return context
    if context is None:
        return schema()
    if isinstance(context, dict):
        names = {f.name for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
        unknown = sorted(set(context) - names)
        if unknown:
            raise ValueError(
                f"Unknown context field(s) {', '.join(unknown)}; "
                f"{schema.__name__} has: {', '.join(sorted(names))}"
            )
        return schema(**context)
    # Another graph's context (a parent calling us as a subgraph): keep the shared fields.
    shared = {
        f.name: getattr(context, f.name)
        for f in dataclasses.fields(schema)  # type: ignore[arg-type]
        if hasattr(context, f.name)
    }
    return schema(**shared)


def model_spec_of(runtime: Any) -> str | None:
    """The chat model spec the run asks for (``context.model``), if any."""
    context = getattr(runtime, "context", None)
    # A graph without a context schema gets the run's context as a plain dict.
    spec = context.get("model") if isinstance(context, dict) else getattr(context, "model", None)
    if isinstance(spec, str) and spec.strip():
        return spec.strip()
    return None


def chat_model_for(runtime: Any, *, fallback: str | None = None) -> BaseChatModel:
    """Build the chat model for this run: ``context.model``, else ``fallback``, else settings."""
    return get_chat_model(model_spec_of(runtime) or fallback)


def text_of(message: BaseMessage | str | Any) -> str:
    """The plain text of a message (string content or the text blocks of a list)."""
    content = message if isinstance(message, str) else getattr(message, "content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return ""


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Bound ``text`` to ``limit`` characters, keeping the head and marking the cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def last_human_text(messages: Sequence[AnyMessage]) -> str:
    """Text of the latest human message, or ``""``."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return text_of(message)
    return ""


def last_ai_text(messages: Sequence[AnyMessage]) -> str:
    """Text of the latest AI message that has text, or ``""``."""
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            text = text_of(message)
            if text.strip():
                return text
    return ""


def total_tokens(messages: Iterable[BaseMessage]) -> int:
    """Sum of ``usage_metadata.total_tokens`` over the AI messages."""
    total = 0
    for message in messages:
        usage = getattr(message, "usage_metadata", None)
        if isinstance(message, AIMessage) and usage:
            total += int(usage.get("total_tokens", 0))
    return total


def humanize(name: str) -> str:
    """``chief_of_staff`` -> ``Chief of staff``."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]
