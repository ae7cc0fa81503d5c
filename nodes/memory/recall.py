"""Recall: the role's approved instructions, then the facts and episodes most like the request.

Approved instructions (procedural memory, at most :data:`MAX_INSTRUCTIONS`) come whatever the
request, since they are standing orders; then the ``context.memory_k`` facts and episodes most
similar to the latest request, above ``context.memory_min_score``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal
from uuid import uuid4

from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    RemoveMessage,
    SystemMessage,
)
from langgraph.runtime import Runtime

from nodes._private import clip
from nodes.memory.context import (
    _has_store,
    _last_human,
    _memory_store,
    _role_parts,
    memory_settings,
    resolve_scope,
)
from nodes.middleware import MemoryRecallMiddleware
from state.memory import (
    MAX_K,
    Memory,
    MemoryKind,
    MemoryScope,
)
from state.roles import Organization, Role

RECALL_MESSAGE_PREFIX = "memory-recall-"
"""Id prefix of the system message the recall node adds; the next recall replaces it."""

_MAX_QUERY = 2_000
MAX_INSTRUCTIONS = 10
"""Most approved instructions recall gives a role, whatever their similarity to the request."""
_HEADER = (
    "Long-term memory: your role's approved instructions first, then the most relevant facts "
    "and past work. Each item says who recorded it, in which run and when; it may be out of "
    "date, and the current request takes precedence."
)


def format_memories(
    memories: Sequence[Memory], *, header: str = _HEADER, max_chars: int = 6_000
) -> str:
    """The context block recall places before an agent: one numbered line per memory.

    Args:
        memories: Recalled memories, in the order to show them.
        header: The first line.
        max_chars: Most characters in the block; later memories are left out.

    Returns:
        The block, or ``""`` when there is nothing to say.
    """
    lines = [header]
    size = len(header)
    for number, memory in enumerate(memories, start=1):
        line = f"{number}. {memory.describe()}"
        if size + len(line) + 1 > max_chars:
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) if len(lines) > 1 else ""


async def _recall(
    runtime: Any,
    *,
    role: str,
    domains: Sequence[str],
    query: str,
    kinds: Sequence[MemoryKind] | None,
    k: int | None,
    min_score: float | None | Literal["context"],
) -> list[Memory]:
    settings = memory_settings(runtime)
    scope = resolve_scope(runtime, role=role, domains=domains, settings=settings)
    memory = _memory_store(runtime)
    floor = settings.memory_min_score if min_score == "context" else min_score
    query = clip(query, _MAX_QUERY)
    wanted = list(kinds) if kinds is not None else list(MemoryKind)
    found: list[Memory] = []
    if MemoryKind.PROCEDURAL in wanted:
        # Approved instructions are standing orders for the role: the agent gets them whatever
        # the request is about, not only when they happen to be similar to it.
        found = await memory.recall(
            scope, query, k=MAX_INSTRUCTIONS, kinds=[MemoryKind.PROCEDURAL], min_score=None
        )
    others = [kind for kind in wanted if kind is not MemoryKind.PROCEDURAL]
    if others:
        found += await memory.recall(
            scope,
            query,
            k=k if k is not None else settings.memory_k,
            kinds=others,
            min_score=floor,
        )
    return found


def make_recall_node(
    role: Role | str,
    *,
    domains: Iterable[str] | None = None,
    kinds: Iterable[MemoryKind | str] | None = None,
    k: int | None = None,
    min_score: float | None | Literal["context"] = "context",
    state_key: str | None = None,
) -> Callable[[Mapping[str, Any], Runtime[Any]], Awaitable[dict[str, Any]]]:
    """Build a node that recalls the role's memories for the latest human message.

    By default the node returns a ``messages`` update: it removes the block it added on an
    earlier turn and appends a new :class:`SystemMessage` (id ``memory-recall-…``, name
    ``memory``) listing the top-k memories with their provenance. With ``state_key`` it
    writes the block (a string, ``""`` when nothing was found) to that key instead.

    Args:
        role: The role (its domains widen what it reads) or a role name.
        domains: Overrides the role's domains.
        kinds: Only these memory kinds (default all).
        k: Most facts and episodes; default ``context.memory_k``. Approved instructions (at
            most :data:`MAX_INSTRUCTIONS`) come first whatever their similarity.
        min_score: Similarity floor; ``"context"`` (default) uses ``context.memory_min_score``.
        state_key: Write the block to this state key instead of ``messages``.

    Returns:
        ``async def recall_memories(state, runtime) -> dict``.
    """
    name, role_domains = _role_parts(role, domains)
    wanted = [MemoryKind(kind) for kind in kinds] if kinds is not None else None
    MemoryScope(role=name, domains=role_domains)  # refuse bad names when the graph is built

    async def recall_memories(state: Mapping[str, Any], runtime: Runtime[Any]) -> dict[str, Any]:
        messages: Sequence[AnyMessage] = state.get("messages") or []
        memories = await _recall(
            runtime,
            role=name,
            domains=role_domains,
            query=_last_human(messages),
            kinds=wanted,
            k=k,
            min_score=min_score,
        )
        block = format_memories(memories)
        if state_key is not None:
            return {state_key: block}
        update: list[BaseMessage] = [
            RemoveMessage(id=message.id)
            for message in messages
            if isinstance(message, SystemMessage)
            and isinstance(message.id, str)
            and message.id.startswith(RECALL_MESSAGE_PREFIX)
        ]
        if block:
            update.append(
                SystemMessage(block, id=f"{RECALL_MESSAGE_PREFIX}{uuid4().hex}", name="memory")
            )
        return {"messages": update} if update else {}

    return recall_memories


class StoreRecall:
    """Recall from the run's store, for :class:`nodes.middleware.MemoryRecallMiddleware`.

    Implements the :class:`nodes.middleware.MemoryRecall` protocol: given a role name, the
    latest request and the runtime, returns one line per memory (text and provenance): the
    role's approved instructions first, then the most relevant facts and episodes. The role's
    domains come from ``organization`` (or ``domains``).
    """

    def __init__(
        self,
        *,
        organization: Organization | None = None,
        domains: Mapping[str, Sequence[str]] | None = None,
        kinds: Iterable[MemoryKind | str] | None = None,
        k: int | None = None,
        min_score: float | None | Literal["context"] = "context",
        require_store: bool = True,
    ) -> None:
        """Create the recall function.

        Args:
            organization: Where role domains are looked up.
            domains: Role name -> domains; overrides ``organization``.
            kinds: Only these memory kinds.
            k: Most facts and episodes; default ``context.memory_k``. Approved instructions
                (at most :data:`MAX_INSTRUCTIONS`) come first whatever their similarity.
            min_score: Similarity floor; ``"context"`` uses ``context.memory_min_score``.
            require_store: Raise when the run has no store (default). ``False`` recalls
                nothing then, for graphs that must also run without persistence attached
                (the default ``chat`` and ``staff`` graphs).
        """
        self.organization = organization
        self.domains = {name: tuple(values) for name, values in (domains or {}).items()}
        self.kinds = [MemoryKind(kind) for kind in kinds] if kinds is not None else None
        self.k = k
        self.min_score = min_score
        self.require_store = require_store

    def domains_of(self, role: str) -> tuple[str, ...]:
        """The domains whose memory areas ``role`` reads."""
        if role in self.domains:
            return self.domains[role]
        if self.organization is not None and self.organization.has_role(role):
            return self.organization.role(role).domains
        return ()

    async def memories(self, *, role: str, query: str, runtime: Runtime[Any]) -> list[Memory]:
        """Recall as :class:`Memory` objects (for callers that want more than lines)."""
        if not self.require_store and not _has_store(runtime):
            return []
        return await _recall(
            runtime,
            role=role,
            domains=self.domains_of(role),
            query=query,
            kinds=self.kinds,
            k=self.k,
            min_score=self.min_score,
        )

    async def __call__(self, *, role: str, query: str, runtime: Runtime[Any]) -> Sequence[str]:
        """Recall for the middleware: one line per memory, with provenance."""
        return [m.describe() for m in await self.memories(role=role, query=query, runtime=runtime)]


def memory_recall_middleware(
    role: Role | str,
    *,
    organization: Organization | None = None,
    kinds: Iterable[MemoryKind | str] | None = None,
    k: int | None = None,
    max_chars: int = 4_000,
    require_store: bool = True,
) -> MemoryRecallMiddleware:
    """Recall middleware for a ``create_agent`` agent playing ``role``.

    Before each model call the agent's system prompt gains the role's most relevant memories
    for the latest human message (see :class:`StoreRecall`).

    Args:
        role: The role, or its name (then domains come from ``organization``).
        organization: Where a role name's domains are looked up.
        kinds: Only these memory kinds.
        k: Most facts and episodes; default ``context.memory_k``. Approved instructions (at
            most :data:`MAX_INSTRUCTIONS`) come first whatever their similarity.
        max_chars: Most characters of memories in the prompt.
        require_store: See :class:`StoreRecall`.

    Returns:
        The middleware.
    """
    name = role if isinstance(role, str) else role.name
    domains = None if isinstance(role, str) else {name: role.domains}
    recall = StoreRecall(
        organization=organization,
        domains=domains,
        kinds=kinds,
        k=k,
        require_store=require_store,
    )
    return MemoryRecallMiddleware(
        recall, role=name, max_items=(k or MAX_K) + MAX_INSTRUCTIONS, max_chars=max_chars
    )
