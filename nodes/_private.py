"""Helpers shared by the node factories and graphs. Not public API: import from ``nodes``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from pydantic import TypeAdapter

from nodes.models import get_chat_model

C = TypeVar("C")

MAX_TEXT = 20_000
"""Most characters of one piece of work (a draft, a brief, a result) carried between nodes."""


# One validator per context class: building one costs more than a node step.
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(schema: type[C]) -> TypeAdapter[C]:
    adapter = _ADAPTERS.get(schema)
    if adapter is None:
        adapter = _ADAPTERS[schema] = TypeAdapter(schema)
    return adapter


def context_of(runtime: Any, schema: type[C]) -> C:
    """Return the run's context as ``schema``: its defaults when the run passed none.

    LangGraph hands ``None`` to nodes when a run has no context, and a plain dict when a
    subgraph with another schema is called; both become an instance of ``schema``. A dict is
    validated by pydantic against the dataclass's field types.

    Raises:
        ValueError: The context dict names fields ``schema`` does not have, or a value has
            the wrong type (pydantic's ``ValidationError``, a ``ValueError``).
    """
    context = getattr(runtime, "context", None)
    if isinstance(context, schema):
        return context
    if context is None:
        return schema()
    names = {f.name for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    if isinstance(context, dict):
        unknown = sorted(set(context) - names)
        if unknown:
            raise ValueError(
                f"Unknown context field(s) {', '.join(unknown)}; "
                f"{schema.__name__} has: {', '.join(sorted(names))}"
            )
        return _adapter(schema).validate_python(context)
    # Another graph's context (a parent calling us as a subgraph): keep the shared fields.
    shared = {name: getattr(context, name) for name in names if hasattr(context, name)}
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


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Bound ``text`` to ``limit`` characters, keeping the head and marking the cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def last_human_text(messages: Sequence[AnyMessage]) -> str:
    """Text of the latest human message, or ``""``."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def last_ai_text(messages: Sequence[AnyMessage]) -> str:
    """Text of the latest AI message that has text, or ``""``."""
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            text = message.text
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
