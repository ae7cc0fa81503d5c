"""The organisation seen through the server: members and circles as subgraphs.

The repo's ``supervisor`` and ``staff`` graphs served over HTTP: the xray drawing opens each
member, ``/subgraphs`` lists members and nested circles with their schemas, a run's
``interrupt_before`` naming a node inside a member pauses there (the name as the xray drawing
writes it) and resumes, the paused member's state shows in ``get_state(subgraphs=true)``, and
streamed subgraph output keeps the ``<event>|<node>:<task id>|...`` namespaces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from server.graphs import assistant_id_for
from tests.support.server import REPO, LiveServer, fresh_database, start_server
from tests.support.sse import post_stream

DELEGATE = "Draft a blog post announcing our new product launch"
RESEARCH = "Research the market for electric bikes and summarise the findings"
STAFF_MEMBERS = ("chief_of_staff", "writer", "compliance_officer", "finance", "people")


@pytest.fixture(scope="module")
def org_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for this module serving the repo's supervisor and staff graphs."""
    config = tmp_path_factory.mktemp("org") / "langgraph.json"
    graphs = {
        name: str(REPO / "graphs" / f"{name}.py") + ":graph" for name in ("supervisor", "staff")
    }
    config.write_text(json.dumps({"dependencies": [str(REPO)], "graphs": graphs}))
    server = start_server(env={"DATABASE_URL": fresh_database(database_url)}, config=config)
    try:
        yield server
    finally:
        server.stop()


async def test_staff_xray_draws_every_member_and_nested_circle(org_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=org_server.url) as http:
        drawn = {}
        for xray in ("false", "1", "2"):
            response = await http.get("/assistants/staff/graph", params={"xray": xray})
            assert response.status_code == 200
            drawn[xray] = {node["id"] for node in response.json()["nodes"]}
    assert "writer" in drawn["false"] and not any(":" in n for n in drawn["false"])
    assert len(drawn["false"]) < len(drawn["1"]) < len(drawn["2"])
    for member in STAFF_MEMBERS:
        assert {f"{member}:model", f"{member}:tools"} <= drawn["1"]
    # The research circle is a supervisor: its lead at depth 1, its members' agents at 2.
    assert "research:lead" in drawn["1"] and "research:researcher:model" not in drawn["1"]
    assert {"research:researcher:model", "research:analyst:model"} <= drawn["2"]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ("supervisor", {"writer", "analyst", "finance"}),
        (
            "staff",
            {*STAFF_MEMBERS, "research", "research|researcher", "research|analyst"},
        ),
    ],
)
async def test_subgraphs_list_members_with_their_schemas(
    org_server: LiveServer, graph: str, expected: set[str]
) -> None:
    client = get_client(url=org_server.url)
    found = await client.assistants.get_subgraphs(assistant_id_for(graph), recurse=True)
    assert set(found) == expected
    for schemas in found.values():
        assert set(schemas) == {
            "input_schema",
            "output_schema",
            "state_schema",
            "config_schema",
            "context_schema",
        }
        assert "messages" in schemas["input_schema"]["properties"]
    top = await client.assistants.get_subgraphs(assistant_id_for("staff"))
    assert set(top) == {*STAFF_MEMBERS, "research"}
    inside = await client.assistants.get_subgraphs(assistant_id_for("staff"), namespace="research")
    assert set(inside) == {"research"}


async def test_interrupt_before_a_node_inside_a_member_pauses_and_resumes(
    org_server: LiveServer,
) -> None:
    client = get_client(url=org_server.url)
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(
        thread_id,
        "supervisor",
        input={"messages": [{"role": "user", "content": DELEGATE}]},
        interrupt_before=["writer:model"],
    )
    assert (await client.threads.get(thread_id))["status"] == "interrupted"
    state: Any = await client.threads.get_state(thread_id, subgraphs=True)
    assert state["next"] == ["writer"]
    (task,) = state["tasks"]
    member = task["state"]
    assert task["name"] == "writer" and member["next"] == ["model"]
    assert re.fullmatch(r"writer:[0-9a-f-]{36}", member["checkpoint"]["checkpoint_ns"])
    # The member has its brief and nothing more: the model has not run yet.
    (brief,) = member["values"]["messages"]
    assert brief["type"] == "human" and brief["content"].startswith("Draft")
    # Without subgraphs=true the task points at the member's checkpoint instead.
    flat: Any = await client.threads.get_state(thread_id)
    pointer = flat["tasks"][0]["state"]["configurable"]
    assert pointer["checkpoint_ns"] == member["checkpoint"]["checkpoint_ns"]

    done: Any = await client.runs.wait(thread_id, "supervisor", input=None)
    assert (await client.threads.get(thread_id))["status"] == "idle"
    (handoff,) = done["handoffs"]
    assert handoff["member"] == "writer" and handoff["answer"]
    assert done["messages"][-1]["name"] == "chief_of_staff"


async def test_interrupt_reaches_a_nested_circle(org_server: LiveServer) -> None:
    client = get_client(url=org_server.url)
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(
        thread_id,
        "staff",
        input={"messages": [{"role": "user", "content": RESEARCH}]},
        interrupt_after=["research:lead"],
    )
    state: Any = await client.threads.get_state(thread_id, subgraphs=True)
    (task,) = state["tasks"]
    circle = task["state"]
    assert task["name"] == "research"
    assert circle["next"] and set(circle["next"]) <= {"researcher", "analyst", "budget_guard"}
    lead = circle["values"]["messages"][-1]  # the circle lead (the researcher) has delegated
    assert lead["name"] == "researcher" and lead["tool_calls"]
    await client.runs.wait(thread_id, "staff", input=None)
    assert (await client.threads.get(thread_id))["status"] == "idle"


async def test_stream_namespaces_name_circle_then_member(org_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=org_server.url, timeout=120) as http:
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        _, frames = await post_stream(
            http,
            f"/threads/{thread_id}/runs/stream",
            {
                "assistant_id": "staff",
                "input": {"messages": [{"role": "user", "content": RESEARCH}]},
                "stream_mode": ["updates"],
                "stream_subgraphs": True,
            },
        )
    events = {f.event for f in frames}
    uuid = "[0-9a-f-]{36}"
    assert any(re.fullmatch(rf"updates\|research:{uuid}", e) for e in events)
    assert any(re.fullmatch(rf"updates\|research:{uuid}\|researcher:{uuid}", e) for e in events)
