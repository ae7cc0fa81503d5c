"""Supervisor and staff graphs on the Postgres checkpointer with the offline model."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.types import Command

from graphs.staff import graph as staff_graph
from graphs.supervisor import Context
from graphs.supervisor import graph as supervisor_graph
from state.db import Persistence
from tests.integration.graphs.conftest import attach, thread

BLOG = "Draft a blog post announcing our new product launch"
FORECAST = "What is 1200 * 1.15 for the budget forecast?"


async def test_handoff_and_hand_back_keep_every_message(persistence: Persistence) -> None:
    graph = attach(supervisor_graph, persistence)
    config = thread()
    result = await graph.ainvoke({"messages": [HumanMessage(BLOG)]}, config)

    human, call, answer, final = result["messages"]
    assert isinstance(human, HumanMessage) and human.content == BLOG
    assert isinstance(call, AIMessage) and call.name == "chief_of_staff"
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [
        ("transfer_to_writer", {"task": BLOG})
    ]
    assert isinstance(answer, ToolMessage)
    assert answer.tool_call_id == call.tool_calls[0]["id"]
    assert answer.name == "transfer_to_writer"
    assert str(answer.content).startswith("As Writer: This note covers blog post announcing")
    assert isinstance(final, AIMessage) and final.name == "chief_of_staff"
    assert "transfer_to_writer returned: As Writer:" in str(final.content)

    (handoff,) = result["handoffs"]
    assert handoff["member"] == "writer"
    assert handoff["brief"] == {"task": BLOG, "context": "", "expected_output": ""}
    assert handoff["answer"] == answer.content
    assert [m.type for m in handoff["messages"]] == ["human", "ai"]
    assert handoff["messages"][0].content == BLOG
    assert set(result["usage"]) == {"chief_of_staff", "writer"}
    assert result["rounds"] == 1

    # The checkpoint holds the same state: nothing lives only in memory.
    saved = await graph.aget_state(config)
    assert [m.id for m in saved.values["messages"]] == [m.id for m in result["messages"]]
    assert saved.next == ()


async def test_staff_routes_through_nested_circle_teams(persistence: Persistence) -> None:
    graph = attach(staff_graph, persistence)
    request = "Research sources and evidence on competitor markets"
    result = await graph.ainvoke({"messages": [HumanMessage(request)]}, thread())

    call = result["messages"][1]
    assert [c["name"] for c in call.tool_calls] == ["transfer_to_research"]
    (handoff,) = result["handoffs"]
    assert handoff["member"] == "research"
    inner = handoff["messages"]
    # The research team's own lead delegated in turn, and its hand-back is kept too.
    assert [(m.type, m.name) for m in inner] == [
        ("human", None),
        ("ai", "researcher"),
        ("tool", "transfer_to_researcher"),
        ("ai", "researcher"),
    ]
    assert result["messages"][2].content == inner[-1].content
    assert "researcher" in result["usage"]


async def test_lead_answers_itself_when_no_rounds_are_left(persistence: Persistence) -> None:
    graph = attach(supervisor_graph, persistence)
    result = await graph.ainvoke(
        {"messages": [HumanMessage(BLOG)]}, thread(), context=Context(max_rounds=0)
    )
    assert "handoffs" not in result or result["handoffs"] == []
    assert [m.type for m in result["messages"]] == ["human", "ai"]
    assert not result["messages"][1].tool_calls


async def test_budget_guard_stops_the_team(persistence: Persistence) -> None:
    graph = attach(supervisor_graph, persistence)
    result = await graph.ainvoke(
        {"messages": [HumanMessage(BLOG)]}, thread(), context=Context(run_token_budget=100)
    )
    budget = result["budget"]
    assert budget["exceeded"] and budget["action"] == "stop"
    assert budget["used"]["__run__"] == budget["used"]["chief_of_staff"] + budget["used"]["writer"]
    assert budget["reasons"] == [
        f"the run used {budget['used']['__run__']} tokens; its budget is 100."
    ]
    last = result["messages"][-1]
    assert last.content.startswith("Stopped: the team is over its token budget.")
    assert len(result["handoffs"]) == 1  # the member's work is kept


async def test_budget_guard_asks_and_a_human_approves_or_rejects(persistence: Persistence) -> None:
    graph = attach(supervisor_graph, persistence)
    context = Context(run_token_budget=100, on_budget_exceeded="ask")
    approved, rejected = thread(), thread()
    for config in (approved, rejected):
        paused = await graph.ainvoke({"messages": [HumanMessage(BLOG)]}, config, context=context)
        (request,) = paused["__interrupt__"]
        assert request.value["review_configs"] == [
            {"action_name": "exceed_token_budget", "allowed_decisions": ["approve", "reject"]}
        ]
        assert request.value["metadata"]["policy"] == "token_budget"
        assert request.value["action_requests"][0]["name"] == "exceed_token_budget"

    done = await graph.ainvoke(
        Command(resume={"decisions": [{"type": "approve"}]}), approved, context=context
    )
    assert done["budget"]["action"] == "approved"
    assert "transfer_to_writer returned" in done["messages"][-1].content
    assert [d["type"] for d in done["decisions"]] == ["approve"]

    stopped = await graph.ainvoke(
        Command(resume={"decisions": [{"type": "reject", "message": "too costly"}]}),
        rejected,
        context=context,
    )
    assert stopped["budget"]["action"] == "stop"
    assert stopped["messages"][-1].content.startswith("Stopped: the team is over its token budget")
    assert stopped["decisions"][0]["message"] == "too costly"


async def test_time_travel_forks_from_an_earlier_checkpoint(persistence: Persistence) -> None:
    graph = attach(supervisor_graph, persistence)
    config = thread()
    original = await graph.ainvoke({"messages": [HumanMessage(BLOG)]}, config)
    assert original["handoffs"][0]["member"] == "writer"

    history = [s async for s in graph.aget_state_history(config)]
    before_lead = next(s for s in reversed(history) if s.next == ("lead",))
    human = before_lead.values["messages"][0]
    # Rewrite the request in place (same message id) at the checkpoint before the lead ran.
    forked = await graph.aupdate_state(
        before_lead.config,
        {"messages": [HumanMessage(FORECAST, id=human.id)]},
        as_node="intake",
    )
    result = await graph.ainvoke(None, forked)

    assert [h["member"] for h in result["handoffs"]] == ["finance"]
    assert result["messages"][0].content == FORECAST
    assert "calculator returned: 1380" in result["messages"][2].content
    # The original branch is still there, untouched.
    after = [s async for s in graph.aget_state_history(config)]
    finals = [s for s in after if s.next == () and s.values.get("handoffs")]
    assert {s.values["handoffs"][0]["member"] for s in finals} == {"writer", "finance"}
