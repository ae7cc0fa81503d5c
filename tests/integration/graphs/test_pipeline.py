"""Pipeline: critic gates, retries with the critique, and the escalation approval gate."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.types import Command

from graphs.pipeline import Context, Stage, build_pipeline
from graphs.pipeline import graph as pipeline_graph
from nodes.critic import Criterion
from nodes.team import Member
from state.db import Persistence
from tests.integration.graphs.conftest import attach, author_role, thread

REPORT = "Write a short report on renewable energy adoption in Europe"
FACTS = Criterion(name="facts", description="Covers solar and wind capacity growth", threshold=0.8)


def one_stage_pipeline() -> Any:
    stage = Stage(
        name="draft",
        member=Member.from_role(author_role()),
        instructions="Write the report",
        criteria=(FACTS,),
    )
    return build_pipeline([stage], name="report")


async def test_default_pipeline_runs_both_stages(persistence: Persistence) -> None:
    result = await attach(pipeline_graph, persistence).ainvoke(
        {"messages": [HumanMessage(REPORT)]}, thread()
    )
    assert result["status"] == "done"
    assert [(r["stage"], r["attempt"], r["review"]["passed"]) for r in result["reviews"]] == [
        ("draft", 1, True),
        ("compliance", 1, True),
    ]
    assert set(result["outputs"]) == {"draft", "compliance"}
    assert result["messages"][-1].content == result["outputs"]["compliance"]
    assert set(result["usage"]) == {"writer", "compliance_officer"}


async def test_gate_fails_then_the_retry_with_the_critique_passes(
    persistence: Persistence,
) -> None:
    graph = attach(one_stage_pipeline(), persistence)
    result = await graph.ainvoke({"messages": [HumanMessage(REPORT)]}, thread())

    first, second = result["reviews"]
    assert (first["attempt"], first["review"]["passed"], first["review"]["overall"]) == (
        1,
        False,
        0.689,
    )
    assert "missing solar, wind, capacity and growth" in first["review"]["critique"]
    assert (second["attempt"], second["review"]["passed"], second["review"]["overall"]) == (
        2,
        True,
        1.0,
    )
    # The retry saw the critique and addressed it.
    assert "missing solar, wind, capacity and growth" in result["outputs"]["draft"]
    assert result["status"] == "done"
    assert result["messages"][-1].content == result["outputs"]["draft"]


async def escalated(graph: Any, config: dict[str, Any]) -> dict[str, Any]:
    paused = await graph.ainvoke(
        {"messages": [HumanMessage(REPORT)]}, config, context=Context(max_attempts=1)
    )
    (request,) = paused["__interrupt__"]
    return request.value


async def test_escalation_uses_the_hitl_schema(persistence: Persistence) -> None:
    graph = attach(one_stage_pipeline(), persistence)
    value = await escalated(graph, thread())
    (action,) = value["action_requests"]
    assert action["name"] == "accept_stage_output"
    assert action["args"]["stage"] == "draft"
    assert action["args"]["output"].startswith("As Author: This report covers renewable energy")
    assert "policy: max_attempts=1" in action["description"]
    assert value["review_configs"] == [
        {
            "action_name": "accept_stage_output",
            "allowed_decisions": ["approve", "edit", "reject", "respond"],
        }
    ]
    assert value["metadata"] == {
        "gate": "pipeline_escalation",
        "stage": "draft",
        "scores": {"facts": 0.689},
        "policy": "max_attempts",
    }


@pytest.mark.parametrize(
    ("decision", "status", "output"),
    [
        ({"type": "approve"}, "done", None),
        (
            {
                "type": "edit",
                "edited_action": {
                    "name": "accept_stage_output",
                    "args": {"stage": "draft", "output": "Solar and wind capacity grew."},
                },
            },
            "done",
            "Solar and wind capacity grew.",
        ),
        ({"type": "reject", "message": "off brief"}, "rejected", None),
    ],
)
async def test_escalation_decisions(
    persistence: Persistence, decision: dict[str, Any], status: str, output: str | None
) -> None:
    graph = attach(one_stage_pipeline(), persistence)
    config = thread()
    value = await escalated(graph, config)
    draft = value["action_requests"][0]["args"]["output"]
    result = await graph.ainvoke(
        Command(resume={"decisions": [decision]}), config, context=Context(max_attempts=1)
    )
    assert result["status"] == status
    (recorded,) = result["decisions"]
    assert recorded["type"] == decision["type"]
    assert recorded["gate"] == "pipeline_escalation"
    if status == "done":
        assert result["outputs"]["draft"] == (output or draft)
        assert result["messages"][-1].content == (output or draft)
    else:
        assert "outputs" not in result or "draft" not in result["outputs"]
        assert result["messages"][-1].content == (
            "Stopped at stage 'draft': a reviewer rejected it (off brief)."
        )
    assert len(result["reviews"]) == 1  # nothing ran again


async def test_escalation_respond_gives_one_more_try(persistence: Persistence) -> None:
    graph = attach(one_stage_pipeline(), persistence)
    config = thread()
    await escalated(graph, config)
    guidance = "Name solar and wind capacity growth explicitly."
    result = await graph.ainvoke(
        Command(resume={"decisions": [{"type": "respond", "message": guidance}]}),
        config,
        context=Context(max_attempts=1),
    )
    assert [d["type"] for d in result["decisions"]] == ["respond"]
    assert [r["attempt"] for r in result["reviews"]] == [1, 2]
    assert result["reviews"][-1]["review"]["passed"]
    assert guidance in result["outputs"]["draft"]
    assert result["status"] == "done"


async def test_a_malformed_decision_is_asked_again(persistence: Persistence) -> None:
    graph = attach(one_stage_pipeline(), persistence)
    config = thread()
    first = await escalated(graph, config)
    again = await graph.ainvoke(
        Command(resume={"decisions": [{"type": "maybe"}]}), config, context=Context(max_attempts=1)
    )
    (request,) = again["__interrupt__"]
    assert request.value["action_requests"] == first["action_requests"]
    assert request.value["metadata"]["error"] == (
        "Gate 'pipeline_escalation' allows decisions approve, edit, reject, respond; got 'maybe'. "
        'resume with {"decisions": [{"type": "approve" | "edit" | "reject" | "respond"}]}.'
    )
    result = await graph.ainvoke(
        Command(resume={"decisions": [{"type": "approve"}]}),
        config,
        context=Context(max_attempts=1),
    )
    assert result["status"] == "done"
