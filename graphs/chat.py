"""Chat: one role agent with its tools, for chat sessions over ``messages``.

Each run adds the user's message and the agent's reply (with any tool calls) to the thread.
The agent is a subgraph node, so its approvals (``HumanInTheLoopMiddleware`` for tools whose
risk needs a human) pause the whole thread and resume with ``{"decisions": [...]}``. After each
reply the role's content policy (banned terms, personal data, length) is checked and the
verdict kept in ``policy``.

Long-term memory, for the user in ``context.user_id`` (or the authenticated user) when the run
has a store: before each model call the user's and the organisation's most relevant memories
(facts, earlier sessions, approved instructions for the role) join the system prompt with
their provenance, so no memory message lands in the conversation; after each reply the turn
is kept as an episode, and what the user explicitly asked to be remembered ("remember that
...") as facts. The agent may also search memory itself with the ``recall`` tool. Without a
store (a plain ``graph.ainvoke``) the chat runs without long-term memory. Memory middleware is
asynchronous, so run the graph with ``ainvoke`` / ``astream`` (as every LangGraph server does).

    START -> agent -> policy_check -> END
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer
from typing_extensions import TypedDict

from nodes._private import last_ai_text
from nodes.agent import build_role_agent
from nodes.memory import (
    MEMORY_TOOL_RISKS,
    MemoryContext,
    RememberEpisodeMiddleware,
    StoreRecall,
)
from nodes.memory import memory_tools as make_memory_tools
from nodes.middleware import MemoryRecall
from nodes.policy import ContentPolicy, PolicyVerdict, check_policy
from state.errors import GraphSetupError
from state.roles import Organization, Role, default_roles_dir, load_organization
from tools.registry import ToolRegistry, default_registry

__all__ = ["DEFAULT_MEMORY_TOOLS", "Context", "InputState", "State", "build_chat", "graph"]

DEFAULT_MEMORY_TOOLS: tuple[str, ...] = ("recall",)
"""Memory tools the chat role is granted by default: ``recall`` only, a read. Remembering what
the user asks for needs no tool (the remember step stores it after the reply), and the
``write`` tools ``remember`` / ``forget`` would put an approval prompt in front of the user for
each call, which the role's policy must then ask for (see :func:`build_chat`)."""


class InputState(TypedDict):
    """What a run takes: the user's next message(s)."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The chat: user messages, the agent's replies, tool calls and results."""


class State(InputState, total=False):
    """Everything the chat keeps."""

    policy: PolicyVerdict
    """The content-policy verdict on the latest reply."""


@dataclass(kw_only=True)
class Context(MemoryContext):
    """Per-run settings of a chat: the model, and whose long-term memory to use (user_id,
    org_id, memory_k, memory_min_score)."""

    model: str | None = field(
        default=None,
        metadata={
            "description": "Chat model as provider:model, 'offline' or 'auto'; "
            "None uses the role's model, else the MODEL setting."
        },
    )


def build_chat(
    role: str = "analyst",
    *,
    org: Organization | None = None,
    registry: ToolRegistry | None = None,
    model: BaseChatModel | None = None,
    memory: MemoryRecall | bool = True,
    remember: bool = True,
    memory_tools: Sequence[str] = DEFAULT_MEMORY_TOOLS,
    name: str = "chat",
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[State, Context, InputState, State]:
    """Build a chat with one role of the organisation.

    Args:
        role: The role to chat with.
        org: The organisation; defaults to ``state/roles/default/``.
        registry: Where the role's tools come from. The memory tools named in
            ``memory_tools`` are added to a copy when it lacks them.
        model: A fixed chat model; by default chosen per run from the context.
        memory: ``True`` recalls from the run's store (:class:`nodes.memory.StoreRecall`),
            ``False`` recalls nothing, or pass any recall hook.
        remember: Store each turn as an episode of the role and the facts the user asks to
            be remembered (:class:`nodes.memory.RememberEpisodeMiddleware`).
        memory_tools: Memory tools (``recall``, ``remember``, ``forget``) granted to the role
            on top of its own grant. ``remember`` and ``forget`` are ``write`` tools: the
            role's ``policies.approval_required`` must cover them, so a human approves each
            call.
        name: Graph name.
        checkpointer: Persistence, when not attached by the server.
        store: Long-term store, likewise.

    Returns:
        The compiled graph.

    Raises:
        GraphSetupError: The role does not exist, ``memory_tools`` names an unknown tool, or
            the grant fails the build-time checks (a write memory tool without approval).
    """
    registry = registry if registry is not None else default_registry()
    org = org if org is not None else load_organization(default_roles_dir(), registry=registry)
    try:
        agent_role = org.role(role)
    except LookupError as exc:
        raise GraphSetupError(f"Chat graph '{name}': {exc}") from None
    if memory_tools:
        registry = _with_memory_tools(registry, org, memory_tools, graph_name=name)
        agent_role = _with_grant(agent_role, memory_tools)
    recall: MemoryRecall | None
    if memory is True:
        # Without a store the chat still runs (the default graph compiles without one).
        recall = StoreRecall(organization=org, require_store=False)
    else:
        recall = memory or None
    middleware = [RememberEpisodeMiddleware(agent_role, require_store=False)] if remember else []
    agent = build_role_agent(
        agent_role, registry=registry, model=model, memory=recall, middleware=middleware
    )
    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("agent", agent)
    policy = ContentPolicy.from_role(agent_role)

    async def policy_check(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return {"policy": check_policy(last_ai_text(state["messages"]), policy)}

    builder.add_node("policy_check", policy_check)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", "policy_check")
    builder.add_edge("policy_check", END)
    return builder.compile(name=name, checkpointer=checkpointer, store=store)


def _with_memory_tools(
    registry: ToolRegistry, org: Organization, names: Sequence[str], *, graph_name: str
) -> ToolRegistry:
    """``registry``, or a copy of it with the memory tools it lacks."""
    unknown = [n for n in names if n not in MEMORY_TOOL_RISKS]
    if unknown:
        raise GraphSetupError(
            f"Chat graph '{graph_name}': memory_tools names {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(MEMORY_TOOL_RISKS)}."
        )
    missing = [t for t in make_memory_tools(organization=org) if t.name not in registry]
    if not missing:
        return registry
    extended = registry.copy()  # never add to the caller's registry behind their back
    for tool in missing:
        extended.register(tool)
    return extended


def _with_grant(role: Role, names: Sequence[str]) -> Role:
    """``role`` with ``names`` added to its tool grant (approval policies unchanged)."""
    extra = tuple(n for n in dict.fromkeys(names) if n not in role.tools)
    if not extra:
        return role
    policies = role.policies.model_copy(update={"allowed_tools": (*role.tools, *extra)})
    return role.model_copy(update={"policies": policies})


graph = build_chat("analyst", name="chat")
"""A chat with the analyst (calculator, document tools and ``recall``), with long-term memory
once a store is attached; compiled without persistence."""
