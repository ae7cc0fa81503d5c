"""Governance: a tension becomes a role change, assessed, approved by a human, then stored.

The proposer (the role that owns the ``roles`` domain, by default the people lead) turns a
tension into one change to one role. The assessment applies it to the current organisation
(the YAML plus stored versions) and runs the same checks as at build time, listing problems
and any new risky tool grants. A human decides at the approval gate (langchain's HITL
schema): ``approve`` stores the changed role as a new version, ``edit`` replaces the change
and assesses it again, ``reject`` records the rejection, ``respond`` sends the proposer back
with the human's guidance. Storing is idempotent per change id, so a re-run never adds a
second version.

    START -> intake -> propose -> assess -> approve -> apply -> END
                          ^          ^         |-> assess (edit) / propose (respond)
                          |          |         \\-> reject -> END
"""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer
from typing_extensions import TypedDict

from nodes._private import chat_model_for, clip, context_of, last_human_text
from nodes.agent import role_system_prompt
from nodes.approval import ALL_DECISIONS, GateDecision, ask_approval
from nodes.governance import (
    ChangeProposal,
    Impact,
    RoleChange,
    apply_change,
    assess_change,
    describe_change,
    normalise_change,
)
from state.errors import GraphSetupError
from state.role_store import RoleStore
from state.roles import Organization, Role, default_roles_dir, load_organization
from tools.registry import ToolRegistry, default_registry

__all__ = ["Context", "InputState", "Outcome", "State", "build_governance", "graph"]


class Outcome(TypedDict):
    """How the change ended."""

    status: Literal["applied", "rejected"]
    role: str
    version: NotRequired[int]
    """The stored version, when applied."""
    reason: NotRequired[str]
    """Why it was rejected."""


class InputState(TypedDict):
    """What a run takes: the tension as the last human message."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; the graph adds what happened to the change."""


class State(InputState, total=False):
    """Everything the graph keeps."""

    tension: str
    """What is not working, in the requester's words."""
    change_id: str
    """Id of this run's change: the key its stored version is written under."""
    proposal: RoleChange
    """The change under consideration."""
    impact: Impact
    """The assessment of the proposal."""
    guidance: str
    """A reviewer's guidance for the next proposal."""
    revisions: int
    """Proposals sent back by reviewers in this run."""
    decisions: Annotated[list[GateDecision], operator.add]
    """Every decision at the approval gate."""
    outcome: Outcome
    """Applied (with the version) or rejected (with the reason)."""


@dataclass(kw_only=True)
class Context:
    """Per-run settings of the governance graph."""

    model: str | None = field(
        default=None,
        metadata={
            "description": "Chat model as provider:model, 'offline' or 'auto'; "
            "None uses the proposer's model, else the MODEL setting."
        },
    )
    max_revisions: int = field(
        default=2,
        metadata={"description": "Most times a reviewer may send the proposal back."},
    )


