"""Threads endpoints against a live server: CRUD, search, state, history, copy, prune."""

from __future__ import annotations

import uuid

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from server.graphs import assistant_id_for
from tests.support.server import LiveServer

HUMAN = {"messages": [{"role": "user", "content": "hi"}]}
STATE_KEYS = [
    "values",
    "next",
    "tasks",
    "metadata",
    "created_at",
    "checkpoint",
    "parent_checkpoint",
    "interrupts",
    "checkpoint_id",
    "parent_checkpoint_id",
]


async def test_create_get_patch_delete(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = str(uuid.uuid4())
    thread = await client.threads.create(thread_id=tid, metadata={"k": "v"})
    assert thread["thread_id"] == tid and thread["status"] == "idle"
    assert thread["metadata"] == {"k": "v"} and thread["values"] is None
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=tid)
    again = await client.threads.create(thread_id=tid, if_exists="do_nothing", metadata={"z": 1})
    assert again["metadata"] == {"k": "v"}
    patched = await client.threads.update(tid, metadata={"k2": "v2"})
    assert patched["metadata"] == {"k": "v", "k2": "v2"}
    fetched = await client.threads.get(tid)
    assert fetched["metadata"] == {"k": "v", "k2": "v2"}
    assert set(fetched) >= {"thread_id", "created_at", "updated_at", "status", "values"}
    await client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        await client.threads.get(tid)
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        missing = await http.get(f"/threads/{tid}")
        assert missing.status_code == 404
        assert missing.json() == {"detail": f"Thread with ID {tid} not found"}
        bad = await http.get("/threads/xyz")
        assert bad.status_code == 422
        assert bad.json() == {"detail": "Invalid thread ID: must be a UUID"}
        assert (await http.delete(f"/threads/{tid}")).status_code == 404


async def test_thread_after_run_has_values_status_and_graph(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "simple", input=HUMAN)
    fetched = await client.threads.get(tid)
    assert fetched["status"] == "idle"
    assert fetched["metadata"] == {"graph_id": "simple", "assistant_id": assistant_id_for("simple")}
    assert fetched["values"]["count"] == 1
    assert [m["type"] for m in fetched["values"]["messages"]] == ["human", "ai"]
    assert fetched["error"] is None and fetched["interrupts"] == {}


