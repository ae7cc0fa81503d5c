"""Assistants endpoints against a live server, through langgraph_sdk and raw HTTP."""

from __future__ import annotations

import uuid

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from server.graphs import assistant_id_for
from tests.support.server import LiveServer

GRAPHS = ["simple", "chat", "hitl", "failing", "parent", "slow", "greeter"]


async def test_default_assistants_are_synced_at_startup(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    found = await client.assistants.search(metadata={"created_by": "system"}, limit=100)
    by_graph = {a["graph_id"]: a for a in found}
    assert set(GRAPHS) <= set(by_graph)
    simple = by_graph["simple"]
    assert simple["assistant_id"] == assistant_id_for("simple")
    assert simple["name"] == "simple"
    assert simple["version"] == 1
    assert set(simple) >= {
        "assistant_id",
        "graph_id",
        "config",
        "context",
        "metadata",
        "name",
        "created_at",
        "updated_at",
        "version",
        "description",
    }


async def test_create_get_patch_versions_latest_delete(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tag = uuid.uuid4().hex
    created = await client.assistants.create(
        "simple", config={"tags": ["a"]}, metadata={"tag": tag, "n": 1}, name="mine"
    )
    aid = created["assistant_id"]
    assert created["version"] == 1 and created["name"] == "mine"
    assert (await client.assistants.get(aid))["metadata"] == {"tag": tag, "n": 1}

    patched = await client.assistants.update(aid, metadata={"n": 2}, name="mine2")
    assert patched["version"] == 2
    assert patched["metadata"] == {"tag": tag, "n": 2}  # merged
    assert patched["config"] == {"tags": ["a"]}
    patched = await client.assistants.update(aid, config={"tags": ["b"]})
    assert patched["version"] == 3 and patched["name"] == "mine2"

    versions = await client.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert versions[2]["name"] == "mine"

    pinned = await client.assistants.set_latest(aid, 1)
    assert pinned["version"] == 1 and pinned["name"] == "mine"
    assert pinned["config"] == {"tags": ["a"]}
    # A change after pinning an old version becomes a new version, never a collision.
    assert (await client.assistants.update(aid, name="again"))["version"] == 4

    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, aid, input={"messages": [{"role": "user", "content": "hi"}]})
    assert (await client.threads.get(tid))["metadata"]["assistant_id"] == aid
    await client.assistants.delete(aid, delete_threads=True)
    with pytest.raises(NotFoundError):
        await client.assistants.get(aid)
    with pytest.raises(NotFoundError):
        await client.threads.get(tid)  # its threads went with it


async def test_create_if_exists_and_context(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    aid = str(uuid.uuid4())
    first = await client.assistants.create("greeter", assistant_id=aid, context={"greeting": "yo"})
    assert first["context"] == {"greeting": "yo"}
    assert first["config"]["configurable"] == {"greeting": "yo"}
    same = await client.assistants.create("simple", assistant_id=aid, if_exists="do_nothing")
    assert same["graph_id"] == "greeter" and same["created_at"] == first["created_at"]
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        dup = await http.post("/assistants", json={"graph_id": "simple", "assistant_id": aid})
        assert dup.status_code == 409
        assert dup.json() == {"detail": f"Assistant {aid} already exists"}
        unknown = await http.post("/assistants", json={"graph_id": "nope"})
        assert unknown.status_code == 404
        assert unknown.json()["detail"].startswith("Graph 'nope' not found")
        # The assistant is used by runs: its context reaches the graph.
        out = await http.post("/runs/wait", json={"assistant_id": aid, "input": {"name": "ann"}})
        assert out.json()["said"] == "yo ann"


async def test_search_filters_sort_select_and_paging(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tag = uuid.uuid4().hex
    for name in ("b-one", "a-two", "c-three"):
        await client.assistants.create("chat", metadata={"tag": tag}, name=name)
    names = [
        a["name"]
        for a in await client.assistants.search(
            metadata={"tag": tag}, sort_by="name", sort_order="asc"
        )
    ]
    assert names == ["a-two", "b-one", "c-three"]
    assert await client.assistants.count(metadata={"tag": tag}) == 3
    assert await client.assistants.count(metadata={"tag": tag}, graph_id="simple") == 0
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        page = await http.post(
            "/assistants/search",
            json={"metadata": {"tag": tag}, "limit": 2, "select": ["assistant_id", "name"]},
        )
        assert page.headers["x-pagination-total"] == "3"
        assert page.headers["x-pagination-next"] == "2"
        assert all(set(item) == {"assistant_id", "name"} for item in page.json())
        last = await http.post(
            "/assistants/search", json={"metadata": {"tag": tag}, "limit": 2, "offset": 2}
        )
        assert last.headers["x-pagination-total"] == "3"
        assert "x-pagination-next" not in last.headers
        assert len(last.json()) == 1
        by_name = await http.post("/assistants/search", json={"name": "b-on", "graph_id": "chat"})
        assert [a["name"] for a in by_name.json()] == ["b-one"]
        # Studio posts JSON as text/plain.
        plain = await http.post(
            "/assistants/search",
            content=b'{"limit":10,"offset":0,"metadata":{"created_by":"system"}}',
            headers={"Content-Type": "text/plain"},
        )
        assert plain.status_code == 200
        assert {a["graph_id"] for a in plain.json()} >= {"simple", "chat"}


async def test_graph_schemas_and_subgraphs(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    graph = await client.assistants.get_graph(assistant_id_for("hitl"), xray=1)
    assert [n["id"] for n in graph["nodes"]] == ["__start__", "propose", "review", "act", "__end__"]
    assert graph["nodes"][1] == {"id": "propose", "type": "runnable", "data": {"name": "propose"}}
    assert graph["nodes"][-1] == {"id": "__end__"}
    assert {"source": "__start__", "target": "propose"} in graph["edges"]
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        # A graph id works in place of the assistant UUID; xray=true draws the subgraph.
        drawn = (await http.get("/assistants/parent/graph", params={"xray": "true"})).json()
        assert "child:sub_step" in [n["id"] for n in drawn["nodes"]]
        flat = (await http.get("/assistants/parent/graph")).json()
        assert "child" in [n["id"] for n in flat["nodes"]]
        bad = await http.get("/assistants/parent/graph", params={"xray": "abc"})
        assert bad.status_code == 422 and bad.json() == {"detail": "Invalid xray value"}

    schemas = await client.assistants.get_schemas(assistant_id_for("hitl"))
    assert schemas["graph_id"] == "hitl"
    assert schemas["state_schema"]["title"] == "hitl_state"
    assert schemas["state_schema"]["properties"]["log"]["default"] is None
    assert set(schemas["input_schema"]["properties"]) == {"proposal", "approved", "log"}
    assert schemas["config_schema"] == {} and schemas["context_schema"] is None
    greeter = await client.assistants.get_schemas(assistant_id_for("greeter"))
    assert "greeting" in greeter["context_schema"]["properties"]

    subgraphs = await client.assistants.get_subgraphs(assistant_id_for("parent"))
    assert set(subgraphs) == {"child"}
    assert set(subgraphs["child"]) == {
        "input_schema",
        "output_schema",
        "state_schema",
        "config_schema",
        "context_schema",
    }
    assert await client.assistants.get_subgraphs(assistant_id_for("simple")) == {}
    child = await client.assistants.get_subgraphs(
        assistant_id_for("parent"), namespace="child", recurse=True
    )
    assert list(child) == ["child"]


async def test_errors_are_json_and_change_nothing(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        bad_id = await http.get("/assistants/not-a-uuid")
        assert bad_id.status_code == 422
        assert bad_id.json() == {"detail": "Invalid assistant ID: must be a UUID"}
        missing = str(uuid.uuid4())
        gone = await http.get(f"/assistants/{missing}")
        assert gone.status_code == 404 and missing in gone.json()["detail"]
        assert (await http.delete(f"/assistants/{missing}")).status_code == 404
        assert (await http.patch(f"/assistants/{missing}", json={"name": "x"})).status_code == 404
        too_many = await http.post("/assistants/search", json={"limit": 5000})
        assert too_many.status_code == 422 and "limit" in too_many.json()["detail"]
        wrong_type = await http.post("/assistants", json={"graph_id": 5})
        assert wrong_type.status_code == 422
        before = (await http.post("/assistants/count", json={})).json()
        both = await http.post(
            "/assistants",
            json={"graph_id": "simple", "config": {"configurable": {"a": 1}}, "context": {"a": 1}},
        )
        assert both.status_code == 400
        assert (await http.post("/assistants/count", json={})).json() == before