def build_governance(
    org: Organization | None = None,
    *,
    registry: ToolRegistry | None = None,
    proposer: str | None = None,
    model: BaseChatModel | None = None,
    name: str = "governance",
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[State, Context, InputState, State]:
    """Build the governance graph for ``org``.

    Args:
        org: The organisation (the version-0 roles); defaults to ``roles/``.
        registry: Tools roles may be granted; changes are checked against it.
        proposer: The role that proposes changes; defaults to the owner of the ``roles``
            domain.
        model: A fixed chat model for the proposer; by default chosen per run.
        name: Graph name.
        checkpointer: Persistence, when not attached by the server.
        store: Where role versions are kept, when not attached by the server.

    Returns:
        The compiled graph. Runs need a store (``runtime.store``).

    Raises:
        GraphSetupError: No ``proposer`` given and no role owns the ``roles`` domain, or the
            proposer is unknown.
    """
    registry = registry if registry is not None else default_registry()
    org = org if org is not None else load_organization(default_roles_dir(), registry=registry)
    if proposer is None:
        owner = org.domain_owner("roles")
        if owner is None:
            raise GraphSetupError(
                f"Governance graph '{name}': no role owns the 'roles' domain; give one role "
                "domains: [roles] or pass proposer=..."
            )
        proposer = owner.name
    if not org.has_role(proposer):
        raise GraphSetupError(f"Governance graph '{name}': proposer '{proposer}' is not a role.")
    author: Role = org.role(proposer)
    role_names = [role.name for role in org.roles]
    roster = "\n".join(f"- {role.describe()}" for role in org.roles)
    system = (
        f"{role_system_prompt(author)}\n\nThe organisation's roles:\n{roster}\n"
        "Propose exactly one change to one role that resolves the tension you are given."
    )
    proposal_schema = ChangeProposal.for_roles(role_names)

    def role_store(runtime: Runtime[Context]) -> RoleStore:
        if runtime.store is None:
            raise ValueError(
                f"Governance graph '{name}' needs a store for role versions: compile it with "
                "store=... or run it in a server (which attaches one)."
            )
        return RoleStore(runtime.store)

    async def intake(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        tension = last_human_text(state["messages"]).strip()
        if not tension:
            raise ValueError(f"Governance graph '{name}' needs a tension: send a human message.")
        return {
            "tension": clip(tension, 4_000),
            "change_id": uuid.uuid4().hex,
            "guidance": "",
            "revisions": 0,
        }

    async def propose(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        chat = model or chat_model_for(runtime, fallback=author.model)
        ask = state.get("tension", "")
        if state.get("guidance"):
            # Guidance first: it overrules the first proposal, which the tension led to.
            ask = f"Reviewer guidance, follow it: {state['guidance']}\n\nThe tension: {ask}"
        structured = chat.with_structured_output(proposal_schema, method="function_calling")
        raw = await structured.ainvoke([SystemMessage(system), HumanMessage(ask)])
        proposal = normalise_change(raw, org=org, registry=registry, tension=ask)
        return {"proposal": proposal}

    async def assess(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        proposal = state.get("proposal")
        if proposal is None:
            raise ValueError("assess ran without a proposal.")
        impact = await assess_change(
            proposal, org=org, registry=registry, store=role_store(runtime)
        )
        return {"impact": impact}

    async def approve(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        context = context_of(runtime, Context)
        proposal, impact = state["proposal"], state["impact"]
        allowed = ALL_DECISIONS if impact["valid"] else ("edit", "reject", "respond")
        if state.get("revisions", 0) >= context.max_revisions:
            allowed = tuple(d for d in allowed if d != "respond")
        problems = " Problems: " + " ".join(impact["problems"]) if impact["problems"] else ""
        decision = ask_approval(
            "change_role",
            dict(proposal),
            f"{impact['summary']}{problems}",
            gate="governance_approval",
            allowed=allowed,
            metadata={
                "policy": f"domain 'roles' (owner: {author.name}) changes need human approval",
                "risk": "write",
                "new_risky_tools": impact["new_risks"],
                "valid": impact["valid"],
            },
        )
        update: dict[str, Any] = {"decisions": [decision]}
        if decision["type"] == "edit":
            edited = normalise_change(decision["args"], org=org, registry=registry, tension="")
            return {**update, "proposal": edited}
        if decision["type"] == "respond":
            return {
                **update,
                "guidance": decision.get("message", ""),
                "revisions": state.get("revisions", 0) + 1,
            }
        return update

    async def apply(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        proposal, impact = state["proposal"], state["impact"]
        store = role_store(runtime)
        # Keyed by the change id: a re-run (crash, replay) finds the version it stored before.
        stored = await store.find(proposal["role"], state["change_id"])
        if stored is None:
            current, _ = await store.current(org, proposal["role"])
            stored = await store.apply(
                apply_change(current, proposal),
                change_id=state["change_id"],
                base_version=impact["base_version"],
                summary=describe_change(proposal),
            )
        outcome = Outcome(status="applied", role=stored["role"], version=stored["version"])
        text = (
            f"Applied: {describe_change(proposal)} "
            f"Role '{stored['role']}' is now at version {stored['version']}."
        )
        return {"outcome": outcome, "messages": [AIMessage(text, name=author.name)]}

    async def reject(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        decisions = state.get("decisions") or []
        reason = (decisions[-1].get("message") if decisions else None) or "rejected by a reviewer"
        role = state["proposal"]["role"] if state.get("proposal") else ""
        text = f"Rejected: {describe_change(state['proposal'])} Reason: {reason}"
        return {
            "outcome": Outcome(status="rejected", role=role, reason=reason),
            "messages": [AIMessage(text, name=author.name)],
        }

    def route_decision(state: State) -> Literal["apply", "assess", "propose", "reject"]:
        decisions = state.get("decisions") or []
        if not decisions:
            raise ValueError("approve ran without recording a decision.")
        kind = decisions[-1]["type"]
        return {"approve": "apply", "edit": "assess", "respond": "propose"}.get(kind, "reject")  # type: ignore[return-value]

    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("intake", intake)
    builder.add_node("propose", propose)
    builder.add_node("assess", assess)
    builder.add_node("approve", approve)
    builder.add_node("apply", apply)
    builder.add_node("reject", reject)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "propose")
    builder.add_edge("propose", "assess")
    builder.add_edge("assess", "approve")
    builder.add_conditional_edges(
        "approve", route_decision, ["apply", "assess", "propose", "reject"]
    )
    builder.add_edge("apply", END)
    builder.add_edge("reject", END)
    return builder.compile(name=name, checkpointer=checkpointer, store=store)


graph = build_governance(name="governance")
"""Governance of the default organisation, compiled without persistence."""
