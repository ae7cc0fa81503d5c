"""The config and context a run is stored with, from the request that creates it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.auth.identity import REQUEST_IDENTITY, strip_auth_keys
from server.runtime.run_context import request_context
from server.schemas import RunCreate

__all__ = ["stored_config", "stored_kwargs"]


def stored_config(
    body: RunCreate, identity: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's stored config and context: the request's, mirroring each other (see
    :func:`server.runtime.run_context.request_context`), with the checkpoint it starts from and
    the caller's ``langgraph_auth_*`` keys (only the server says who started a run: any a
    client sent are dropped; ``None`` means the caller of the request being served).

    Raises:
        ContextConflict: both ``context`` and ``config.configurable`` were given.
    """
    config = body.config.model_dump(exclude_none=True) if body.config else {}
    sent = strip_auth_keys(config.get("configurable") or {})
    sent_context = strip_auth_keys(body.context) if body.context is not None else None
    configurable, context = request_context(sent, sent_context)
    if identity is None:  # a run a route starts on its own is still the caller's
        identity = REQUEST_IDENTITY.get()
    configurable = {**configurable, **(identity or {})}
    if body.checkpoint is not None:
        configurable.update(body.checkpoint.configurable())
    if body.checkpoint_id:
        configurable["checkpoint_id"] = body.checkpoint_id
    config["configurable"] = configurable
    return config, context


def stored_kwargs(body: RunCreate, *, stateless: bool) -> dict[str, Any]:
    """How the run executes, stored with it for whichever worker claims it."""
    return {
        "input": body.input,
        "command": body.command.model_dump(exclude_none=True) if body.command else None,
        "stream_mode": body.stream_modes(),
        "interrupt_before": body.interrupt_before,
        "interrupt_after": body.interrupt_after,
        "webhook": body.webhook,
        "feedback_keys": body.feedback_keys,
        "temporary": stateless,
        "subgraphs": bool(body.stream_subgraphs),
        "resumable": bool(body.stream_resumable),
        "checkpoint_during": body.durability_mode() != "exit",
        "durability": body.durability_mode(),
    }