async def test_search_count_and_paging(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tag = uuid.uuid4().hex
    made = [
        (await client.threads.create(metadata={"tag": tag, "i": i}))["thread_id"] for i in range(3)
    ]
    await client.runs.wait(made[0], "simple", input=HUMAN)
    found = await client.threads.search(metadata={"tag": tag})
    assert [t["thread_id"] for t in found] == made[::-1]  # newest first
    assert await client.threads.count(metadata={"tag": tag}) == 3
    by_values = await client.threads.search(metadata={"tag": tag}, values={"count": 1})
    assert [t["thread_id"] for t in by_values] == [made[0]]
    idle = await client.threads.search(metadata={"tag": tag, "i": 1}, status="idle")
    assert [t["thread_id"] for t in idle] == [made[1]]
    assert await client.threads.search(metadata={"tag": tag}, status="busy") == []
    oldest_first = await client.threads.search(
        metadata={"tag": tag}, sort_by="created_at", sort_order="asc"
    )
    assert [t["thread_id"] for t in oldest_first] == made
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        page = await http.post(
            "/threads/search",
            json={"metadata": {"tag": tag}, "limit": 2, "select": ["thread_id", "status"]},
        )
        assert page.headers["x-pagination-total"] == "3"
        assert page.headers["x-pagination-next"] == "2"
        assert all(set(t) == {"thread_id", "status"} for t in page.json())
        by_ids = await http.post("/threads/search", json={"ids": made[:2]})
        assert {t["thread_id"] for t in by_ids.json()} == set(made[:2])
        bad = await http.post("/threads/search", json={"status": "sleeping"})
        assert bad.status_code == 422


async def test_state_history_and_checkpoints(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    empty = await client.threads.get_state(tid)
    assert empty["values"] == {} and empty["checkpoint"] is None
    assert await client.threads.get_history(tid) == []
    await client.runs.wait(tid, "simple", input=HUMAN)

    state = await client.threads.get_state(tid)
    assert list(state) == STATE_KEYS
    assert state["next"] == [] and state["values"]["count"] == 1
    assert state["checkpoint"]["thread_id"] == tid and state["checkpoint"]["checkpoint_ns"] == ""
    assert state["metadata"]["graph_id"] == "simple" and state["metadata"]["step"] == 2

    history = await client.threads.get_history(tid, limit=10)
    assert [h["metadata"]["step"] for h in history] == [2, 1, 0, -1]  # newest first
    assert [h["next"] for h in history] == [[], ["b"], ["a"], ["__start__"]]
    assert history[1]["tasks"][0]["name"] == "b"
    assert len(await client.threads.get_history(tid, limit=2)) == 2
    before = await client.threads.get_history(tid, before=history[1]["checkpoint"])
    assert [h["metadata"]["step"] for h in before] == [0, -1]
    step1 = await client.threads.get_history(tid, metadata={"step": 1})
    assert [h["checkpoint_id"] for h in step1] == [history[1]["checkpoint_id"]]

    at = await client.threads.get_state(tid, checkpoint_id=history[2]["checkpoint_id"])
    assert at["next"] == ["a"] and at["values"]["messages"][0]["content"] == "hi"
    at2 = await client.threads.get_state(tid, checkpoint=history[2]["checkpoint"])
    assert at2["checkpoint_id"] == history[2]["checkpoint_id"]
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        got = await http.get(f"/threads/{tid}/history", params={"limit": 1})
        assert [h["checkpoint_id"] for h in got.json()] == [history[0]["checkpoint_id"]]
        sub = await http.get(f"/threads/{tid}/state", params={"subgraphs": "true"})
        assert sub.status_code == 200


async def test_update_state_as_node_and_copy_fork(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "simple", input=HUMAN)
    history = await client.threads.get_history(tid)

    written = await client.threads.update_state(tid, {"count": 42}, as_node="b")
    assert set(written) == {"checkpoint", "configurable", "checkpoint_id"}
    assert written["checkpoint"]["thread_id"] == tid
    state = await client.threads.get_state(tid)
    assert state["values"]["count"] == 42
    assert state["checkpoint_id"] == written["checkpoint_id"]
    assert (await client.threads.get(tid))["values"]["count"] == 42

    # "__copy__" forks an earlier checkpoint: the thread's head goes back to it, to re-run.
    fork = await client.threads.update_state(
        tid, None, as_node="__copy__", checkpoint_id=history[2]["checkpoint_id"]
    )
    forked = await client.threads.get_state(tid)
    assert forked["checkpoint_id"] == fork["checkpoint_id"] and forked["next"] == ["a"]
    assert forked["metadata"]["source"] == "fork"
    rerun = await client.runs.wait(tid, "simple", input=None)
    assert rerun["count"] == 1 and len(rerun["messages"]) == 2

    async with httpx.AsyncClient(base_url=live_server.url) as http:
        bad = await http.post(
            f"/threads/{tid}/state", json={"values": {"count": 1}, "as_node": "zzz"}
        )
        assert bad.status_code == 400 and "zzz" in bad.json()["detail"]
        fresh = (await http.post("/threads", json={})).json()["thread_id"]
        no_graph = await http.post(f"/threads/{fresh}/state", json={"values": {"count": 1}})
        assert no_graph.status_code == 400 and "no assigned graph ID" in no_graph.json()["detail"]


async def test_copy_prune_storage_and_supersteps(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create(metadata={"who": "orig"}))["thread_id"]
    await client.runs.wait(tid, "simple", input=HUMAN)
    copy = await client.threads.copy(tid)
    assert copy["thread_id"] != tid and copy["metadata"]["who"] == "orig"
    original = await client.threads.get_history(tid, limit=100)
    copied = await client.threads.get_history(copy["thread_id"], limit=100)
    assert [h["checkpoint_id"] for h in copied] == [h["checkpoint_id"] for h in original]
    assert copied[0]["checkpoint"]["thread_id"] == copy["thread_id"]
    # The copy is its own thread: running on it leaves the original alone.
    await client.runs.wait(copy["thread_id"], "simple", input=HUMAN)
    assert len(await client.threads.get_history(tid, limit=100)) == len(original)

    async with httpx.AsyncClient(base_url=live_server.url) as http:
        storage = (await http.get(f"/threads/{tid}/storage")).json()
        assert storage["thread_id"] == tid and storage["checkpoints"]["count"] == 4
        assert storage["total_bytes"] > 0 and "messages" in storage["channel_values"]["by_channel"]
        kept = await http.post(
            "/threads/prune", json={"thread_ids": [tid], "strategy": "keep_latest"}
        )
        assert kept.json() == {"pruned_count": 1}
        assert len(await client.threads.get_history(tid, limit=100)) == 1
        assert (await client.threads.get_state(tid))["values"]["count"] == 1
        deleted = await http.post("/threads/prune", json={"thread_ids": [copy["thread_id"]]})
        assert deleted.json() == {"pruned_count": 1}
        assert (await http.get(f"/threads/{copy['thread_id']}")).status_code == 404

    seeded = await client.threads.create(
        metadata={"graph_id": "simple"},
        supersteps=[{"updates": [{"values": HUMAN, "as_node": "a"}]}],
    )
    assert seeded["status"] == "interrupted"  # the seeded state waits for node b
    assert seeded["values"]["messages"][0]["content"] == "hi"
    state = await client.threads.get_state(seeded["thread_id"])
    assert state["next"] == ["b"]
    finished = await client.runs.wait(seeded["thread_id"], "simple", input=None)
    assert finished["count"] == 1
