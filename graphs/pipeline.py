"""Pipeline: stages run in order, each followed by a critic gate.

A stage's member does its part of the request, seeing earlier stages' accepted outputs. The
critic scores the result against the stage's criteria. A failed gate sends the stage back
with the critique, up to ``max_attempts`` tries; after that a human decides at the escalation
gate (langchain's HITL schema): ``approve`` accepts the output, ``edit`` accepts an edited
output, ``reject`` stops the pipeline, ``respond`` gives the stage one more try with the
human's guidance.

Each stage is a node named after the stage whose member is a subgraph (Studio's xray draws
the member's own nodes inside it):

    START -> intake -> <stage 1> -> gate -> <same stage> (retry) | <next stage> | finish | escalate
                                            escalate -> <same or next stage> | finish
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer, Overwrite
from typing_extensions import TypedDict

from graphs._common import ModelContext, required_request
from nodes._private import chat_model_for, clip, context_of
from nodes.approval import GATE_METADATA_KEY, GateDecision, ask_approval
from nodes.budget import merge_usage
from nodes.critic import Criterion, Review, check_criteria, review
from nodes.team import Answer, Member, member_node
from state.errors import GraphSetupError
from state.roles import default_roles_dir, load_organization
from tools.registry import ToolRegistry, default_registry

__all__ = [
    "Context",
    "InputState",
    "Stage",
    "StageReview",
    "State",
    "build_pipeline",
    "default_stages",
    "graph",
]


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One step of a pipeline.

    Attributes:
        name: lower_snake_case, unique in the pipeline.
        member: Who does the work.
        instructions: What this stage contributes, e.g. "Draft the report".
        criteria: What the gate checks after the stage (at least one).
    """

    name: str
    member: Member
    instructions: str
    criteria: tuple[Criterion, ...]


class StageReview(TypedDict):
    """One gate review."""

    stage: str
    attempt: int
    review: Review


class InputState(TypedDict):
    """What a run takes: the request as the last human message."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; the pipeline adds its final answer."""


class State(InputState, total=False):
    """Everything the pipeline keeps."""

    request: str
    """The request being worked on."""
    stage: int
    """Index of the current stage."""
    attempt: int
    """Attempts made at the current stage."""
    extra_attempts: int
    """Tries added at the current stage by reviewers who responded with guidance."""
    draft: str
    """The current stage's latest output."""
    feedback: str
    """Critique or human guidance for the next attempt."""
    outputs: Annotated[dict[str, str], operator.or_]
    """Accepted output per stage."""
    reviews: Annotated[list[StageReview], operator.add]
    """Every gate review, in order."""
    decisions: Annotated[list[GateDecision], operator.add]
    """Human decisions at the escalation gate."""
    usage: Annotated[dict[str, int], merge_usage]
    """Tokens spent per role in the current run."""
    status: Literal["running", "done", "rejected"]
    """Where the pipeline stands."""


@dataclass(kw_only=True)
class Context(ModelContext):
    """Per-run settings of a pipeline."""

    max_attempts: int = field(
        default=2,
        metadata={"description": "Tries per stage (the first included) before escalating."},
    )


_OWN_NODES = frozenset({"intake", "gate", "escalate", "finish"})


def _work_text(stage: Stage, state: State, done: Sequence[Stage]) -> str:
    parts = [state.get("request", "")]
    if state.get("feedback"):
        parts.append(f"Reviewer feedback to address: {state['feedback']}")
    parts.append(f"Your part (stage '{stage.name}'): {stage.instructions}")
    earlier = [f"- {s.name}: {state.get('outputs', {}).get(s.name, '')}" for s in done]
    if earlier:
        parts.append("Work from earlier stages:\n" + "\n".join(earlier))
    return "\n\n".join(parts)


