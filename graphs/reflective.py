"""Reflective: an actor drafts, a critic scores, the actor revises, until a stop rule fires.

Stop rules, checked after every review in this order:

1. ``passed``: every criterion met its threshold.
2. ``max_rounds``: the run has had ``max_rounds`` rounds.
3. ``no_improvement``: the overall score has not beaten the best earlier round by at least
   ``min_improvement`` for ``patience`` rounds in a row.

Every round's draft and scores are kept in ``rounds``; the answer is the best-scoring draft.

    START -> intake -> act -> critique -> act (revise) | finish -> END
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
from nodes._private import chat_model_for, context_of
from nodes.budget import merge_usage
from nodes.critic import Criterion, CriterionScore, check_criteria, review
from nodes.team import Answer, Member, member_node
from state.roles import default_roles_dir, load_organization
from tools.registry import ToolRegistry, default_registry

__all__ = [
    "DEFAULT_CRITERIA",
    "Context",
    "InputState",
    "Round",
    "State",
    "StopReason",
    "build_reflective",
    "default_actor",
    "graph",
    "stop_reason",
]

StopReason = Literal["passed", "max_rounds", "no_improvement"]


class Round(TypedDict):
    """One draft and its review."""

    round: int
    draft: str
    scores: list[CriterionScore]
    overall: float
    passed: bool
    critique: str


class InputState(TypedDict):
    """What a run takes: the task as the last human message."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; the best draft is added as the answer."""


class State(InputState, total=False):
    """Everything the graph keeps."""

    task: str
    """The task being worked on."""
    draft: str
    """The latest draft."""
    rounds: Annotated[list[Round], operator.add]
    """Every round of the current run: draft, per-criterion scores, critique."""
    stop_reason: StopReason
    """Which rule ended the loop."""
    usage: Annotated[dict[str, int], merge_usage]
    """Tokens spent per role in the current run."""


@dataclass(kw_only=True)
class Context(ModelContext):
    """Per-run settings of the reflective loop."""

    max_rounds: int = field(
        default=3, metadata={"description": "Most draft-and-review rounds per run."}
    )
    patience: int = field(
        default=1,
        metadata={"description": "Stop after this many rounds in a row without improvement."},
    )
    min_improvement: float = field(
        default=0.01,
        metadata={"description": "How much the overall score must beat the best to count."},
    )
    threshold: float | None = field(
        default=None,
        metadata={"description": "Overrides every criterion's passing threshold, in [0, 1]."},
    )


def stop_reason(rounds: Sequence[Round], context: Context) -> StopReason | None:
    """Which stop rule fires after ``rounds``, or None to revise again."""
    if not rounds:
        return None
    if rounds[-1]["passed"]:
        return "passed"
    if len(rounds) >= context.max_rounds:
        return "max_rounds"
    patience = max(1, context.patience)
    if len(rounds) > patience:
        best_before = max(r["overall"] for r in rounds[:-patience])
        recent = max(r["overall"] for r in rounds[-patience:])
        if recent < best_before + context.min_improvement:
            return "no_improvement"
    return None


def _with_threshold(criteria: Sequence[Criterion], threshold: float | None) -> list[Criterion]:
    if threshold is None:
        return list(criteria)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"context.threshold must be in [0, 1], got {threshold}")
    return [
        Criterion(name=c.name, description=c.description, threshold=threshold) for c in criteria
    ]


def _act_request(state: State) -> str:
    """The task, and from the second round the last draft with its critique."""
    text = state.get("task", "")
    if state.get("rounds"):
        last = state["rounds"][-1]
        text += (
            f"\n\nYour previous draft:\n{last['draft']}\n\n"
            f"A reviewer's critique of it:\n{last['critique']}\n\n"
            "Write an improved draft that fixes these points."
        )
    return text


def _drafted(state: State, answer: Answer) -> dict[str, Any]:
    return {"draft": answer.text, "usage": answer.usage}


