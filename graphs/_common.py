"""Pieces the pattern graphs share. Not public API: each graph exports its own ``Context``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.messages import AnyMessage

from nodes._private import MAX_TEXT, clip, last_human_text


@dataclass(kw_only=True)
class ModelContext:
    """Per-run choice of chat model, the first field of every team graph's ``Context``."""

    model: str | None = field(
        default=None,
        metadata={
            "description": "Chat model as provider:model, 'offline' or 'auto'; "
            "None uses each role's model, else the MODEL setting."
        },
    )


def required_request(
    messages: Sequence[AnyMessage], *, owner: str, what: str, limit: int = MAX_TEXT
) -> str:
    """The last human message, stripped and clipped; the run's input to an intake node.

    Args:
        messages: The run's conversation.
        owner: Who asks, for the error message, e.g. "Pipeline 'pipeline'".
        what: What the message carries, e.g. "request" or "task".
        limit: Most characters kept.

    Raises:
        ValueError: There is no human message, or it is blank.
    """
    text = last_human_text(messages).strip()
    if not text:
        raise ValueError(f"{owner} needs a {what}: send a human message.")
    return clip(text, limit)
