"""Long-term memory in graphs: recall before an agent acts, remember after it has.

Three ways in, all on ``runtime.store`` (the store the graph runs with) and
:class:`state.memory.MemoryStore`:

* :func:`make_recall_node` - a graph node that searches the memories the role may read and
  adds them, with provenance, as one system message (or into a state key).
* :func:`make_remember_node` - a graph node that stores the run as an episodic memory and the
  facts the user asked to be remembered as semantic memories.
* :class:`StoreRecall` - the :class:`nodes.middleware.MemoryRecall` callable for
  :class:`nodes.middleware.MemoryRecallMiddleware`, so a ``create_agent`` role agent gets its
  memories in the system prompt (:func:`memory_recall_middleware` builds both);
  :class:`RememberEpisodeMiddleware` is the remember step for such agents.

Whose memories: the user comes from the authenticated user of the run when the server set one
(``runtime.server_info.user``), else from ``context.user_id``. When both are present they must
agree, so a caller cannot read another user's memories by naming them in the context. Without
any user only organisation memories are read and nothing user-scoped is written.

What recall returns: the role's approved instructions (procedural memory, at most
:data:`MAX_INSTRUCTIONS`) whatever the request, since they are standing orders; then the
``context.memory_k`` facts and episodes most similar to the latest request, above
``context.memory_min_score``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import BaseModel, Field

from nodes._private import chat_model_for, clip, last_ai_text, text_of
from nodes.middleware import MemoryRecallMiddleware
from state.memory import (
    DEFAULT_ORG,
    MAX_K,
    Episode,
    Memory,
    MemoryKind,
    MemoryScope,
    MemoryScopeError,
    MemoryStore,
    Provenance,
)

if TYPE_CHECKING:
    # Only for annotations: state.roles imports the tools package, which imports this module.
    from state.roles import Organization, Role

__all__ = [
    "MAX_INSTRUCTIONS",
    "RECALL_MESSAGE_PREFIX",
    "ActingRoleMiddleware",
    "FactMode",
    "MemoryContext",
    "RememberEpisodeMiddleware",
    "StoreRecall",
    "acting_role",
    "episode_from_messages",
    "explicit_facts",
    "format_memories",
    "make_recall_node",
    "make_remember_node",
    "memory_recall_middleware",
    "memory_settings",
    "provenance_for",
    "resolve_scope",
]

log = logging.getLogger(__name__)

RECALL_MESSAGE_PREFIX = "memory-recall-"
"""Id prefix of the system message the recall node adds; the next recall replaces it."""

FactMode = Literal["none", "explicit", "model"]
"""How the remember node finds facts: not at all, sentences where the user asks to remember
something, or by asking the chat model (needs a real model)."""

_MAX_FACTS = 5
_MAX_QUERY = 2_000
MAX_INSTRUCTIONS = 10
"""Most approved instructions recall gives a role, whatever their similarity to the request."""
_HEADER = (
    "Long-term memory: your role's approved instructions first, then the most relevant facts "
    "and past work. Each item says who recorded it, in which run and when; it may be out of "
    "date, and the current request takes precedence."
)


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


# An explicit request only ("remember that", "please remember", "note that" ...), and never a
# question: "do you remember what I said?" is not a fact.
_REMEMBER_RE = re.compile(
    r"\b(?:please\s+remember(?:\s+that)?|remember\s+that|remember:|note\s+that|"
    r"keep\s+in\s+mind\s+that|don'?t\s+forget\s+that|for\s+future\s+reference,?)\s*"
    r"(?P<fact>[^.!?\n]{3,500})(?=[.!\n]|$)",
    re.IGNORECASE,
)
_PRONOUNS = (
    (re.compile(r"\bI\s+am\b|\bI'm\b", re.IGNORECASE), "the user is"),
    (re.compile(r"\bI\s+have\b|\bI've\b", re.IGNORECASE), "the user has"),
    (re.compile(r"\b(?:my|mine)\b", re.IGNORECASE), "the user's"),
    (re.compile(r"\bme\b", re.IGNORECASE), "the user"),
    (re.compile(r"\bI\b"), "the user"),
)


def explicit_facts(text: str, *, limit: int = _MAX_FACTS) -> list[str]:
    """Facts the user explicitly asked to be remembered ("remember that my team is …").

    First-person words become "the user" so that the fact reads right when recalled in
    another conversation.

    Args:
        text: A human message.
        limit: Most facts returned.

    Returns:
        Facts as sentences, in order of appearance.
    """
    facts: list[str] = []
    for match in _REMEMBER_RE.finditer(text[:20_000]):
        fact = match.group("fact").strip(" ,;:")
        for pattern, replacement in _PRONOUNS:
            fact = pattern.sub(replacement, fact)
        fact = " ".join(fact.split())
        if len(fact) < 3:
            continue
        fact = fact[0].upper() + fact[1:] + "."
        if fact not in facts:
            facts.append(fact)
        if len(facts) >= limit:
            break
    return facts


class _ExtractedFacts(BaseModel):
    """Durable facts worth remembering about the user or their work."""

    facts: list[str] = Field(
        default_factory=list,
        max_length=_MAX_FACTS,
        description="Each a short standalone sentence naming its subject (e.g. 'The user's "
        "company is Acme.'). Only stable facts, preferences and decisions; no small talk.",
    )


async def _model_facts(model: BaseChatModel, task: str, answer: str) -> list[str]:
    extractor = model.with_structured_output(_ExtractedFacts, method="function_calling")
    result = await extractor.ainvoke(
        [
            SystemMessage(
                "Extract at most five durable facts about the user, their organisation or "
                "their preferences from this exchange. Return none if there are none."
            ),
            HumanMessage(f"User:\n{clip(task, 8_000)}\n\nAssistant:\n{clip(answer, 8_000)}"),
        ]
    )
    parsed = (
        result if isinstance(result, _ExtractedFacts) else _ExtractedFacts.model_validate(result)
    )
    return [" ".join(f.split())[:500] for f in parsed.facts if f.strip()][:_MAX_FACTS]


def episode_from_messages(
    messages: Sequence[AnyMessage], *, review: Mapping[str, Any] | None = None
) -> Episode | None:
    """The episode of the latest turn: the last human request, the tool calls made after it,
    the final answer, and a critic's review when there is one.

    Args:
        messages: The conversation.
        review: A :class:`nodes.critic.Review` (``scores``, ``passed``) of the answer.

    Returns:
        The episode, or ``None`` when the turn has no request or no answer yet.
    """
    start = None
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            start = index
            break
    if start is None:
        return None
    task = text_of(messages[start])
    turn = messages[start + 1 :]
    answer = last_ai_text(turn)
    if not task.strip() or not answer.strip():
        return None
    actions = []
    for message in turn:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                args = ", ".join(f"{k}={str(v)[:60]}" for k, v in list(call["args"].items())[:4])
                actions.append(f"called {call['name']}({args})")
    scores: dict[str, float] = {}
    succeeded: bool | None = None
    if review:
        for entry in review.get("scores") or ():
            if isinstance(entry, Mapping) and isinstance(entry.get("score"), int | float):
                scores[str(entry.get("criterion", "score"))[:64]] = float(entry["score"])
        if isinstance(review.get("passed"), bool):
            succeeded = review["passed"]
    return Episode(
        task=clip(task, 4_000),
        outcome=clip(answer, 4_000),
        actions=tuple(actions[:20]),
        succeeded=succeeded,
        scores=dict(list(scores.items())[:20]),
    )


def make_remember_node(
    role: Role | str,
    *,
    domains: Iterable[str] | None = None,
    facts: FactMode = "explicit",
    episodes: bool = True,
    review_key: str | None = "review",
    model: BaseChatModel | None = None,
    ttl: Mapping[MemoryKind | str, float] | None = None,
    similarity_threshold: float = 0.85,
    require_store: bool = True,
) -> Callable[[Mapping[str, Any], Runtime[Any]], Awaitable[dict[str, Any]]]:
    """Build a node that stores what the latest turn taught the role.

    It writes one episodic memory per run (task, tool calls, answer, critic scores from
    ``state[review_key]``, thread and run) and semantic memories for the facts found in the
    turn (``facts``), merged with similar facts already known. It changes no state. Without
    an identified user it writes nothing.

    Args:
        role: The role (or its name) whose memory this is.
        domains: Overrides the role's domains (writes go to the role's own area).
        facts: ``"explicit"`` (default) stores what the user asked to be remembered;
            ``"model"`` asks the chat model to extract facts; ``"none"`` stores none.
        episodes: Whether to store the episode.
        review_key: State key holding a critic :class:`~nodes.critic.Review`, if any.
        model: Chat model for ``facts="model"``; default: the run's model.
        ttl: Minutes to live per kind, e.g. ``{"episodic": 129600}`` (90 days).
        similarity_threshold: Similarity at which a fact updates an existing one.
        require_store: Raise when the run has no store (default). ``False`` writes nothing
            then, for graphs that must also run without persistence attached.

    Returns:
        ``async def remember(state, runtime) -> dict``.
    """
    name, role_domains = _role_parts(role, domains)
    MemoryScope(role=name, domains=role_domains)  # refuse bad names when the graph is built

    async def remember(state: Mapping[str, Any], runtime: Runtime[Any]) -> dict[str, Any]:
        if not require_store and not _has_store(runtime):
            return {}
        scope = resolve_scope(runtime, role=name, domains=role_domains)
        if scope.user_id is None:
            log.debug("no user identified for role %s: nothing remembered", name)
            return {}
        memory = _memory_store(runtime, similarity_threshold=similarity_threshold, default_ttl=ttl)
        provenance = provenance_for(runtime, recorded_by=name, user_id=scope.user_id)
        messages: Sequence[AnyMessage] = state.get("messages") or []
        review = state.get(review_key) if review_key else None
        episode = episode_from_messages(
            messages, review=review if isinstance(review, Mapping) else None
        )
        if episodes and episode is not None:
            await memory.write_episode(scope, episode, provenance=provenance)
        found: list[str] = []
        if facts == "explicit":
            found = explicit_facts(_last_human(messages))
        elif facts == "model" and episode is not None:
            chosen = model if model is not None else chat_model_for(runtime)
            found = await _model_facts(chosen, episode.task, episode.outcome)
        for fact in found:
            await memory.write_fact(scope, fact, provenance=provenance)
        return {}

    return remember


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


class RememberEpisodeMiddleware(AgentMiddleware):
    """Store each agent run as an episodic memory of the role (and explicit facts).

    The ``create_agent`` counterpart of :func:`make_remember_node`: runs once when the agent
    finishes (``after_agent``).
    """

    def __init__(
        self,
        role: Role | str,
        *,
        domains: Iterable[str] | None = None,
        facts: FactMode = "explicit",
        ttl: Mapping[MemoryKind | str, float] | None = None,
        require_store: bool = True,
    ) -> None:
        """Create the middleware.

        Args:
            role: The role, or its name.
            domains: Overrides the role's domains.
            facts: See :func:`make_remember_node`.
            ttl: Minutes to live per kind.
            require_store: Raise when the run has no store (default); ``False`` writes
                nothing then.
        """
        super().__init__()
        self._remember = make_remember_node(
            role,
            domains=domains,
            facts=facts,
            ttl=ttl,
            review_key=None,
            require_store=require_store,
        )

    async def aafter_agent(
        self, state: AgentState[Any], runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        await self._remember(state, runtime)
        return None


_ACTING_ROLE: ContextVar[str | None] = ContextVar("staffgraph_acting_role", default=None)


def acting_role() -> str | None:
    """The role whose agent is running the current tool call, if a role agent is.

    Set by :class:`ActingRoleMiddleware` around each tool call, so, unlike the run's config
    metadata, nothing a caller sends can change it.
    """
    return _ACTING_ROLE.get()


class ActingRoleMiddleware(AgentMiddleware):
    """Tell the tools an agent runs which role they act for (see :func:`acting_role`).

    The memory tools scope reads and writes by role. Taking the role from the run's config
    (``lc_agent_name``) would let a client that sends its own metadata act as another role;
    :func:`nodes.agent.build_role_agent` adds this middleware so they need not.
    """

    def __init__(self, role: str) -> None:
        """Create the middleware for the agent of ``role``."""
        super().__init__()
        self.role = role

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        token = _ACTING_ROLE.set(self.role)
        try:
            return handler(request)
        finally:
            _ACTING_ROLE.reset(token)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        token = _ACTING_ROLE.set(self.role)
        try:
            return await handler(request)
        finally:
            _ACTING_ROLE.reset(token)
