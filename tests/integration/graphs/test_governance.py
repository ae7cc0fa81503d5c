"""Governance: tension -> change -> assessment -> approval -> stored role version (Postgres)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.types import Command

from graphs.governance import Context, build_governance
from graphs.governance import graph as governance_graph
from nodes.governance import changes_between
from state.db import Persistence, open_persistence
from state.role_store import RoleStore
from state.roles import default_roles_dir, load_organization
from tests.integration.graphs.conftest import attach, thread
from tools.registry import default_registry

GRANT_CALCULATOR = "Grant the writer the calculator so it can check figures in drafts"
GRANT_WEB = "Grant the writer the http_get tool to fetch sources"


async def stored_rows(p: Persistence, role: str) -> int:
    async with p.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM store WHERE prefix = %s", (f"staffgraph.roles.{role}",)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def propose(graph: Any, config: dict[str, Any], tension: str, **context: Any) -> Any:
    paused = await graph.ainvoke(
        {"messages": [HumanMessage(tension)]}, config, context=Context(**context)
    )
    (request,) = paused["__interrupt__"]
    return paused, request.value


async def decide(
    graph: Any, config: dict[str, Any], decision: dict[str, Any], **context: Any
) -> Any:
    return await graph.ainvoke(
        Command(resume={"decisions": [decision]}), config, context=Context(**context)
    )


async def test_approved_change_is_stored_as_a_new_version(persistence: Persistence) -> None:
    graph = attach(governance_graph, persistence)
    config = thread()
    paused, request = await propose(graph, config, GRANT_CALCULATOR)

    assert paused["proposal"] == {
        "role": "writer",
        "attribute": "tool_grant",
        "operation": "add",
        "value": "calculator",
        "motivation": paused["proposal"]["motivation"],
    }
    assert paused["impact"]["valid"] and paused["impact"]["base_version"] == 0
    (action,) = request["action_requests"]
    assert action["name"] == "change_role"
    assert action["args"]["value"] == "calculator"
    assert action["description"].startswith(
        "Add 'calculator' to the tool_grant of role 'writer'. Role 'writer' is at version 0; "
        "approving stores version 1."
    )
    assert request["review_configs"][0]["allowed_decisions"] == [
        "approve",
        "edit",
        "reject",
        "respond",
    ]
    assert request["metadata"]["gate"] == "governance_approval"
    assert await stored_rows(persistence, "writer") == 0  # nothing before approval

    result = await decide(graph, config, {"type": "approve"})
    assert result["outcome"] == {"status": "applied", "role": "writer", "version": 1}
    assert result["messages"][-1].content.endswith("Role 'writer' is now at version 1.")
    store = RoleStore(persistence.store)
    (version,) = await store.versions("writer")
    assert version["change_id"] == result["change_id"]
    assert "calculator" in version["definition"]["policies"]["allowed_tools"]
    assert await stored_rows(persistence, "writer") == 1

    # A second change builds on the stored version.
    _, again = await propose(graph, thread(), "Grant the writer the split_document tool")
    assert "Role 'writer' is at version 1" in again["action_requests"][0]["description"]


async def test_rerunning_apply_does_not_store_twice(persistence: Persistence) -> None:
    graph = attach(governance_graph, persistence)
    config = thread()
    await propose(graph, config, GRANT_CALCULATOR)
    await decide(graph, config, {"type": "approve"})

    history = [s async for s in graph.aget_state_history(config)]
    before_apply = next(s for s in history if s.next == ("apply",))
    replayed = await graph.ainvoke(None, before_apply.config)
    assert replayed["outcome"] == {"status": "applied", "role": "writer", "version": 1}
    assert len(await RoleStore(persistence.store).versions("writer")) == 1
    assert await stored_rows(persistence, "writer") == 1


async def test_rejection_is_recorded_and_nothing_is_stored(persistence: Persistence) -> None:
    graph = attach(governance_graph, persistence)
    config = thread()
    paused, request = await propose(graph, config, GRANT_WEB)
    impact = paused["impact"]
    assert not impact["valid"]
    assert impact["new_risks"] == ["http_get"]
    assert (
        "grants tool 'http_get' of risk 'external', but no approval policy"
        in (impact["problems"][0])
    )
    # An invalid change cannot be approved as it stands.
    assert request["review_configs"][0]["allowed_decisions"] == ["edit", "reject", "respond"]

    result = await decide(graph, config, {"type": "reject", "message": "writers stay offline"})
    assert result["outcome"] == {
        "status": "rejected",
        "role": "writer",
        "reason": "writers stay offline",
    }
    assert result["decisions"][-1]["type"] == "reject"
    assert await stored_rows(persistence, "writer") == 0


async def test_edit_is_assessed_again_before_approval(persistence: Persistence) -> None:
    graph = attach(governance_graph, persistence)
    config = thread()
    _, request = await propose(graph, config, GRANT_WEB)
    edited = {**request["action_requests"][0]["args"], "value": "calculator"}
    paused = await decide(
        graph, config, {"type": "edit", "edited_action": {"name": "change_role", "args": edited}}
    )
    (again,) = paused["__interrupt__"]
    assert again.value["action_requests"][0]["args"]["value"] == "calculator"
    assert paused["impact"]["valid"]

    result = await decide(graph, config, {"type": "approve"})
    assert result["outcome"]["status"] == "applied"
    assert [d["type"] for d in result["decisions"]] == ["edit", "approve"]
    (version,) = await RoleStore(persistence.store).versions("writer")
    assert "calculator" in version["definition"]["policies"]["allowed_tools"]


async def test_respond_sends_the_proposer_back_with_guidance(persistence: Persistence) -> None:
    graph = attach(governance_graph, persistence)
    config = thread()
    await propose(graph, config, GRANT_WEB, max_revisions=1)
    guidance = "Give the writer the calculator instead"
    paused = await decide(graph, config, {"type": "respond", "message": guidance}, max_revisions=1)
    assert paused["revisions"] == 1
    assert paused["proposal"]["value"] == "calculator"
    (again,) = paused["__interrupt__"]
    # The reviewer used up the revisions: no more respond.
    assert again.value["review_configs"][0]["allowed_decisions"] == ["approve", "edit", "reject"]
    result = await decide(graph, config, {"type": "approve"}, max_revisions=1)
    assert result["outcome"] == {"status": "applied", "role": "writer", "version": 1}


async def test_resumes_after_a_process_restart(persistence: Persistence, database_url: str) -> None:
    config = thread()
    async with open_persistence(database_url, max_size=2) as first:
        graph = build_governance().copy(
            update={"checkpointer": first.checkpointer, "store": first.store}
        )
        await propose(graph, config, GRANT_CALCULATOR)
    # The first process is gone: a new saver on the same database, a freshly built graph.
    async with open_persistence(database_url, max_size=2) as second:
        graph = build_governance().copy(
            update={"checkpointer": second.checkpointer, "store": second.store}
        )
        snapshot = await graph.aget_state(config)
        assert snapshot.next == ("approve",)
        assert snapshot.interrupts[0].value["action_requests"][0]["name"] == "change_role"
        result = await decide(graph, config, {"type": "approve"})
        assert result["outcome"] == {"status": "applied", "role": "writer", "version": 1}
        assert len(await RoleStore(second.store).versions("writer")) == 1


async def test_needs_a_store_to_run() -> None:
    graph = build_governance()
    with pytest.raises(ValueError, match="needs a store for role versions"):
        await graph.ainvoke({"messages": [HumanMessage(GRANT_CALCULATOR)]})


async def test_a_change_given_as_input_skips_the_proposer_and_rolls_a_version_back(
    persistence: Persistence,
) -> None:
    graph = attach(governance_graph, persistence)
    config = thread()
    await propose(graph, config, GRANT_CALCULATOR)
    await decide(graph, config, {"type": "approve"})
    store = RoleStore(persistence.store)
    (granted,) = await store.versions("writer")
    yaml_writer = load_organization(default_roles_dir(), registry=default_registry()).role("writer")
    yaml_writer = yaml_writer.model_dump(mode="json")
    (undo,) = changes_between(granted["definition"], yaml_writer)
    assert undo["operation"] == "remove" and undo["value"] == "calculator"

    rollback = thread()
    paused = await graph.ainvoke(
        {"messages": [HumanMessage("Roll back the writer")], "change": dict(undo)},
        rollback,
        context=Context(),
    )
    (request,) = paused["__interrupt__"]
    assert paused["proposal"]["value"] == "calculator" and paused["impact"]["valid"]
    assert request.value["action_requests"][0]["args"]["operation"] == "remove"
    done = await decide(graph, rollback, {"type": "approve"})
    assert done["outcome"] == {"status": "applied", "role": "writer", "version": 2}
    restored = (await store.versions("writer"))[-1]["definition"]
    assert changes_between(restored, yaml_writer) == []
    # The next run on the thread starts afresh: the given change does not stick to it.
    again = await graph.ainvoke(
        {"messages": [HumanMessage(GRANT_CALCULATOR)]}, rollback, context=Context()
    )
    assert again["proposal"]["operation"] == "add"
