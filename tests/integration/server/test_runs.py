"""Runs endpoints against a live server: background, wait, join, stateless, batch, errors."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from server.graphs import assistant_id_for
from tests.support.server import REPO, LiveServer

HUMAN = {"messages": [{"role": "user", "content": "hi"}]}
RUN_KEYS = {
    "run_id",
    "thread_id",
    "assistant_id",
    "metadata",
    "status",
    "kwargs",
    "multitask_strategy",
    "created_at",
    "updated_at",
    "langsmith_session_name",
}


async def test_background_run_join_get_list_delete(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        created = await http.post(
            f"/threads/{tid}/runs",
            json={"assistant_id": "simple", "input": HUMAN, "metadata": {"m": 1}},
        )
    assert created.status_code == 200
    run = created.json()
    assert set(run) == RUN_KEYS
    assert run["status"] in ("pending", "running") and run["thread_id"] == tid
    assert run["assistant_id"] == assistant_id_for("simple")
    assert run["multitask_strategy"] == "enqueue" and run["metadata"]["m"] == 1
    assert created.headers["content-location"] == f"/threads/{tid}/runs/{run['run_id']}"
    assert "location" not in created.headers

    joined = await client.runs.join(tid, run["run_id"])
    assert joined["count"] == 1
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"
    second = await client.runs.create(tid, "simple", input=HUMAN)
    assert (await client.runs.join(tid, second["run_id"]))["count"] == 2
    listed = await client.runs.list(tid)
    assert [r["run_id"] for r in listed] == [second["run_id"], run["run_id"]]
    assert [r["run_id"] for r in await client.runs.list(tid, limit=1, offset=1)] == [run["run_id"]]
    assert await client.runs.list(tid, status="error") == []
    await client.runs.delete(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, run["run_id"])
    # Joining a finished run answers at once with the thread's values.
    assert (await client.runs.join(tid, second["run_id"]))["count"] == 2


async def test_wait_headers_and_output(live_server: LiveServer) -> None:
    tid = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        await http.post("/threads", json={"thread_id": tid})
        response = await http.post(
            f"/threads/{tid}/runs/wait", json={"assistant_id": "simple", "input": HUMAN}
        )
    assert response.status_code == 200
    match = re.fullmatch(rf"/threads/{tid}/runs/([0-9a-f-]+)", response.headers["content-location"])
    assert match is not None
    assert response.headers["location"] == f"{response.headers['content-location']}/join"
    body = response.json()
    assert body["count"] == 1
    assert list(body["messages"][1]) == [
        "content",
        "additional_kwargs",
        "response_metadata",
        "type",
        "name",
        "id",
        "tool_calls",
        "invalid_tool_calls",
        "usage_metadata",
    ]
    assert body["messages"][1]["content"] == "echo: hi"


async def test_failed_run_reports_error_everywhere(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        response = await http.post(
            f"/threads/{tid}/runs/wait", json={"assistant_id": "failing", "input": {"x": 1}}
        )
    assert response.status_code == 200
    error = {"error": "ValueError", "message": "intentional failure for testing"}
    assert response.json() == {"__error__": error}
    thread = await client.threads.get(tid)
    assert thread["status"] == "error" and thread["error"] == error
    assert thread["values"] == {"x": 1}
    run = (await client.runs.list(tid))[0]
    assert run["status"] == "error"
    assert await client.runs.join(tid, run["run_id"]) == {"__error__": error}
    with pytest.raises(Exception, match="ValueError: intentional failure"):
        await client.runs.wait(tid, "failing", input={"x": 2}, raise_error=True)


async def test_stateless_runs_and_batch(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tag = uuid.uuid4().hex
    out = await client.runs.wait(None, "simple", input=HUMAN, metadata={"tag": tag})
    assert out["count"] == 1
    kept = await client.runs.wait(None, "simple", input=HUMAN, on_completion="keep")
    assert kept["count"] == 1
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        background = await http.post("/runs", json={"assistant_id": "simple", "input": HUMAN})
        run = background.json()
        assert background.headers["content-location"] == f"/runs/{run['run_id']}"
        assert run["kwargs"]["temporary"] is True
        batch = await http.post(
            "/runs/batch",
            json=[
                {"assistant_id": "simple", "input": HUMAN},
                {"assistant_id": "chat", "input": HUMAN},
            ],
        )
        assert batch.status_code == 200
        assert [r["assistant_id"] for r in batch.json()] == [
            assistant_id_for("simple"),
            assistant_id_for("chat"),
        ]
        empty = await http.post("/runs/batch", json=[])
        assert empty.status_code == 422
        for on_completion, kept in (("keep", 1), ("delete", 0)):
            text = f"{on_completion}-{tag}"
            await http.post(
                "/runs/wait",
                json={
                    "assistant_id": "simple",
                    "input": {"messages": [{"role": "user", "content": text}]},
                    "on_completion": on_completion,
                },
            )
            found = await http.post(
                "/threads/search", json={"values": {"messages": [{"content": text}]}}
            )
            assert len(found.json()) == kept, on_completion


async def test_if_not_exists_and_missing_things(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        missing = await http.post(f"/threads/{tid}/runs", json={"assistant_id": "simple"})
        assert missing.status_code == 404
        assert missing.json() == {"detail": "Thread or assistant not found."}
        no_assistant = await http.post(
            "/runs/wait", json={"assistant_id": str(uuid.uuid4()), "input": HUMAN}
        )
        assert no_assistant.status_code == 404
        unknown = await http.post("/runs/wait", json={"assistant_id": "nope", "input": {}})
        assert unknown.status_code == 422
        assert unknown.json()["detail"].startswith(
            "Invalid assistant: 'nope'. Must be either:\n- A valid assistant UUID, or\n"
            "- One of the registered graphs: simple, chat, hitl, failing, parent"
        )
        for mode in ("tools", "lifecycle", "bogus"):
            rejected = await http.post(
                "/runs/stream", json={"assistant_id": "simple", "input": {}, "stream_mode": mode}
            )
            assert rejected.status_code == 422, mode
            assert "stream_mode" in rejected.json()["detail"]
        assert (await http.get(f"/threads/{tid}")).status_code == 404  # nothing was created
        run_missing = await http.get(f"/threads/{tid}/runs/{uuid.uuid4()}")
        assert run_missing.status_code == 404
    out = await client.runs.wait(tid, "simple", input=HUMAN, if_not_exists="create")
    assert out["count"] == 1
    assert (await client.threads.get(tid))["metadata"]["graph_id"] == "simple"


async def test_context_config_metadata_reach_the_graph(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    out = await client.runs.wait(
        None,
        "greeter",
        input={"name": "ann"},
        context={"greeting": "howdy", "not_in_schema": True},
        config={"tags": ["x", "y"]},
        metadata={"purpose": "testing"},
    )
    assert out == {"name": "ann", "said": "howdy ann", "tagged": "x,y|testing"}
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "simple", input=HUMAN, metadata={"purpose": "meta"})
    metadata = (await client.threads.get_state(tid))["metadata"]
    assert metadata["purpose"] == "meta" and metadata["run_attempt"] == 1
    assert metadata["graph_id"] == "simple"
    assert metadata["assistant_id"] == assistant_id_for("simple")
    assert metadata["run_id"] == (await client.runs.list(tid))[0]["run_id"]


async def test_command_goto_update_and_checkpoint(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "simple", input=HUMAN)
    # goto + update: jump straight to b with an updated count.
    out = await client.runs.wait(tid, "simple", command={"goto": "b", "update": {"count": 10}})
    assert out["count"] == 11 and len(out["messages"]) == 2
    # goto a Send: node b runs on the given input, not on the thread's state.
    out = await client.runs.wait(
        tid, "simple", command={"goto": {"node": "b", "input": {"count": 5}}}
    )
    assert out["count"] == 6 and len(out["messages"]) == 2
    # checkpoint_id: run again from the state before node a ran.
    history = await client.threads.get_history(tid, limit=100)
    before_a = next(h for h in reversed(history) if h["next"] == ["a"])
    replay = await client.runs.wait(
        tid, "simple", input=None, checkpoint_id=before_a["checkpoint_id"]
    )
    assert replay["count"] == 1 and len(replay["messages"]) == 2


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_durability_modes(live_server: LiveServer, durability: str) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(tid, "simple", input=HUMAN, durability=durability)
    assert out["count"] == 1
    history = await client.threads.get_history(tid, limit=10)
    # "exit" keeps only the final checkpoint; the others keep every step.
    assert len(history) == (1 if durability == "exit" else 4)


async def test_graph_from_langgraph_json_outside_the_repo(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "agent.py").write_text(
        "from typing_extensions import TypedDict\n"
        "from langgraph.graph import StateGraph, START, END\n"
        "class S(TypedDict, total=False):\n    text: str\n"
        "def shout(state: S) -> dict:\n    return {'text': state['text'].upper()}\n"
        "builder = StateGraph(S)\nbuilder.add_node('shout', shout)\n"
        "builder.add_edge(START, 'shout')\nbuilder.add_edge('shout', END)\n"
        "graph = builder\n"  # an uncompiled StateGraph: the server compiles it
    )
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"shouter": "./agent.py:graph"}}))
    assert not str(tmp_path).startswith(str(REPO))
    server = server_factory(config=config)
    client = get_client(url=server.url)
    assert await client.runs.wait(None, "shouter", input={"text": "hey"}) == {"text": "HEY"}
    found = await client.assistants.search(graph_id="shouter")
    assert [a["assistant_id"] for a in found] == [assistant_id_for("shouter")]


async def test_a_final_state_jsonb_cannot_hold_ends_the_run_and_the_thread_keeps_its_values(
    live_server: LiveServer,
) -> None:
    """A NUL character in the final state: the run succeeds and answers it (JSON can carry it);
    the thread's row, a copy Postgres cannot hold, keeps the values it had; the checkpoint,
    where the state lives, has it."""
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.wait(tid, "notes", input={"nul": False})
    assert first == {"nul": False, "note": "plain"}

    second = await client.runs.wait(tid, "notes", input={"nul": True})

    assert second == {"nul": True, "note": "before\x00after"}
    assert [r["status"] for r in await client.runs.list(tid)] == ["success", "success"]
    thread = await client.threads.get(tid)
    assert thread["status"] == "idle" and thread["values"] == {"nul": False, "note": "plain"}
    state = await client.threads.get_state(tid)
    assert state["values"] == {"nul": True, "note": "before\x00after"}
