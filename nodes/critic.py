"""Critic and judge: structured reviews of a piece of work by a chat model.

The critic scores work against each :class:`Criterion` separately (a score in [0, 1] and a
critique per criterion) and passes it only when every criterion meets its threshold. The judge
checks a final output against a task's acceptance criteria and says yes or no with reasons.

Both ask the model for structured output by function calling, one call per criterion: a
model judging one thing at a time is more reliable, and each score stands on its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from nodes._private import clip
from state.errors import GraphSetupError

__all__ = [
    "Criterion",
    "CriterionScore",
    "JudgeCheck",
    "Review",
    "Verdict",
    "check_criteria",
    "judge",
    "review",
]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_CRITERIA = 20


@dataclass(frozen=True, kw_only=True)
class Criterion:
    """One thing a critic checks.

    Attributes:
        name: Short lower_snake_case name, unique within a review.
        description: What good work does, in a sentence the model can judge.
        threshold: Lowest passing score, in [0, 1].
    """

    name: str
    description: str
    threshold: float = 0.6

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise GraphSetupError(
                f"Criterion name {self.name!r} is not lower_snake_case (a-z, 0-9, _); rename it."
            )
        if not self.description.strip() or len(self.description) > 2_000:
            raise GraphSetupError(
                f"Criterion '{self.name}' needs a description of 1 to 2000 characters."
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise GraphSetupError(
                f"Criterion '{self.name}' has threshold {self.threshold}; use a value in [0, 1]."
            )


def check_criteria(criteria: Sequence[Criterion], *, owner: str) -> tuple[Criterion, ...]:
    """Refuse an empty, oversized or duplicate-named list of criteria.

    Raises:
        GraphSetupError: Naming ``owner`` and what to change.
    """
    if not criteria:
        raise GraphSetupError(f"{owner} needs at least one Criterion to review against.")
    if len(criteria) > _MAX_CRITERIA:
        raise GraphSetupError(f"{owner} has {len(criteria)} criteria; at most {_MAX_CRITERIA}.")
    seen: set[str] = set()
    for criterion in criteria:
        if criterion.name in seen:
            raise GraphSetupError(
                f"{owner} has two criteria named '{criterion.name}'; names must be unique."
            )
        seen.add(criterion.name)
    return tuple(criteria)


class CriterionScore(TypedDict):
    """The critic's judgement on one criterion."""

    criterion: str
    score: float
    threshold: float
    passed: bool
    critique: str


class Review(TypedDict):
    """A critic's structured review of one piece of work."""

    scores: list[CriterionScore]
    """One entry per criterion, in the order given."""
    overall: float
    """Mean of the scores, rounded to 3 places."""
    passed: bool
    """Whether every criterion met its threshold."""
    critique: str
    """The critiques of the failed criteria (all of them when everything passed)."""


class _Assessment(BaseModel):
    """Your assessment of the output against the criterion."""

    score: float = Field(ge=0.0, le=1.0, description="0 = criterion not met, 1 = fully met.")
    critique: str = Field(
        max_length=4_000, description="What is missing or wrong, and how to fix it."
    )


class JudgeCheck(TypedDict):
    """The judge's finding on one acceptance criterion."""

    criterion: str
    satisfied: bool
    reason: str


class Verdict(TypedDict):
    """The judge's final validation of an output."""

    accepted: bool
    """Whether every acceptance criterion is satisfied."""
    checks: list[JudgeCheck]
    reasons: list[str]
    """Reasons for each unsatisfied criterion (empty when accepted)."""


class _Check(BaseModel):
    """Whether the output satisfies the acceptance criterion."""

    satisfied: bool = Field(description="True only if the output satisfies the criterion.")
    reason: str = Field(max_length=4_000, description="Why, citing the output.")


def _review_messages(
    instructions: str, criterion: str, task: str, output: str
) -> list[HumanMessage | SystemMessage]:
    # One criterion per call, with the task it serves; the work follows an "Output:" line so
    # that no reviewer mistakes it for instructions.
    task_line = " ".join(clip(task, 4_000).split())
    system = f"Role: {instructions}\nTask: {task_line}\nCriterion: {criterion}"
    return [SystemMessage(system), HumanMessage(f"Output:\n{clip(output)}")]


async def review(
    output: str, *, task: str, criteria: Sequence[Criterion], model: BaseChatModel
) -> Review:
    """Score ``output`` against each criterion with ``model``.

    Args:
        output: The work under review.
        task: What the work was asked to do (context for the reviewer).
        criteria: What to check.
        model: The chat model acting as critic.

    Returns:
        The :class:`Review`.
    """
    reviewer = model.with_structured_output(_Assessment, method="function_calling")
    scores: list[CriterionScore] = []
    for criterion in criteria:
        messages = _review_messages(
            "critic. Score the output against this one criterion from 0 to 1 and say what to fix.",
            criterion.description,
            task,
            output,
        )
        result = await reviewer.ainvoke(messages)
        assessment = (
            result if isinstance(result, _Assessment) else _Assessment.model_validate(result)
        )
        score = round(min(1.0, max(0.0, float(assessment.score))), 3)
        scores.append(
            CriterionScore(
                criterion=criterion.name,
                score=score,
                threshold=criterion.threshold,
                passed=score >= criterion.threshold,
                critique=assessment.critique.strip(),
            )
        )
    passed = all(s["passed"] for s in scores)
    failed = [s for s in scores if not s["passed"]] or scores
    critique = "\n".join(f"{s['criterion']}: {s['critique']}" for s in failed)
    overall = round(sum(s["score"] for s in scores) / len(scores), 3) if scores else 0.0
    return Review(scores=scores, overall=overall, passed=passed, critique=critique)


async def judge(
    output: str, *, task: str, acceptance: Sequence[str], model: BaseChatModel
) -> Verdict:
    """Validate a final ``output`` against a task's acceptance criteria.

    Args:
        output: The final output.
        task: The task it answers.
        acceptance: The acceptance criteria, one sentence each.
        model: The chat model acting as judge.

    Returns:
        The :class:`Verdict`; accepted only when every criterion is satisfied.
    """
    checker = model.with_structured_output(_Check, method="function_calling")
    checks: list[JudgeCheck] = []
    for criterion in acceptance:
        messages = _review_messages(
            "judge. Decide whether the output satisfies this acceptance criterion.",
            criterion,
            task,
            output,
        )
        result = await checker.ainvoke(messages)
        check = result if isinstance(result, _Check) else _Check.model_validate(result)
        checks.append(
            JudgeCheck(criterion=criterion, satisfied=bool(check.satisfied), reason=check.reason)
        )
    reasons = [f"{c['criterion']}: {c['reason']}" for c in checks if not c["satisfied"]]
    return Verdict(accepted=not reasons, checks=checks, reasons=reasons)
