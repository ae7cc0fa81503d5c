"""Pipeline: stages run in order, each followed by a critic gate.

A stage's member does its part of the request, seeing earlier stages' accepted outputs. The
critic scores the result against the stage's criteria. A failed gate sends the stage back
with the critique, up to ``max_attempts`` tries; after that a human decides at the escalation
gate (langchain's HITL schema): ``approve`` accepts the output, ``edit`` accepts an edited
output, ``reject`` stops the pipeline, ``respond`` gives the stage one more try with the
human's guidance.

    START -> intake -> work -> gate -> work (retry) | work (next stage) | finish | escalate
                                       escalate -> work | finish
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
from nodes.approval import GateDecision, ask_approval
from nodes.budget import merge_usage
from nodes.critic import Criterion, Review, check_criteria, review
from nodes.team import Member, ask_member
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


def _work_text(stage: Stage, state: State, done: Sequence[Stage]) -> str:
    parts = [state.get("request", "")]
    if state.get("feedback"):
        parts.append(f"Reviewer feedback to address: {state['feedback']}")
    parts.append(f"Your part (stage '{stage.name}'): {stage.instructions}")
    earlier = [f"- {s.name}: {state.get('outputs', {}).get(s.name, '')}" for s in done]
    if earlier:
        parts.append("Work from earlier stages:\n" + "\n".join(earlier))
    return "\n\n".join(parts)


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
        GraphSetupError: No stages, duplicate stage names, or a stage without criteria.
    """
    if not stages:
        raise GraphSetupError(f"Pipeline '{name}' needs at least one Stage.")
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise GraphSetupError(f"Pipeline '{name}' has two stages named '{stage.name}'.")
        seen.add(stage.name)
        check_criteria(stage.criteria, owner=f"Pipeline '{name}', stage '{stage.name}'")
    stages = tuple(stages)

    def current(state: State) -> Stage:
        index = state.get("stage", 0)
        if not 0 <= index < len(stages):
            raise ValueError(f"Pipeline '{name}' has no stage {index}.")
        return stages[index]

    def accept(state: State, output: str) -> dict[str, Any]:
        stage = current(state)
        return {
            "outputs": {stage.name: output},
            "stage": state.get("stage", 0) + 1,
            "attempt": 0,
            "extra_attempts": 0,
            "feedback": "",
        }

    async def intake(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        request = required_request(state["messages"], owner=f"Pipeline '{name}'", what="request")
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

    async def work(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        stage = current(state)
        done = stages[: state.get("stage", 0)]
        answer, _, usage = await ask_member(stage.member, _work_text(stage, state, done))
        return {"draft": answer, "attempt": state.get("attempt", 0) + 1, "usage": usage}

    async def gate(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        stage = current(state)
        model = critic_model or chat_model_for(runtime)
        task = f"{state.get('request', '')} ({stage.instructions})"
        result = await review(
            state.get("draft", ""), task=task, criteria=stage.criteria, model=model
        )
        update: dict[str, Any] = {
            "reviews": [
                StageReview(stage=stage.name, attempt=state.get("attempt", 0), review=result)
            ]
        }
        if result["passed"]:
            return {**update, **accept(state, state.get("draft", ""))}
        return {**update, "feedback": result["critique"]}

    async def escalate(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        context = context_of(runtime, Context)
        stage = current(state)
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
        update: dict[str, Any] = {"decisions": [decision]}
        if decision["type"] == "approve":
            return {**update, **accept(state, state.get("draft", ""))}
        if decision["type"] == "edit":
            output = str(decision["args"].get("output", state.get("draft", "")))
            return {**update, **accept(state, clip(output))}
        if decision["type"] == "reject":
            return {**update, "status": "rejected"}
        return {
            **update,
            "feedback": decision.get("message", ""),
            "extra_attempts": state.get("extra_attempts", 0) + 1,
        }

    async def finish(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        if state.get("status") == "rejected":
            stage = current(state)
            decisions = state.get("decisions") or []
            reason = (decisions[-1].get("message") if decisions else None) or "no reason given"
            text = f"Stopped at stage '{stage.name}': a reviewer rejected it ({reason})."
            return {"messages": [AIMessage(text, name=name)]}
        final = state.get("outputs", {}).get(stages[-1].name, "")
        return {"messages": [AIMessage(final, name=name)], "status": "done"}

    def route_gate(
        state: State, runtime: Runtime[Context]
    ) -> Literal["work", "escalate", "finish"]:
        if not state.get("reviews"):
            raise ValueError("gate ran without recording a review.")
        if state["reviews"][-1]["review"]["passed"]:
            return "finish" if state.get("stage", 0) >= len(stages) else "work"
        context = context_of(runtime, Context)
        allowed = context.max_attempts + state.get("extra_attempts", 0)
        return "work" if state.get("attempt", 0) < allowed else "escalate"

    def route_escalation(state: State) -> Literal["work", "finish"]:
        if state.get("status") == "rejected" or state.get("stage", 0) >= len(stages):
            return "finish"
        return "work"

    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("intake", intake)
    builder.add_node("work", work)
    builder.add_node("gate", gate)
    builder.add_node("escalate", escalate)
    builder.add_node("finish", finish)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "work")
    builder.add_edge("work", "gate")
    builder.add_conditional_edges("gate", route_gate, ["work", "escalate", "finish"])
    builder.add_conditional_edges("escalate", route_escalation, ["work", "finish"])
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
