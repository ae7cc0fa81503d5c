"""Chat: one role agent with its tools, for chat sessions over ``messages``.

Each run adds the user's message and the agent's reply (with any tool calls) to the thread.
The agent is a subgraph node, so its approvals (``HumanInTheLoopMiddleware`` for tools whose
risk needs a human) pause the whole thread and resume with ``{"decisions": [...]}``. After each
reply the role's content policy (banned terms, personal data, length) is checked and the
verdict kept in ``policy``.

    START -> agent -> policy_check -> END
"""

from __future__ import annotations

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
from nodes.middleware import MemoryRecall
from nodes.policy import ContentPolicy, PolicyVerdict, check_policy
from state.errors import GraphSetupError
from state.roles import Organization, default_roles_dir, load_organization
from tools.registry import ToolRegistry, default_registry

__all__ = ["Context", "InputState", "State", "build_chat", "graph"]


class InputState(TypedDict):
    """What a run takes: the user's next message(s)."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The chat: user messages, the agent's replies, tool calls and results."""


class State(InputState, total=False):
    """Everything the chat keeps."""

    policy: PolicyVerdict
    """The content-policy verdict on the latest reply."""


@dataclass(kw_only=True)
class Context:
    """Per-run settings of a chat."""

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
    memory: MemoryRecall | None = None,
    name: str = "chat",
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[State, Context, InputState, State]:
    """Build a chat with one role of the organisation.

    Args:
        role: The role to chat with.
        org: The organisation; defaults to ``roles/``.
        registry: Where the role's tools come from.
        model: A fixed chat model; by default chosen per run from the context.
        memory: Recall hook placing long-term memories in the prompt.
        name: Graph name.
        checkpointer: Persistence, when not attached by the server.
        store: Long-term store, likewise.

    Returns:
        The compiled graph.

    Raises:
        GraphSetupError: The role does not exist, or its grant fails the build-time checks.
    """
    registry = registry if registry is not None else default_registry()
    org = org if org is not None else load_organization(default_roles_dir(), registry=registry)
    try:
        agent_role = org.role(role)
    except LookupError as exc:
        raise GraphSetupError(f"Chat graph '{name}': {exc}") from None
    agent = build_role_agent(agent_role, registry=registry, model=model, memory=memory)
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


graph = build_chat("analyst", name="chat")
"""A chat with the analyst (calculator and document tools), compiled without persistence."""
