"""Team members and handoffs: the building blocks of supervisors.

A :class:`Member` is anything that takes ``{"messages": [...]}`` and answers with messages: a
role agent, a nested supervisor, any compiled graph. A supervisor delegates to a member with a
handoff tool named ``transfer_to_<member>`` (langgraph-supervisor's convention) whose arguments
are a typed :class:`Brief` (task, context, expected output): the member sees the brief, not
the whole conversation, and its answer comes back as the tool call's result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from nodes._private import clip, humanize, last_ai_text
from nodes.agent import build_role_agent
from nodes.budget import merge_usage, usage_by_role
from nodes.middleware import MemoryRecall
from state.errors import GraphSetupError
from state.roles import Organization, Role
from tools.registry import ToolRegistry

__all__ = [
    "HANDOFF_PREFIX",
    "Brief",
    "Delegation",
    "Handoff",
    "Member",
    "ask_member",
    "brief_text",
    "check_handoff_policy",
    "check_members",
    "handoff_tool",
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


async def ask_member(member: Member, text: str) -> tuple[str, list[AnyMessage], dict[str, int]]:
    """Send ``text`` to ``member`` as a human message.

    Call it from a node: the member then inherits the run's config (checkpointer, context,
    store), and an approval interrupt inside the member pauses the whole run.

    Returns:
        The member's answer (its last AI text, bounded), its transcript, and its token usage
        per role.
    """
    result = await member.graph.ainvoke({"messages": [HumanMessage(text)]})
    messages: list[AnyMessage] = list(result.get("messages") or [])
    answer = clip(last_ai_text(messages)) or f"{member.name} returned no text."
    usage = result.get("usage")
    if not isinstance(usage, dict):
        usage = usage_by_role(messages, default=member.name)
    return answer, messages, usage


async def run_member(member: Member, delegation: Delegation) -> dict[str, Any]:
    """Run ``member`` on one delegation and return the supervisor state update.

    The member's answer becomes the ``ToolMessage`` answering the handoff call, and its full
    transcript is kept in ``handoffs``, so nothing it said is lost on hand-back.
    """
    brief = Brief.model_validate(delegation["brief"])
    answer, messages, usage = await ask_member(member, brief_text(brief))
    reply = ToolMessage(
        content=answer, name=HANDOFF_PREFIX + member.name, tool_call_id=delegation["call_id"]
    )
    record = Handoff(
        call_id=delegation["call_id"],
        member=member.name,
        brief=brief.model_dump(),
        answer=answer,
        messages=messages,
        tokens=sum(usage.values()),
    )
    return {"messages": [reply], "handoffs": [record], "usage": merge_usage(None, usage)}


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