def _check_stages(stages: Sequence[Stage], name: str) -> tuple[Stage, ...]:
    """Refuse no stages, duplicate names, names the graph uses itself, missing criteria."""
    if not stages:
        raise GraphSetupError(f"Pipeline '{name}' needs at least one Stage.")
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise GraphSetupError(f"Pipeline '{name}' has two stages named '{stage.name}'.")
        if stage.name in _OWN_NODES:
            raise GraphSetupError(
                f"Pipeline '{name}': stage name '{stage.name}' is used by the graph itself "
                f"({', '.join(sorted(_OWN_NODES))}); rename the stage."
            )
        seen.add(stage.name)
        check_criteria(stage.criteria, owner=f"Pipeline '{name}', stage '{stage.name}'")
    return tuple(stages)


class _Pipeline:
    """The pipeline's nodes and routers, in the order a run meets them.

    Each stage is a node named after it, whose member is a subgraph; ``gate`` reviews the
    current stage's draft, ``escalate`` asks a human, ``finish`` answers.
    """

    def __init__(
        self, stages: tuple[Stage, ...], *, critic_model: BaseChatModel | None, name: str
    ) -> None:
        self.stages = stages
        self.critic_model = critic_model
        self.name = name

    def current(self, state: State) -> Stage:
        index = state.get("stage", 0)
        if not 0 <= index < len(self.stages):
            raise ValueError(f"Pipeline '{self.name}' has no stage {index}.")
        return self.stages[index]

    def accept(self, state: State, output: str) -> dict[str, Any]:
        """Keep ``output`` as the current stage's and move to the next stage."""
        return {
            "outputs": {self.current(state).name: output},
            "stage": state.get("stage", 0) + 1,
            "attempt": 0,
            "extra_attempts": 0,
            "feedback": "",
        }

    async def intake(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        owner = f"Pipeline '{self.name}'"
        request = required_request(state["messages"], owner=owner, what="request")
        return {
            "request": request,
            "stage": 0,
            "attempt": 0,
            "extra_attempts": 0,
            "feedback": "",
            "outputs": Overwrite({}),
            "usage": Overwrite({}),
            "status": "running",
        }

    def work(self, index: int) -> Any:
        """Stage ``index`` as a node: its member drafts, seeing earlier stages' outputs."""
        stage = self.stages[index]

        def request(state: State) -> str:
            return _work_text(stage, state, self.stages[:index])

        def drafted(state: State, answer: Answer) -> dict[str, Any]:
            attempt = state.get("attempt", 0) + 1
            return {"draft": answer.text, "attempt": attempt, "usage": answer.usage}

        return member_node(stage.member, request=request, respond=drafted)

    async def gate(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        stage = self.current(state)
        model = self.critic_model or chat_model_for(runtime)
        task = f"{state.get('request', '')} ({stage.instructions})"
        result = await review(
            state.get("draft", ""), task=task, criteria=stage.criteria, model=model
        )
        attempt = state.get("attempt", 0)
        update: dict[str, Any] = {
            "reviews": [StageReview(stage=stage.name, attempt=attempt, review=result)]
        }
        if result["passed"]:
            return {**update, **self.accept(state, state.get("draft", ""))}
        return {**update, "feedback": result["critique"]}

    async def escalate(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        context = context_of(runtime, Context)
        stage = self.current(state)
        last = state["reviews"][-1]["review"] if state.get("reviews") else None
        scores = {s["criterion"]: s["score"] for s in last["scores"]} if last else {}
        decision = ask_approval(
            "accept_stage_output",
            {"stage": stage.name, "output": state.get("draft", "")},
            f"Stage '{stage.name}' failed its review {state.get('attempt', 0)} time(s) "
            f"(policy: max_attempts={context.max_attempts}). Critique: "
            f"{state.get('feedback', '')} Approve to accept the output, edit it, reject to "
            "stop the pipeline, or respond with guidance for one more try.",
            gate="pipeline_escalation",
            metadata={"stage": stage.name, "scores": scores, "policy": "max_attempts"},
        )
        return {"decisions": [decision], **self.decided(state, decision)}

    def decided(self, state: State, decision: GateDecision) -> dict[str, Any]:
        """What a human's decision at the escalation gate does to the pipeline."""
        if decision["type"] == "approve":
            return self.accept(state, state.get("draft", ""))
        if decision["type"] == "edit":
            output = str(decision["args"].get("output", state.get("draft", "")))
            return self.accept(state, clip(output))
        if decision["type"] == "reject":
            return {"status": "rejected"}
        return {
            "feedback": decision.get("message", ""),
            "extra_attempts": state.get("extra_attempts", 0) + 1,
        }

    async def finish(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        if state.get("status") == "rejected":
            stage = self.current(state)
            decisions = state.get("decisions") or []
            reason = (decisions[-1].get("message") if decisions else None) or "no reason given"
            text = f"Stopped at stage '{stage.name}': a reviewer rejected it ({reason})."
            return {"messages": [AIMessage(text, name=self.name)]}
        final = state.get("outputs", {}).get(self.stages[-1].name, "")
        return {"messages": [AIMessage(final, name=self.name)], "status": "done"}

    def route_intake(self, state: State) -> str:
        return self.stages[0].name

    def route_gate(self, state: State, runtime: Runtime[Context]) -> str:
        """The current stage again or the next one, the escalation gate, or the end."""
        if not state.get("reviews"):
            raise ValueError("gate ran without recording a review.")
        if state["reviews"][-1]["review"]["passed"]:
            return (
                "finish" if state.get("stage", 0) >= len(self.stages) else self.current(state).name
            )
        context = context_of(runtime, Context)
        allowed = context.max_attempts + state.get("extra_attempts", 0)
        return self.current(state).name if state.get("attempt", 0) < allowed else "escalate"

    def route_escalation(self, state: State) -> str:
        if state.get("status") == "rejected" or state.get("stage", 0) >= len(self.stages):
            return "finish"
        return self.current(state).name


def build_pipeline(
    stages: Sequence[Stage],
    *,
    critic_model: BaseChatModel | None = None,
    name: str = "pipeline",
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[State, Context, InputState, State]:
    """Build a pipeline of ``stages``, each gated by a critic.

    Args:
        stages: The stages, in order.
        critic_model: A fixed model for the critic; by default chosen per run.
        name: Graph name.
        checkpointer: Persistence, when not attached by the server.
        store: Long-term store, likewise.

    Returns:
        The compiled graph.

    Raises:
        GraphSetupError: No stages, duplicate stage names or ones the graph uses itself
            (intake, gate, escalate, finish), or a stage without criteria.
    """
    run = _Pipeline(_check_stages(stages, name), critic_model=critic_model, name=name)
    names = [stage.name for stage in run.stages]
    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("intake", run.intake)
    for index, stage in enumerate(run.stages):
        builder.add_node(stage.name, run.work(index))  # the stage's member, as a subgraph
        builder.add_edge(stage.name, "gate")
    builder.add_node("gate", run.gate)
    builder.add_node("escalate", run.escalate, metadata={GATE_METADATA_KEY: "pipeline_escalation"})
    builder.add_node("finish", run.finish)
    builder.add_edge(START, "intake")
    builder.add_conditional_edges("intake", run.route_intake, names[:1])
    builder.add_conditional_edges("gate", run.route_gate, [*names, "escalate", "finish"])
    builder.add_conditional_edges("escalate", run.route_escalation, [*names, "finish"])
    builder.add_edge("finish", END)
    return builder.compile(name=name, checkpointer=checkpointer, store=store)


def default_stages(*, registry: ToolRegistry | None = None) -> list[Stage]:
    """The default pipeline: the writer drafts, the compliance officer reviews."""
    registry = registry if registry is not None else default_registry()
    org = load_organization(default_roles_dir(), registry=registry)
    return [
        Stage(
            name="draft",
            member=Member.from_role(org.role("writer"), registry=registry),
            instructions="Write the text the request asks for.",
            criteria=(
                Criterion(
                    name="on_request",
                    description="Covers what the request asks for.",
                    threshold=0.5,
                ),
            ),
        ),
        Stage(
            name="compliance",
            member=Member.from_role(org.role("compliance_officer"), registry=registry),
            instructions="Check the draft for legal and policy risk and return it corrected.",
            criteria=(
                Criterion(
                    name="on_request",
                    description="Still covers what the request asks for.",
                    threshold=0.5,
                ),
            ),
        ),
    ]


graph = build_pipeline(default_stages(), name="pipeline")
"""Writer then compliance officer, each gated; compiled without persistence."""
