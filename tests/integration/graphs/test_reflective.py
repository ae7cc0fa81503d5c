"""Reflective loop: each of the three stop rules, with every round kept in state."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage

from graphs.reflective import Context, build_reflective
from graphs.reflective import graph as reflective_graph
from nodes.critic import Criterion
from nodes.team import Member
from state.db import Persistence
from tests.integration.graphs.conftest import attach, author_role, thread

REPORT = "Write a short report on renewable energy adoption in Europe"
# More key terms than one critique lists: revisions can never cover them all.
BROAD = Criterion(
    name="facts",
    description="Covers solar and wind capacity growth, grid storage, subsidies, prices, jobs "
    "and emissions",
)


def loop() -> Any:
    return build_reflective(Member.from_role(author_role()), [BROAD], name="essay")


async def test_default_graph_passes_in_one_round(persistence: Persistence) -> None:
    result = await attach(reflective_graph, persistence).ainvoke(
        {"messages": [HumanMessage(REPORT)]}, thread()
    )
    assert result["stop_reason"] == "passed"
    (only,) = result["rounds"]
    assert [s["criterion"] for s in only["scores"]] == ["on_task", "clear"]
    assert result["messages"][-1].content == only["draft"]


async def test_stops_when_the_review_passes(persistence: Persistence) -> None:
    result = await attach(loop(), persistence).ainvoke(
        {"messages": [HumanMessage(REPORT)]}, thread(), context=Context(threshold=0.5)
    )
    assert result["stop_reason"] == "passed"
    assert [(r["round"], r["overall"], r["passed"]) for r in result["rounds"]] == [(1, 0.533, True)]


async def test_stops_at_max_rounds(persistence: Persistence) -> None:
    context = Context(threshold=1.0, max_rounds=2, patience=5)
    result = await attach(loop(), persistence).ainvoke(
        {"messages": [HumanMessage(REPORT)]}, thread(), context=context
    )
    assert result["stop_reason"] == "max_rounds"
    assert [(r["round"], r["passed"]) for r in result["rounds"]] == [(1, False), (2, False)]
    # Every round keeps its per-criterion scores and critique.
    for record in result["rounds"]:
        (score,) = record["scores"]
        assert score["criterion"] == "facts" and score["threshold"] == 1.0
        assert record["critique"].startswith("facts: Score")
    # The revision was asked with the previous draft and its critique.
    second_draft = result["rounds"][1]["draft"]
    assert "Your previous draft" in second_draft


async def test_stops_when_the_score_stops_improving(persistence: Persistence) -> None:
    context = Context(threshold=1.0, max_rounds=10, patience=2)
    result = await attach(loop(), persistence).ainvoke(
        {"messages": [HumanMessage(REPORT)]}, thread(), context=context
    )
    assert result["stop_reason"] == "no_improvement"
    overall = [r["overall"] for r in result["rounds"]]
    assert len(overall) == 3  # one round to beat, then two without progress
    assert max(overall[1:]) < overall[0] + context.min_improvement
    # The answer is the best draft: the first of the equally scored ones.
    assert result["messages"][-1].content == result["rounds"][0]["draft"]