class _Reflective:
    """The loop's nodes and router; the actor itself is the ``act`` subgraph node."""

    def __init__(
        self,
        actor: Member,
        criteria: Sequence[Criterion],
        *,
        critic_model: BaseChatModel | None,
        name: str,
    ) -> None:
        self.actor = actor
        self.criteria = criteria
        self.critic_model = critic_model
        self.name = name

    async def intake(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        owner = f"Reflective graph '{self.name}'"
        task = required_request(state["messages"], owner=owner, what="task")
        return {"task": task, "draft": "", "rounds": Overwrite([]), "usage": Overwrite({})}

    async def critique(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        context = context_of(runtime, Context)
        model = self.critic_model or chat_model_for(runtime)
        result = await review(
            state.get("draft", ""),
            task=state.get("task", ""),
            criteria=_with_threshold(self.criteria, context.threshold),
            model=model,
        )
        record = Round(
            round=len(state.get("rounds") or []) + 1,
            draft=state.get("draft", ""),
            scores=result["scores"],
            overall=result["overall"],
            passed=result["passed"],
            critique=result["critique"],
        )
        rounds = [*(state.get("rounds") or []), record]
        update: dict[str, Any] = {"rounds": [record]}
        reason = stop_reason(rounds, context)
        if reason is not None:
            update["stop_reason"] = reason
        return update

    async def finish(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        rounds = state.get("rounds") or []
        if not rounds:
            raise ValueError("finish ran before any round was reviewed.")
        # The first of the best drafts: a later equal score adds nothing.
        best = max(rounds, key=lambda r: (r["overall"], -r["round"]))
        return {"messages": [AIMessage(best["draft"], name=self.actor.name)]}

    def route(self, state: State, runtime: Runtime[Context]) -> Literal["act", "finish"]:
        rounds = state.get("rounds") or []
        if not rounds:
            raise ValueError("critique ran without recording a round.")
        return "finish" if stop_reason(rounds, context_of(runtime, Context)) else "act"


def build_reflective(
    actor: Member,
    criteria: Sequence[Criterion],
    *,
    critic_model: BaseChatModel | None = None,
    name: str = "reflective",
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[State, Context, InputState, State]:
    """Build an actor-critic loop.

    Args:
        actor: Who drafts and revises.
        criteria: What the critic checks each round.
        critic_model: A fixed model for the critic; by default chosen per run.
        name: Graph name.
        checkpointer: Persistence, when not attached by the server.
        store: Long-term store, likewise.

    Returns:
        The compiled graph.

    Raises:
        GraphSetupError: No criteria, too many, or duplicate names.
    """
    checked = check_criteria(criteria, owner=f"Reflective graph '{name}'")
    run = _Reflective(actor, checked, critic_model=critic_model, name=name)
    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("intake", run.intake)
    # The actor is a subgraph: Studio draws its inner nodes under "act".
    builder.add_node("act", member_node(actor, request=_act_request, respond=_drafted))
    builder.add_node("critique", run.critique)
    builder.add_node("finish", run.finish)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "act")
    builder.add_edge("act", "critique")
    builder.add_conditional_edges("critique", run.route, ["act", "finish"])
    builder.add_edge("finish", END)
    return builder.compile(name=name, checkpointer=checkpointer, store=store)


def default_actor(*, registry: ToolRegistry | None = None) -> Member:
    """The writer from the default organisation."""
    registry = registry if registry is not None else default_registry()
    org = load_organization(default_roles_dir(), registry=registry)
    return Member.from_role(org.role("writer"), registry=registry)


DEFAULT_CRITERIA = (
    Criterion(name="on_task", description="Does what the task asks.", threshold=0.6),
    Criterion(name="clear", description="Clear, readable prose.", threshold=0.5),
)
"""What the default reflective graph checks."""

graph = build_reflective(default_actor(), DEFAULT_CRITERIA, name="reflective")
"""The writer revising under review, compiled without persistence."""
