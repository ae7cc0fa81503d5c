"""Team members and handoffs: the building blocks of supervisors.

A :class:`Member` is anything that takes ``{"messages": [...]}`` and answers with messages: a
role agent, a nested supervisor, any compiled graph. A supervisor delegates to a member with a
handoff tool named ``transfer_to_<member>`` (langgraph-supervisor's convention) whose arguments
are a typed :class:`Brief` (task, context, expected output): the member sees the brief, not
the whole conversation, and its answer comes back as the tool call's result.

Every graph that has members adds each one with :func:`member_node`: a node whose function
invokes the member's compiled graph (LangGraph's "call a subgraph from a node" pattern, used
because a member speaks ``messages`` while its parent hands it a brief). LangGraph finds the
member's graph in that function, so it is a real subgraph: ``get_graph(xray=...)`` draws its
nodes, ``get_subgraphs()`` lists it, ``get_state(subgraphs=True)`` shows its paused state and
its stream namespace is ``<node>:<task id>``. Static interrupts on its inner nodes are passed
down with :func:`inner_interrupts`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from langchain.agents.middleware import AgentMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from nodes._private import clip, humanize, last_ai_text
from nodes.agent import build_role_agent
from nodes.budget import merge_usage, usage_by_role
from nodes.interrupts import INTERRUPTS_KEY, inner_interrupts, interrupts_configurable
from nodes.middleware import MemoryRecall
from state.errors import GraphSetupError
from state.roles import Organization, Role
from tools.registry import ToolRegistry

__all__ = [
    "HANDOFF_PREFIX",
    "INTERRUPTS_KEY",
    "Answer",
    "Brief",
    "Delegation",
    "Handoff",
    "Member",
    "ask_member",
    "brief_text",
    "check_handoff_policy",
    "check_members",
    "delegation_text",
    "handoff_result",
    "handoff_tool",
    "inner_interrupts",
    "interrupts_configurable",
    "member_node",
    "run_member",
]

HANDOFF_PREFIX = "transfer_to_"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Brief(BaseModel):
    """A brief for a team member: what to do, what they need to know, what to hand back."""

    task: str = Field(
        min_length=1, max_length=4_000, description="What the member should do, in a sentence."
    )
    context: str = Field(
        default="",
        max_length=8_000,
        description="Facts and earlier results the member needs; it does not see the chat.",
    )
    expected_output: str = Field(
        default="", max_length=2_000, description="What to hand back, e.g. 'a 100-word summary'."
    )


@dataclass(frozen=True)
class Member:
    """A team member a supervisor can delegate to.

    Attributes:
        name: lower_snake_case; the handoff tool is ``transfer_to_<name>``.
        description: What the member does; the supervisor routes on it.
        graph: Takes ``{"messages": [...]}`` and returns a state with ``messages`` (and
            optionally ``usage``, tokens per role, as supervisors return).
        role: The role behind the member, when there is one (for policy checks).
    """

    name: str
    description: str
    graph: Runnable[Any, Any]
    role: str | None = None

    @classmethod
    def from_role(
        cls,
        role: Role,
        *,
        registry: ToolRegistry | None = None,
        model: BaseChatModel | None = None,
        memory: MemoryRecall | None = None,
        middleware: Sequence[AgentMiddleware[Any, Any]] = (),
    ) -> Member:
        """A member that is the role's agent (see :func:`nodes.build_role_agent`).

        Args:
            role: The role.
            registry: Where the granted tools come from.
            model: A fixed chat model; by default chosen per run.
            memory: Recall hook placing long-term memories in the agent's prompt.
            middleware: More agent middleware, e.g. the remember step.

        Returns:
            The member, named after the role.
        """
        agent = build_role_agent(
            role, registry=registry, model=model, memory=memory, middleware=middleware
        )
        return cls(name=role.name, description=role.describe(), graph=agent, role=role.name)


class Delegation(TypedDict):
    """What a supervisor sends to a member node: one handoff tool call."""

    call_id: str
    member: str
    brief: dict[str, str]


class Handoff(TypedDict):
    """A completed delegation, kept in supervisor state with the member's whole transcript."""

    call_id: str
    member: str
    brief: dict[str, str]
    answer: str
    messages: list[AnyMessage]
    tokens: int


def handoff_tool(member: Member) -> dict[str, Any]:
    """The OpenAI-format tool a supervisor's model calls to delegate to ``member``."""
    spec = convert_to_openai_tool(Brief)
    function = spec["function"]
    function["name"] = HANDOFF_PREFIX + member.name
    function["description"] = f"Hand a task to {humanize(member.name)}. {member.description}"[
        :1_000
    ]
    return spec


def brief_text(brief: Brief) -> str:
    """The message a member receives: the task first, then context and expected output."""
    parts = [brief.task.strip()]
    if brief.context.strip():
        parts.append(f"Context: {brief.context.strip()}")
    if brief.expected_output.strip():
        parts.append(f"Expected output: {brief.expected_output.strip()}")
    return "\n\n".join(parts)


class Answer(NamedTuple):
    """What a member handed back."""

    text: str
    """Its last AI text, bounded (a placeholder when it said nothing)."""
    messages: list[AnyMessage]
    """Its whole transcript."""
    usage: dict[str, int]
    """Tokens it spent, per role."""


def _answer_of(member: Member, result: Any) -> Answer:
    messages: list[AnyMessage] = list(result.get("messages") or [])
    text = clip(last_ai_text(messages)) or f"{member.name} returned no text."
    usage = result.get("usage")
    if not isinstance(usage, dict):
        usage = usage_by_role(messages, default=member.name)
    return Answer(text, messages, usage)


