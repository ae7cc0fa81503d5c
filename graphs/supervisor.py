"""Supervisor: a lead delegates to team members with ``transfer_to_<member>`` handoffs.

The lead's model sees one handoff tool per member, each taking a typed brief (task, context,
expected output). Every handoff call is sent to its member's node (several at once run in
parallel); the member's answer returns as the call's ``ToolMessage`` and its transcript is kept
in ``handoffs``. A budget guard checks token usage, then the lead either delegates again or
writes the final answer from the results. Members can be supervisors themselves.

    START -> intake -> lead -(Send per handoff)-> <member> ... -> budget_guard -> lead
                         \\-> END (final answer)                    \\-> END (over budget)
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer, Overwrite, Send
from pydantic import ValidationError
from typing_extensions import TypedDict

from graphs._common import ModelContext
from nodes._private import chat_model_for, context_of
from nodes.agent import role_system_prompt
from nodes.approval import GATE_METADATA_KEY, GateDecision
from nodes.budget import BudgetStatus, check_budget, merge_usage, request_budget_approval
from nodes.team import (
    HANDOFF_PREFIX,
    Brief,
    Delegation,
    Handoff,
    Member,
    check_handoff_policy,
    check_members,
    delegation_text,
    handoff_result,
    handoff_tool,
    member_node,
)
from state.roles import Organization, Role, default_roles_dir, load_organization
from state.usage import ROLE_METADATA_KEY
from tools.registry import ToolRegistry, default_registry

__all__ = ["Context", "InputState", "State", "build_supervisor", "default_team", "graph"]


class InputState(TypedDict):
    """What a run takes: the conversation, whose last human message is the request."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation: requests, the lead's handoff calls, members' answers, final answers."""


class State(InputState, total=False):
    """Everything the supervisor keeps."""

    handoffs: Annotated[list[Handoff], operator.add]
    """Every completed delegation: brief, answer and the member's whole transcript."""
    usage: Annotated[dict[str, int], merge_usage]
    """Tokens spent in the current run, per role."""
    rounds: int
    """Delegation rounds in the current run."""
    budget: BudgetStatus
    """The budget guard's latest finding."""
    decisions: Annotated[list[GateDecision], operator.add]
    """Human decisions taken at the budget gate."""


@dataclass(kw_only=True)
class Context(ModelContext):
    """Per-run settings of a supervisor."""

    max_rounds: int = field(
        default=3,
        metadata={"description": "Most delegation rounds before the lead must answer."},
    )
    run_token_budget: int | None = field(
        default=None,
        metadata={"description": "Most tokens the whole team may spend in one run."},
    )
    on_budget_exceeded: Literal["stop", "ask"] = field(
        default="stop",
        metadata={"description": "Over budget: stop the run, or ask a human to approve."},
    )


def _lead_prompt(lead: Role | None, members: Sequence[Member]) -> str:
    base = role_system_prompt(lead) if lead is not None else "Role: Supervisor"
    team = "\n".join(f"- {HANDOFF_PREFIX}{m.name}: {m.description}" for m in members)
    return (
        f"{base}\n\nYou lead this team:\n{team}\n"
        "Delegate work with the transfer tools, one brief per task: the task, the context the "
        "member needs (they do not see this conversation) and the output you expect. When the "
        "results are back, combine them into one final answer for the requester."
    )


def _open_calls(messages: Sequence[AnyMessage]) -> list[dict[str, Any]]:
    """Tool calls of the latest AI message that no ToolMessage answers yet."""
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return [dict(c) for c in message.tool_calls if c.get("id") not in answered]
    return []


