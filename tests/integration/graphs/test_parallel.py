"""Parallel fan-out: all branches on the Postgres checkpointer, and a branch that fails."""

from __future__ import annotations

from collections import Counter
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.types import Command, RetryPolicy

from graphs.parallel import build_parallel
from graphs.parallel import graph as parallel_graph
from nodes.team import Member
from state.db import Persistence
from state.roles import Organization
from tests.integration.graphs.conftest import attach, thread

REPORT = "Write a short report on renewable energy adoption in Europe"


def counted(member: Member, calls: Counter[str]) -> Member:
    """The same member, counting how often it runs."""

    async def run(payload: dict[str, Any], config: RunnableConfig) -> Any:
        calls[member.name] += 1
        return await member.graph.ainvoke(payload, config)

    return Member(member.name, member.description, RunnableLambda(run), member.role)


class Flaky:
    """A specialist whose source fails the first ``failures`` calls."""

    def __init__(self, calls: Counter[str], *, failures: int) -> None:
        self.failures = failures
        self.calls = calls

    async def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls["risk"] += 1
        if self.calls["risk"] <= self.failures:
            raise RuntimeError("risk data source unavailable")
        return {"messages": [AIMessage("Risk is low.", name="risk")]}

    def member(self) -> Member:
        return Member("risk", "Rates the risk.", RunnableLambda(self))


def team(
    org: Organization, calls: Counter[str], flaky: Flaky, *, retry_policy: RetryPolicy | None = None
) -> Any:
    members = [
        counted(Member.from_role(org.role("analyst")), calls),
        counted(Member.from_role(org.role("writer")), calls),
        flaky.member(),
    ]
    return build_parallel(
        members, fuser=org.role("chief_of_staff"), retry_policy=retry_policy, name="panel"
    )


async def test_every_specialist_answers_and_the_fusion_combines(persistence: Persistence) -> None:
    result = await attach(parallel_graph, persistence).ainvoke(
        {"messages": [HumanMessage(REPORT)]}, thread()
    )
    assert sorted((r["specialist"], r["status"]) for r in result["results"]) == [
        ("analyst", "done"),
        ("compliance_officer", "done"),
        ("writer", "done"),
    ]
    final = result["messages"][-1]
    assert final.name == "chief_of_staff"
    assert final.content.startswith("As Chief of staff: This report covers renewable energy")
    assert "analyst: As Analyst:" in final.content  # the fusion read the findings
    assert set(result["usage"]) == {"analyst", "writer", "compliance_officer", "chief_of_staff"}


async def test_a_failing_branch_is_recorded_and_siblings_are_kept(
    persistence: Persistence, org: Organization
) -> None:
    calls: Counter[str] = Counter()
    flaky = Flaky(calls, failures=10)
    graph = attach(team(org, calls, flaky), persistence)
    result = await graph.ainvoke({"messages": [HumanMessage(REPORT)]}, thread())

    by_name = {r["specialist"]: r for r in result["results"]}
    assert by_name["risk"] == {
        "specialist": "risk",
        "status": "failed",
        "answer": "",
        "tokens": 0,
        "error": "RuntimeError",
    }
    assert by_name["analyst"]["status"] == by_name["writer"]["status"] == "done"
    assert calls == Counter({"analyst": 1, "writer": 1, "risk": 1})
    assert result["messages"][-1].name == "chief_of_staff"


async def test_a_retry_policy_recovers_a_flaky_branch(
    persistence: Persistence, org: Organization
) -> None:
    calls: Counter[str] = Counter()
    flaky = Flaky(calls, failures=1)
    retry = RetryPolicy(max_attempts=2, initial_interval=0.001, jitter=False, retry_on=RuntimeError)
    graph = attach(team(org, calls, flaky, retry_policy=retry), persistence)
    result = await graph.ainvoke({"messages": [HumanMessage(REPORT)]}, thread())
    assert calls == Counter({"analyst": 1, "writer": 1, "risk": 2})
    assert sorted((r["specialist"], r["status"]) for r in result["results"]) == [
        ("analyst", "done"),
        ("risk", "done"),
        ("writer", "done"),
    ]


async def test_a_paused_branch_resumes_alone(persistence: Persistence, org: Organization) -> None:
    calls: Counter[str] = Counter()
    members = [
        counted(Member.from_role(org.role("analyst")), calls),
        counted(Member.from_role(org.role("writer")), calls),
        counted(Member.from_role(org.role("researcher")), calls),
    ]
    graph = attach(build_parallel(members, name="panel"), persistence)
    config = thread()
    request = "Fetch https://example.com/solar-report and summarise it"
    paused = await graph.ainvoke({"messages": [HumanMessage(request)]}, config)
    (approval,) = paused["__interrupt__"]
    assert approval.value["action_requests"][0]["name"] == "http_get"
    assert calls == Counter({"analyst": 1, "writer": 1, "researcher": 1})
    # The finished siblings' writes are checkpointed already.
    snapshot = await graph.aget_state(config)
    assert {t.name for t in snapshot.tasks if t.result is not None} == {"analyst", "writer"}

    reject = {"type": "reject", "message": "no web access today"}
    result = await graph.ainvoke(Command(resume={"decisions": [reject]}), config)
    assert calls == Counter({"analyst": 1, "writer": 1, "researcher": 2})
    by_name = {r["specialist"]: r for r in result["results"]}
    assert set(by_name) == {"analyst", "writer", "researcher"}
    assert "no web access today" in by_name["researcher"]["answer"]
