"""Remember: store the run as an episodic memory and the facts the user asked to be remembered."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    SystemMessage,
)
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from nodes._private import chat_model_for, clip, last_ai_text
from nodes.memory.context import (
    _has_store,
    _last_human,
    _memory_store,
    _role_parts,
    memory_settings,
    provenance_for,
    resolve_scope,
)
from state.memory import (
    Episode,
    MemoryKind,
    MemoryScope,
)
from state.roles import Role

log = logging.getLogger(__name__)

FactMode = Literal["none", "explicit", "model"]
"""How the remember node finds facts: not at all, sentences where the user asks to remember
something, or by asking the chat model (needs a real model)."""

_MAX_FACTS = 5


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
    task = messages[start].text
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
    similarity_threshold: float | None = None,
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
        similarity_threshold: Similarity at which a fact updates an existing one; by default
            ``context.memory_merge_threshold`` (see :class:`~nodes.memory.MemoryContext`).
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
        settings = memory_settings(runtime)
        scope = resolve_scope(runtime, role=name, domains=role_domains, settings=settings)
        if scope.user_id is None:
            log.debug("no user identified for role %s: nothing remembered", name)
            return {}
        threshold = (
            similarity_threshold
            if similarity_threshold is not None
            else settings.memory_merge_threshold
        )
        memory = _memory_store(runtime, similarity_threshold=threshold, default_ttl=ttl)
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