class _Supervisor:
    """The supervisor's nodes and routers, in the order a run meets them.

    ``intake`` resets the run's counters, ``lead`` delegates or answers, each member is a
    subgraph node answering one handoff, ``budget_guard`` stops, asks or lets the lead go on.
    """

    def __init__(
        self,
        members: Sequence[Member],
        *,
        lead: Role | None,
        org: Organization | None,
        model: BaseChatModel | None,
        name: str,
    ) -> None:
        self.by_name = check_members(members, owner=f"Supervisor '{name}'")
        if lead is not None and org is not None:
            check_handoff_policy(lead, [m.role or m.name for m in members], org)
        self.lead = lead
        self.lead_name = lead.name if lead is not None else name
        self.model = model
        self.tools = [handoff_tool(m) for m in members]
        self.system = SystemMessage(_lead_prompt(lead, members))
        self.role_budgets = {
            m.role: org.role(m.role).policies.token_budget
            for m in members
            if org is not None and m.role is not None and org.has_role(m.role)
        }

    async def intake(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        # A new run starts its own count of rounds and tokens.
        return {"usage": Overwrite({}), "rounds": 0, "budget": check_budget({})}

    async def lead_node(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        context = context_of(runtime, Context)
        fallback = self.lead.model if self.lead else None
        chat = self.model or chat_model_for(runtime, fallback=fallback)
        rounds = state.get("rounds", 0)
        bound = chat.bind_tools(self.tools) if rounds < context.max_rounds else chat
        reply = await bound.ainvoke([self.system, *state["messages"]])
        reply.name = self.lead_name
        update: dict[str, Any] = {"messages": [reply]}
        if reply.usage_metadata:
            update["usage"] = {self.lead_name: reply.usage_metadata["total_tokens"]}
        # A call that is not a valid handoff is answered here, so the lead sees why and can
        # try again; only valid ones are sent to members.
        refused = [
            ToolMessage(content=problem, name=c["name"], tool_call_id=c["id"] or "", status="error")
            for c in reply.tool_calls
            if (problem := _handoff_problem(c, self.by_name))
        ]
        if reply.tool_calls:
            update["rounds"] = rounds + 1
            update["messages"] = [reply, *refused]
        return update

    async def budget_guard(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        context = context_of(runtime, Context)
        status = check_budget(
            state.get("usage") or {},
            role_budgets=self.role_budgets,
            run_budget=context.run_token_budget,
        )
        if not status["exceeded"]:
            return {"budget": status}
        previous = state.get("budget")
        if previous is not None and previous["action"] == "approved":
            return {"budget": {**status, "action": "approved"}}  # a human already said yes
        if context.on_budget_exceeded == "stop":
            return {"budget": status, "messages": [_over_budget(status, self.lead_name)]}
        decision = request_budget_approval(status)
        if decision["type"] == "approve":
            return {"budget": {**status, "action": "approved"}, "decisions": [decision]}
        return {
            "budget": status,
            "decisions": [decision],
            "messages": [_over_budget(status, self.lead_name)],
        }

    def route_lead(self, state: State) -> list[Send] | Literal["lead", "__end__"]:
        """One ``Send`` per valid handoff; the lead again after refusals; else the end."""
        last = state["messages"][-1] if state.get("messages") else None
        if last is None:
            raise ValueError("Supervisor got no messages; send {'messages': [request]}.")
        calls = [c for c in _open_calls(state["messages"]) if not _handoff_problem(c, self.by_name)]
        if calls:
            return [_delegation(c) for c in calls]
        if isinstance(last, ToolMessage):
            return "lead"  # only refused calls: let the lead try again
        return "__end__"

    def route_budget(self, state: State) -> Literal["lead", "__end__"]:
        budget = state.get("budget")
        if budget is None:
            raise ValueError("budget_guard ran without writing a budget status.")
        return "__end__" if budget["action"] == "stop" else "lead"


def build_supervisor(
    members: Sequence[Member],
    *,
    lead: Role | None = None,
    org: Organization | None = None,
    model: BaseChatModel | None = None,
    name: str = "supervisor",
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[State, Context, InputState, State]:
    """Build a supervisor over ``members``.

    Args:
        members: The team (role agents via :meth:`Member.from_role`, nested supervisors, any
            graph taking ``messages``).
        lead: The role that leads: its prompt, name on messages and handoff policy.
        org: The organisation ``lead`` and the members' roles belong to; when given with a
            lead, every member must lie within the lead's ``policies.handoff_circles``.
        model: A fixed chat model for the lead; by default chosen per run from the context.
        name: Graph name.
        checkpointer: Persistence, when not attached by the server.
        store: Long-term store, likewise.

    Returns:
        The compiled graph.

    Raises:
        GraphSetupError: No members, bad or duplicate member names, or a member outside the
            lead's allowed handoff circles.
    """
    run = _Supervisor(members, lead=lead, org=org, model=model, name=name)
    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("intake", run.intake)
    # The lead's own model calls count against its role in usage and traces.
    builder.add_node("lead", run.lead_node, metadata={ROLE_METADATA_KEY: run.lead_name})
    builder.add_node("budget_guard", run.budget_guard, metadata={GATE_METADATA_KEY: "budget_guard"})
    for member in members:
        # The member's graph is a subgraph: Studio's xray draws its nodes.
        builder.add_node(member.name, _member_node(member), input_schema=Delegation)
        builder.add_edge(member.name, "budget_guard")
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "lead")
    builder.add_conditional_edges("lead", run.route_lead, [*run.by_name, "lead", END])
    builder.add_conditional_edges("budget_guard", run.route_budget, ["lead", END])
    return builder.compile(name=name, checkpointer=checkpointer, store=store)


def _delegation(call: Mapping[str, Any]) -> Send:
    """Send one handoff call to its member's node with the brief it carries."""
    member = call["name"].removeprefix(HANDOFF_PREFIX)
    brief = {k: str(v) for k, v in (call.get("args") or {}).items()}
    return Send(member, Delegation(call_id=call["id"], member=member, brief=brief))


def _is_handoff(tool_name: str, members: dict[str, Member]) -> bool:
    return tool_name.startswith(HANDOFF_PREFIX) and tool_name[len(HANDOFF_PREFIX) :] in members


def _handoff_problem(call: Mapping[str, Any], members: dict[str, Member]) -> str:
    """Why a tool call of the lead cannot be delegated ("" when it can)."""
    if not _is_handoff(call["name"], members):
        handoffs = ", ".join(HANDOFF_PREFIX + name for name in members)
        return f"Error: {call['name']} is not a handoff of this team; use one of {handoffs}."
    try:
        Brief.model_validate(call.get("args") or {})
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return (
            f"Error: invalid brief for {call['name']} ({fields}). "
            "Send a task, and optionally context and expected_output."
        )
    return ""


def _member_node(member: Member) -> Any:
    """The member as a subgraph node: it gets the brief, its answer answers the handoff."""
    return member_node(
        member,
        request=delegation_text,
        respond=lambda delegation, answer: handoff_result(member, delegation, answer),
    )


def _over_budget(status: BudgetStatus, lead: str) -> AIMessage:
    return AIMessage(
        content="Stopped: the team is over its token budget. " + " ".join(status["reasons"]),
        name=lead,
    )


def default_team(
    org: Organization | None = None, *, registry: ToolRegistry | None = None
) -> tuple[Role, list[Member], Organization]:
    """The default supervisor team: the chief of staff leading writer, analyst and finance."""
    registry = registry if registry is not None else default_registry()
    org = org if org is not None else load_organization(default_roles_dir(), registry=registry)
    members = [
        Member.from_role(org.role(name), registry=registry)
        for name in ("writer", "analyst", "finance")
    ]
    return org.role("chief_of_staff"), members, org


_lead, _members, _org = default_team()
graph = build_supervisor(_members, lead=_lead, org=_org, name="supervisor")
"""The default team, compiled without persistence (the server attaches it)."""
