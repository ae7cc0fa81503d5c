"""Whose memories a run reads and writes: per-run memory settings, the scope and provenance.

The user comes from the authenticated user of the run when the server set one
(``runtime.server_info.user``), else from ``context.user_id``. When both are present they
must agree, so a caller cannot read another user's memories by naming them in the context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import (
    AnyMessage,
    HumanMessage,
)
from langgraph.config import get_config

from nodes._private import text_of
from state.memory import (
    DEFAULT_ORG,
    MAX_K,
    MemoryScope,
    MemoryScopeError,
    MemoryStore,
    Provenance,
)
from state.roles import Role


@dataclass(kw_only=True)
class MemoryContext:
    """Per-run memory settings. Graph contexts that share these field names configure memory.

    Nodes read the fields from whatever context the run has (a graph's own ``Context``
    dataclass, a dict, or none), so adding ``user_id`` to a graph's ``Context`` is enough.
    """

    user_id: str | None = field(
        default=None,
        metadata={
            "description": "The user the run acts for; their memories are recalled and "
            "written. Ignored in favour of the authenticated user, which it must match."
        },
    )
    org_id: str | None = field(
        default=DEFAULT_ORG,
        metadata={"description": "Organisation whose shared memories are also recalled."},
    )
    memory_k: int = field(
        default=5,
        metadata={
            "description": "Most facts and past episodes placed before the agent (1-50); the "
            "role's approved instructions come on top."
        },
    )
    memory_min_score: float | None = field(
        default=0.2,
        metadata={
            "description": "Similarity below which a memory is not recalled "
            "(None recalls the top k whatever their score)."
        },
    )


def _field(context: Any, name: str) -> Any:
    if isinstance(context, Mapping):
        return context.get(name)
    return getattr(context, name, None)


def memory_settings(runtime: Any) -> MemoryContext:
    """Read :class:`MemoryContext` fields from the run's context, defaults for the rest.

    Unlike a strict context parse this ignores fields that are not about memory, so it works
    with any graph's context.

    Raises:
        ValueError: A memory field has the wrong type or range.
    """
    context = getattr(runtime, "context", None)
    settings = MemoryContext()
    if context is None:
        return settings
    user_id = _field(context, "user_id")
    if user_id is not None:
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("context.user_id must be a non-empty string")
        settings.user_id = user_id
    has_org = "org_id" in context if isinstance(context, Mapping) else hasattr(context, "org_id")
    if has_org:
        org_id = _field(context, "org_id")
        if org_id is not None and (not isinstance(org_id, str) or not org_id):
            raise ValueError("context.org_id must be a non-empty string or null")
        settings.org_id = org_id
    k = _field(context, "memory_k")
    if k is not None:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ValueError(f"context.memory_k must be an integer from 1 to {MAX_K}")
        settings.memory_k = k
    has_floor = (
        "memory_min_score" in context
        if isinstance(context, Mapping)
        else hasattr(context, "memory_min_score")
    )
    if has_floor:
        floor = _field(context, "memory_min_score")
        if floor is not None and (not isinstance(floor, int | float) or not -1 <= floor <= 1):
            raise ValueError("context.memory_min_score must be a number in [-1, 1] or null")
        settings.memory_min_score = float(floor) if floor is not None else None
    return settings


def _config() -> Mapping[str, Any]:
    try:
        return get_config()
    except RuntimeError:  # called outside a runnable (a unit test calling a helper directly)
        return {}


def _authenticated_user(runtime: Any) -> str | None:
    server = getattr(runtime, "server_info", None)
    user = getattr(server, "user", None)
    identity = getattr(user, "identity", None)
    if isinstance(identity, str) and identity:
        return identity
    # langgraph-api also passes the identity on its own in the run's configurable.
    configurable = _config().get("configurable") or {}
    identity = configurable.get("langgraph_auth_user_id")
    return identity if isinstance(identity, str) and identity else None


def resolve_scope(
    runtime: Any, *, role: str, domains: Iterable[str] = (), settings: MemoryContext | None = None
) -> MemoryScope:
    """The :class:`MemoryScope` of a run: which user, organisation, role and domains.

    Args:
        runtime: The node's (or middleware's, or tool's) runtime.
        role: The acting role's name.
        domains: The domains the role owns.
        settings: Memory settings already read with :func:`memory_settings`.

    Returns:
        The scope.

    Raises:
        MemoryScopeError: ``context.user_id`` names someone other than the authenticated user.
    """
    settings = settings or memory_settings(runtime)
    authenticated = _authenticated_user(runtime)
    user_id = settings.user_id
    if authenticated is not None:
        if user_id is not None and user_id != authenticated:
            raise MemoryScopeError(
                "context.user_id does not match the authenticated user; leave it out, the "
                "authenticated user's memories are used"
            )
        user_id = authenticated
    return MemoryScope(role=role, user_id=user_id, org_id=settings.org_id, domains=tuple(domains))


def provenance_for(
    runtime: Any, *, recorded_by: str, source: str = "agent", user_id: str | None = None
) -> Provenance:
    """Provenance for a write made during this run: thread and run ids from the runtime.

    Args:
        runtime: The runtime of the node, middleware or tool.
        recorded_by: Who writes (usually the role's name).
        source: ``agent``, ``tool``, ``human``, ``critic`` ...
        user_id: On whose behalf (the scope's user).

    Returns:
        The provenance (the time is filled in when it is stored).
    """
    info = getattr(runtime, "execution_info", None)
    thread_id = getattr(info, "thread_id", None)
    run_id = getattr(info, "run_id", None)
    if thread_id is None or run_id is None:
        # Tools and middleware may run with a runtime that lacks execution info, and inside a
        # subgraph (a role agent in the chat or staff graph) LangChain drops the root run's
        # ``run_id`` from the config; servers also put it in ``configurable``.
        config = _config()
        configurable = config.get("configurable") or {}
        metadata = config.get("metadata") or {}
        thread_id = thread_id or configurable.get("thread_id")
        run_id = (
            run_id or config.get("run_id") or configurable.get("run_id") or metadata.get("run_id")
        )
    return Provenance(
        recorded_by=recorded_by,
        source=source,
        user_id=user_id,
        thread_id=str(thread_id)[:200] if thread_id else None,
        run_id=str(run_id)[:200] if run_id else None,
    )


def _role_parts(role: Role | str, domains: Iterable[str] | None) -> tuple[str, tuple[str, ...]]:
    if isinstance(role, str):
        return role, tuple(domains or ())
    return role.name, tuple(domains if domains is not None else role.domains)


def _has_store(runtime: Any) -> bool:
    return getattr(runtime, "store", None) is not None


def _memory_store(runtime: Any, **kwargs: Any) -> MemoryStore:
    store = getattr(runtime, "store", None)
    if store is None:
        raise RuntimeError(
            "long-term memory needs a store: compile the graph with store=... or run it on "
            "the staffgraph server (which attaches the Postgres store)"
        )
    return MemoryStore(store, **kwargs)


def _last_human(messages: Sequence[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return text_of(message)
    return ""