def member_node(
    member: Member,
    request: Callable[[Any], str],
    respond: Callable[[Any, Answer], dict[str, Any]],
) -> Any:
    """A node that hands one request to ``member`` and turns its answer into a state update.

    The member's compiled graph is invoked from the node, so it inherits the run's config
    (checkpointer, context, store), an approval interrupt inside it pauses the whole run, and
    LangGraph sees it as this node's subgraph (it finds ``subgraph`` in the function below).

    Args:
        member: Who works.
        request: The text the member receives, from the node's input (state or ``Send``).
        respond: The state update, from the node's input and the member's answer.

    Returns:
        An async node function named ``ask_<member>``.
    """
    subgraph = member.graph

    async def call_member(state: Any, config: RunnableConfig) -> dict[str, Any]:
        result = await subgraph.ainvoke(
            {"messages": [HumanMessage(request(state))]}, **inner_interrupts(config)
        )
        return respond(state, _answer_of(member, result))

    call_member.__name__ = f"ask_{member.name}"
    return call_member


async def ask_member(member: Member, text: str) -> tuple[str, list[AnyMessage], dict[str, int]]:
    """Send ``text`` to ``member`` as a human message, from your own node.

    Prefer :func:`member_node`, which LangGraph sees as a subgraph. Called from a node, the
    member inherits the run's config (checkpointer, context, store), and an approval
    interrupt inside it pauses the whole run.

    Returns:
        The member's answer (its last AI text, bounded), its transcript, and its token usage
        per role.
    """
    result = await member.graph.ainvoke({"messages": [HumanMessage(text)]})
    answer = _answer_of(member, result)
    return answer.text, answer.messages, answer.usage


def handoff_result(member: Member, delegation: Delegation, answer: Answer) -> dict[str, Any]:
    """The supervisor state update for a member's answer to one delegation.

    The member's answer becomes the ``ToolMessage`` answering the handoff call, and its full
    transcript is kept in ``handoffs``, so nothing it said is lost on hand-back.
    """
    brief = Brief.model_validate(delegation["brief"])
    reply = ToolMessage(
        content=answer.text, name=HANDOFF_PREFIX + member.name, tool_call_id=delegation["call_id"]
    )
    record = Handoff(
        call_id=delegation["call_id"],
        member=member.name,
        brief=brief.model_dump(),
        answer=answer.text,
        messages=answer.messages,
        tokens=sum(answer.usage.values()),
    )
    return {"messages": [reply], "handoffs": [record], "usage": merge_usage(None, answer.usage)}


def delegation_text(delegation: Delegation) -> str:
    """What a member receives for a delegation: its brief as text."""
    return brief_text(Brief.model_validate(delegation["brief"]))


async def run_member(member: Member, delegation: Delegation) -> dict[str, Any]:
    """Run ``member`` on one delegation from your own node; see :func:`handoff_result`."""
    text, messages, usage = await ask_member(member, delegation_text(delegation))
    return handoff_result(member, delegation, Answer(text, messages, usage))


_RESERVED = frozenset({"intake", "lead", "budget_guard", "__start__", "__end__"})


def check_members(members: Sequence[Member], *, owner: str) -> dict[str, Member]:
    """Refuse an empty team, bad or duplicate names, and names the graph uses itself.

    Raises:
        GraphSetupError: Naming ``owner`` and what to change.
    """
    if not members:
        raise GraphSetupError(f"{owner} needs at least one member to delegate to.")
    by_name: dict[str, Member] = {}
    for member in members:
        if not _NAME.fullmatch(member.name):
            raise GraphSetupError(
                f"{owner}: member name {member.name!r} is not lower_snake_case; rename it."
            )
        if member.name in _RESERVED:
            raise GraphSetupError(
                f"{owner}: member name '{member.name}' is used by the graph itself "
                f"({', '.join(sorted(_RESERVED))}); rename the member."
            )
        if member.name in by_name:
            raise GraphSetupError(
                f"{owner}: two members are named '{member.name}'; names must be unique."
            )
        by_name[member.name] = member
    return by_name


def check_handoff_policy(lead: Role, targets: Iterable[str], org: Organization) -> None:
    """Refuse a team whose lead may not hand off to one of its members.

    A member is allowed when its role's circle lies within the lead's
    ``policies.handoff_circles`` (each with its sub-circles), or when it is one of those
    circles itself.

    Raises:
        GraphSetupError: Naming the lead, the member and the field to change.
    """
    reachable: set[str] = set()
    for circle in lead.policies.handoff_circles:
        if org.has_circle(circle):
            reachable.update(c.name for c in org.descendants(circle, include_self=True))
    for target in targets:
        if org.has_circle(target):
            circle_name = target
        elif org.has_role(target):
            try:
                circle_name = org.circle_of(target).name
            except LookupError:
                circle_name = ""
        else:
            raise GraphSetupError(
                f"Supervisor led by '{lead.name}': member '{target}' is neither a role nor a "
                "circle of the organisation."
            )
        if circle_name not in reachable:
            allowed = ", ".join(lead.policies.handoff_circles) or "none"
            raise GraphSetupError(
                f"Role '{lead.name}', field 'policies.handoff_circles': may not hand off to "
                f"'{target}' in circle '{circle_name or 'none'}' (allowed circles: {allowed}). "
                f"Add '{circle_name}' to its handoff_circles or remove the member."
            )
