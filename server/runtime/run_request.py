"""The config and context a run is stored with, from the request that creates it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.auth.identity import REQUEST_IDENTITY, strip_auth_keys
from server.runtime.run_context import request_context
from server.schemas import RunCreate

__all__ = ["stored_config"]


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
