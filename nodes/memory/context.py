"""Whose memories a run reads and writes: per-run memory settings, the scope and provenance.

The user comes from the authenticated user of the run when the server set one
(``runtime.server_info.user``), else from ``context.user_id``. When both are present they
must agree, so a caller cannot read another user's memories by naming them in the context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from langchain_core.messages import (
    AnyMessage,
    HumanMessage,
)
from langgraph.config import get_config
from pydantic import Field, TypeAdapter, ValidationError

from state.memory import (
    DEFAULT_MERGE_THRESHOLD,
    DEFAULT_ORG,
    DEFAULT_RECALL_K,
    MAX_ID,
    MAX_K,
    MemoryScope,
    MemoryScopeError,
    MemoryStore,
    Provenance,
)
from state.roles import Role

_Id = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_ID)]


@dataclass(kw_only=True)
class MemoryContext:
    """Per-run memory settings. Graph contexts that share these field names configure memory.

    Nodes read the fields from whatever context the run has (a graph's own ``Context``
    dataclass, a dict, or none), so adding ``user_id`` to a graph's ``Context`` is enough.
    Each field has its one default here (the constants in :mod:`state.memory`) and its
    bounds in its annotation; :func:`memory_settings` validates them with pydantic.
    """

    user_id: _Id | None = field(
        default=None,
        metadata={
            "description": "The user the run acts for; their memories are recalled and "
            "written. Ignored in favour of the authenticated user, which it must match."
        },
    )
    org_id: _Id | None = field(
        default=DEFAULT_ORG,
        metadata={"description": "Organisation whose shared memories are also recalled."},
    )
    memory_k: Annotated[int, Field(strict=True, ge=1, le=MAX_K)] = field(
        default=DEFAULT_RECALL_K,
        metadata={
            "description": f"Most facts and past episodes placed before the agent (1-{MAX_K}); "
            "the role's approved instructions come on top."
        },
    )
    memory_min_score: Annotated[float, Field(strict=True, ge=-1, le=1)] | None = field(
        default=0.2,
        metadata={
            "description": "Similarity below which a memory is not recalled "
            "(None recalls the top k whatever their score)."
        },
    )
    memory_merge_threshold: Annotated[float, Field(strict=True, gt=0, le=1)] = field(
        default=DEFAULT_MERGE_THRESHOLD,
        metadata={
            "description": "Similarity at or above which a newly remembered fact updates the "
            "most similar stored fact instead of being added (0-1]."
        },
    )


_FIELDS = tuple(f.name for f in dataclasses.fields(MemoryContext))
# A null user, k or threshold means "not given": the default applies. A null org or score
# floor is a setting of its own (no organisation memories, no floor).
_NULL_IS_UNSET = frozenset({"user_id", "memory_k", "memory_merge_threshold"})
_ADAPTER = TypeAdapter(MemoryContext)


def memory_settings(runtime: Any) -> MemoryContext:
    """Read :class:`MemoryContext` fields from the run's context, defaults for the rest.

    Unlike a strict context parse this ignores fields that are not about memory, so it works
    with any graph's context (a dataclass, a dict, or none).

    Raises:
        ValueError: A memory field has the wrong type or range (pydantic's message).
    """
    context = getattr(runtime, "context", None)
    if context is None:
        return MemoryContext()
    given: dict[str, Any] = {}
    for name in _FIELDS:
        present = name in context if isinstance(context, Mapping) else hasattr(context, name)
        if not present:
            continue
        value = context[name] if isinstance(context, Mapping) else getattr(context, name)
        if value is None and name in _NULL_IS_UNSET:
            continue
        given[name] = value
    try:
        return _ADAPTER.validate_python(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"context.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(problems) from None


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
            return message.text
    return ""
