"""Governance: a tension becomes a role change, assessed, approved by a human, then stored.

The proposer (the role that owns the ``roles`` domain, by default the people lead) turns a
tension into one change to one role. The assessment applies it to the current organisation
(the YAML plus stored versions) and runs the same checks as at build time, listing problems
and any new risky tool grants. A human decides at the approval gate (langchain's HITL
schema): ``approve`` stores the changed role as a new version, ``edit`` replaces the change
and assesses it again, ``reject`` records the rejection, ``respond`` sends the proposer back
with the human's guidance. Storing is idempotent per change id, so a re-run never adds a
second version. A change can also come with the input (``change``, e.g. the console's rollback
of a role version): it skips the proposer and goes straight to assessment and approval (the
``instruction_ref`` edge below).

Learned instructions for a role (procedural memory) take the same road. A change of attribute
``instructions`` - proposed from a tension, or an instruction already pending in memory (an
agent's ``remember`` proposal) passed as ``instruction_ref`` - is staged in long-term memory as
a ``pending`` version of its rule, which no agent recalls. ``approve`` makes it the approved
version (superseding the one before) and from then on every agent of the role is given it;
``reject`` records the rejection; an edit stages the edited text and withdraws the earlier
version. Instructions are the organisation's (``context.org_id``), not one user's.

    START -> intake -> propose -> assess -> stage -> approve -> apply -> END
               |                    ^   \\             ^  |-> assess (edit) / propose (respond)
               \\--(instruction_ref)/    \\-(role change)/  \\-> reject -> END
"""

from __future__ import annotations

import hashlib
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

from graphs._common import required_request
from graphs._governance_records import Outcome, Records, decider, in_effect, proposer_role, signed
from nodes._private import chat_model_for, clip, context_of
from nodes.agent import role_system_prompt
from nodes.approval import (
    ALL_DECISIONS,
    GATE_METADATA_KEY,
    GateDecision,
    ask_approval,
    run_identity,
)
from nodes.governance import (
    INSTRUCTIONS,
    ChangeProposal,
    Impact,
    RoleChange,
    apply_change,
    assess_change,
    assess_instruction,
    describe_change,
    normalise_change,
)
from nodes.memory import memory_settings, provenance_for
from state.memory import DEFAULT_ORG, ProcedureStatus
from state.roles import Organization, Role, default_roles_dir, load_organization
from state.roles.approvals import GOVERNANCE_GATE
from tools.registry import ToolRegistry, default_registry

__all__ = ["Context", "InputState", "Outcome", "State", "build_governance", "graph"]


class InputState(TypedDict):
    """What a run takes: the tension as the last human message, or an instruction to review."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; the graph adds what happened to the change."""
    instruction_ref: NotRequired[str]
    """A pending instruction to put before a reviewer instead of a tension: its memory ref,
    ``org/<role>/procedural/<rule>-v<n>`` (e.g. one an agent proposed with ``remember``)."""
    change: NotRequired[dict[str, Any]]
    """A change to put before a reviewer as it is, instead of one the proposer makes from the
    tension (e.g. a rollback the console computed): the fields of a ``ChangeProposal``."""


class State(InputState, total=False):
    """Everything the graph keeps."""

    tension: str
    """What is not working, in the requester's words."""
    requested_by: str
    """The authenticated identity that started the run raising the change (``""`` without
    auth); by default it may not approve the change (separation of duties)."""
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
    procedure: str
    """The memory ref of this run's instruction while it is staged (instruction changes);
    ``""`` when nothing is staged."""
    given: bool
    """Whether this run's change came with the input (``change``) rather than a proposer."""


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
    user_id: str | None = field(
        default=None,
        metadata={
            "description": "Who reviews: recorded as the author of decisions on instructions. "
            "Ignored in favour of the authenticated user, which it must match."
        },
    )
    org_id: str | None = field(
        default=DEFAULT_ORG,
        metadata={"description": "Organisation whose role instructions a change proposes."},
    )


class _Governance(Records):
    """The governance graph's nodes and routers: a change from intake to apply or reject.

    What they change (role versions, procedural memory) comes from :class:`Records`.
    """

    def __init__(
        self,
        org: Organization,
        *,
        registry: ToolRegistry,
        author: Role,
        model: BaseChatModel | None,
        name: str,
    ) -> None:
        super().__init__(org, author=author, name=name)
        self.registry = registry
        self.model = model
        roster = "\n".join(f"- {role.describe()}" for role in org.roles)
        self.system = (
            f"{role_system_prompt(author)}\n\nThe organisation's roles:\n{roster}\n"
            "Propose exactly one change to one role that resolves the tension you are given."
        )
        self.proposal_schema = ChangeProposal.for_roles([role.name for role in org.roles])

    # --- nodes --------------------------------------------------------------------------

    async def intake(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        # Input keys stay in the thread's state: clear them so the next run starts afresh.
        fresh: dict[str, Any] = {
            "change_id": uuid.uuid4().hex,
            "guidance": "",
            "revisions": 0,
            "procedure": "",
            "instruction_ref": "",
            "requested_by": run_identity() or "",
            "change": {},
            "given": False,
        }
        given = state.get("change")
        if given:
            change = normalise_change(given, org=self.org, registry=self.registry, tension="")
            tension = f"Review the requested change: {describe_change(change)}"
            return {**fresh, "tension": tension, "proposal": change, "given": True}
        ref = (state.get("instruction_ref") or "").strip()
        if ref:
            pending = await self.pending_instruction(runtime, ref)
            if pending is None:
                raise ValueError(
                    f"Governance graph '{self.name}': {ref} is not a pending instruction; list the "
                    "pending ones with MemoryStore.procedures(scope, status='pending')."
                )
            change = RoleChange(
                role=self.scope_of_ref(runtime, ref).role,
                attribute=INSTRUCTIONS,
                operation="add",
                value=pending.text,
                motivation=str(pending.value.get("reason") or ""),
                rule=str(pending.value.get("rule") or ""),
            )
            tension = f"Review the proposed instruction {ref}: {pending.text}"
            return {**fresh, "tension": clip(tension, 4_000), "proposal": change, "procedure": ref}
        tension = required_request(
            state["messages"], owner=f"Governance graph '{self.name}'", what="tension", limit=4_000
        )
        return {**fresh, "tension": tension}

    async def propose(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        chat = self.model or chat_model_for(runtime, fallback=self.author.model)
        ask = state.get("tension", "")
        if state.get("guidance"):
            # Guidance first: it overrules the first proposal, which the tension led to.
            ask = f"Reviewer guidance, follow it: {state['guidance']}\n\nThe tension: {ask}"
        structured = chat.with_structured_output(self.proposal_schema, method="function_calling")
        raw = await structured.ainvoke([SystemMessage(self.system), HumanMessage(ask)])
        proposal = normalise_change(raw, org=self.org, registry=self.registry, tension=ask)
        return {"proposal": proposal}

    async def assess(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        proposal = state.get("proposal")
        if proposal is None:
            raise ValueError("assess ran without a proposal.")
        if proposal["attribute"] == INSTRUCTIONS:
            impact = await assess_instruction(
                proposal,
                org=self.org,
                memory=self.memory_of(runtime),
                org_id=memory_settings(runtime).org_id,
            )
        else:
            impact = await assess_change(
                proposal, org=self.org, registry=self.registry, store=self.role_store(runtime)
            )
        return {"impact": impact}

    async def stage(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        """Keep procedural memory in step with the proposal the reviewer will see."""
        proposal, impact = state["proposal"], state["impact"]
        staged_ref = state.get("procedure") or ""
        staged = await self.pending_instruction(runtime, staged_ref) if staged_ref else None
        if staged is not None and self.staged_matches(staged, proposal):
            return {}
        memory = self.memory_of(runtime)
        update: dict[str, Any] = {"procedure": ""}
        if proposal["attribute"] == INSTRUCTIONS and impact["valid"]:
            scope = self.scope_for(runtime, proposal["role"])
            rule, text = proposal.get("rule") or "", proposal["value"]
            # Keyed by the run's change and the text: a re-run after a crash finds the version
            # it stored; an edited text is a new version.
            digest = hashlib.blake2b(f"{rule}\0{text}".encode(), digest_size=6).hexdigest()
            version = await memory.propose_procedure(
                scope,
                rule,
                text,
                provenance=provenance_for(
                    runtime,
                    recorded_by=self.author.name,
                    source="governance",
                    user_id=scope.user_id,
                ),
                reason=proposal["motivation"] or state.get("tension", ""),
                owner="org",
                change_id=f"{state['change_id']}-{digest}",
            )
            update["procedure"] = version.ref
        if staged is not None:
            # The reviewer changed the proposal: the version staged for it is withdrawn.
            await memory.reject_procedure(
                self.scope_of_ref(runtime, staged_ref),
                staged_ref,
                decided_by=self.reviewer(runtime),
                reason="replaced by a revised proposal",
            )
        return update

    async def approve(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        context = context_of(runtime, Context)
        proposal, impact = state["proposal"], state["impact"]
        allowed = ALL_DECISIONS if impact["valid"] else ("edit", "reject", "respond")
        if state.get("revisions", 0) >= context.max_revisions:
            allowed = tuple(d for d in allowed if d != "respond")
        problems = " Problems: " + " ".join(impact["problems"]) if impact["problems"] else ""
        if proposal["attribute"] == INSTRUCTIONS:
            action = "add_instruction"
            metadata: dict[str, Any] = {
                "policy": "a role's learned instructions (procedural memory) are used by its "
                "agents only after human approval",
                "risk": "write",
                "instruction_ref": state.get("procedure") or None,
                "valid": impact["valid"],
            }
        else:
            action = "change_role"
            metadata = {
                "policy": f"domain 'roles' (owner: {self.author.name}) changes need human approval",
                "risk": "write",
                "new_risky_tools": impact["new_risks"],
                "valid": impact["valid"],
            }
        if state.get("requested_by"):
            metadata["requested_by"] = state["requested_by"]
        metadata["domain"] = "roles"
        decision = ask_approval(
            action,
            dict(proposal),
            f"{impact['summary']}{problems}",
            gate=GOVERNANCE_GATE,
            allowed=allowed,
            metadata=metadata,
        )
        update: dict[str, Any] = {"decisions": [decision]}
        if decision["type"] == "edit":
            edited = normalise_change(
                decision["args"], org=self.org, registry=self.registry, tension=""
            )
            return {**update, "proposal": edited}
        if decision["type"] == "respond":
            return {
                **update,
                "guidance": decision.get("message", ""),
                "revisions": state.get("revisions", 0) + 1,
            }
        return update

    async def apply_instruction(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        proposal, ref = state["proposal"], state.get("procedure") or ""
        memory = self.memory_of(runtime)
        scope = self.scope_of_ref(runtime, ref)
        current = await memory.get(scope, ref)
        if current is None:
            raise ValueError(
                f"Governance graph '{self.name}': instruction {ref} is gone; propose it again."
            )
        # A re-run after a crash finds it approved already and does not decide twice.
        if current.status == ProcedureStatus.PENDING.value:
            decisions = state.get("decisions") or []
            note = (decisions[-1].get("message") if decisions else None) or ""
            current = await memory.approve_procedure(
                scope, ref, decided_by=self.reviewer(runtime), reason=note
            )
            await self.record(runtime, "governance.applied", state, ref=ref)
        elif current.status != ProcedureStatus.APPROVED.value:
            raise ValueError(
                f"Governance graph '{self.name}': instruction {ref} is {current.status} and can no "
                "longer be approved; propose it again."
            )
        version = int(current.value.get("version", 0))
        outcome = Outcome(status="applied", role=proposal["role"], version=version, ref=ref)
        signed(outcome, state.get("decisions"))
        text = (
            f"Approved: {describe_change(proposal)} Every '{proposal['role']}' agent now "
            f"follows instruction '{current.value.get('rule')}' version {version} ({ref})."
        )
        return {"outcome": outcome, "messages": [AIMessage(text, name=self.author.name)]}

    async def apply(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        proposal, impact = state["proposal"], state["impact"]
        if proposal["attribute"] == INSTRUCTIONS:
            return await self.apply_instruction(state, runtime)
        store = self.role_store(runtime)
        # Keyed by the change id: a re-run (crash, replay) finds the version it stored before.
        stored = await store.find(proposal["role"], state["change_id"])
        if stored is None:
            current, version = await store.current(self.org, proposal["role"])
            try:
                changed = apply_change(current, proposal)
            except ValueError as exc:
                if not in_effect(exc):
                    raise
                return await self.already_made(state, runtime, str(exc), version)
            stored = await store.apply(
                changed,
                change_id=state["change_id"],
                base_version=impact["base_version"],
                summary=describe_change(proposal),
                audit=self.audit_note(state),
                approved_by=decider(state.get("decisions")),
            )
        outcome = Outcome(status="applied", role=stored["role"], version=stored["version"])
        signed(outcome, state.get("decisions"))
        text = (
            f"Applied: {describe_change(proposal)} "
            f"Role '{stored['role']}' is now at version {stored['version']}."
        )
        return {"outcome": outcome, "messages": [AIMessage(text, name=self.author.name)]}

    async def reject(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        decisions = state.get("decisions") or []
        reason = (decisions[-1].get("message") if decisions else None) or "rejected by a reviewer"
        role = state["proposal"]["role"] if state.get("proposal") else ""
        text = f"Rejected: {describe_change(state['proposal'])} Reason: {reason}"
        outcome = Outcome(status="rejected", role=role, reason=reason)
        signed(outcome, state.get("decisions"))
        await self.record(runtime, "governance.rejected", state, reason=reason)
        ref = state.get("procedure") or ""
        if ref:
            # The staged instruction is kept for the record, rejected, and never recalled.
            if await self.pending_instruction(runtime, ref) is not None:
                await self.memory_of(runtime).reject_procedure(
                    self.scope_of_ref(runtime, ref),
                    ref,
                    decided_by=self.reviewer(runtime),
                    reason=reason,
                )
            outcome["ref"] = ref
        return {"outcome": outcome, "messages": [AIMessage(text, name=self.author.name)]}

    # --- routers ------------------------------------------------------------------------

    def route_intake(self, state: State) -> Literal["propose", "assess"]:
        # An instruction put up for review, or a change given as input, is the proposal already.
        return "assess" if state.get("procedure") or state.get("given") else "propose"

    def route_assess(self, state: State) -> Literal["stage", "approve"]:
        proposal = state.get("proposal")
        if proposal is None:
            raise ValueError("assess ran without a proposal.")
        if proposal["attribute"] == INSTRUCTIONS or state.get("procedure"):
            return "stage"
        return "approve"

    def route_decision(self, state: State) -> Literal["apply", "assess", "propose", "reject"]:
        decisions = state.get("decisions") or []
        if not decisions:
            raise ValueError("approve ran without recording a decision.")
        kind = decisions[-1]["type"]
        return {"approve": "apply", "edit": "assess", "respond": "propose"}.get(kind, "reject")  # type: ignore[return-value]


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
    author = proposer_role(org, proposer, name)
    run = _Governance(org, registry=registry, author=author, model=model, name=name)
    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("intake", run.intake)
    builder.add_node("propose", run.propose)
    builder.add_node("assess", run.assess)
    builder.add_node("stage", run.stage)
    builder.add_node("approve", run.approve, metadata={GATE_METADATA_KEY: GOVERNANCE_GATE})
    builder.add_node("apply", run.apply)
    builder.add_node("reject", run.reject)
    builder.add_edge(START, "intake")
    builder.add_conditional_edges("intake", run.route_intake, ["propose", "assess"])
    builder.add_edge("propose", "assess")
    builder.add_conditional_edges("assess", run.route_assess, ["stage", "approve"])
    builder.add_edge("stage", "approve")
    builder.add_conditional_edges(
        "approve", run.route_decision, ["apply", "assess", "propose", "reject"]
    )
    builder.add_edge("apply", END)
    builder.add_edge("reject", END)
    return builder.compile(name=name, checkpointer=checkpointer, store=store)


graph = build_governance(name="governance")
"""Governance of the default organisation, compiled without persistence."""
