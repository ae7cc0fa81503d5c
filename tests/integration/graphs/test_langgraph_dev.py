"""The official dev server (``langgraph dev``) loads our graphs and runs each one via the SDK."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.support.server import free_port

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "langgraph.json"
GRAPHS = tuple(json.loads(CONFIG.read_text())["graphs"])
STARTUP_SECONDS = 90.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def dev_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """``langgraph dev`` on a free port, loading the repo's own langgraph.json unchanged."""
    # `langgraph dev` resolves graph paths against its working directory, so it runs from the
    # repo root as a user would (its .langgraph_api/ state there is gitignored).
    workdir = tmp_path_factory.mktemp("langgraph-dev")
    config = CONFIG
    port = free_port()
    log_path = workdir / "server.log"
    cli = Path(sys.executable).with_name("langgraph")
    # The dev server keeps threads and its store in .langgraph_api/ of its working directory
    # across restarts: each test session starts from an empty one (a role version stored by
    # an earlier session's governance run would change this one's outcome), and a developer's
    # own dev state is put back afterwards.
    state_dir = REPO / ".langgraph_api"
    saved = workdir / "saved-langgraph-api"
    if state_dir.exists():
        shutil.move(state_dir, saved)
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    cli,
                    "dev",
                    "--no-browser",
                    "--no-reload",
                    "--port",
                    str(port),
                    "--config",
                    config,
                ],
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_until_ok(url, process, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
        if saved.exists():
            shutil.move(saved, state_dir)


async def _wait_until_ok(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS
    async with httpx.AsyncClient(timeout=2.0) as client:
        while loop.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"langgraph dev exited:\n{log_path.read_text(errors='replace')}")
            try:
                if (await client.get(f"{url}/ok")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # the process signals readiness only by answering
    raise RuntimeError(f"langgraph dev did not answer /ok:\n{log_path.read_text(errors='replace')}")


REQUESTS = {
    "supervisor": "Draft a blog post announcing our new product launch",
    "pipeline": "Write a short report on renewable energy adoption in Europe",
    "parallel": "Write a short report on renewable energy adoption in Europe",
    "reflective": "Write a short report on renewable energy adoption in Europe",
    "staff": "Check this announcement for GDPR privacy risk before publication",
    "chat": "What is 12 * (3 + 4)?",
}


async def run(client: LangGraphClient, graph: str, **body: Any) -> tuple[str, Any]:
    thread = await client.threads.create()
    result = await client.runs.wait(thread["thread_id"], graph, **body)
    return thread["thread_id"], result


async def test_dev_server_lists_every_graph(dev_server: str) -> None:
    client = get_client(url=dev_server)
    found = {a["graph_id"] for a in await client.assistants.search(limit=50)}
    assert found == set(GRAPHS)


# Graphs with long-term memory take the user whose memory to use from the run's context.
CONTEXTS = {"chat": {"user_id": "alice"}, "staff": {"user_id": "alice", "max_rounds": 2}}


@pytest.mark.parametrize("graph", sorted(REQUESTS))
async def test_dev_server_completes_a_run(dev_server: str, graph: str) -> None:
    client = get_client(url=dev_server)
    message = {"role": "user", "content": REQUESTS[graph]}
    body: dict[str, Any] = {"input": {"messages": [message]}}
    if graph in CONTEXTS:
        body["context"] = CONTEXTS[graph]
    thread_id, result = await run(client, graph, **body)
    assert isinstance(result, dict), result
    last = result["messages"][-1]
    assert last["type"] == "ai" and last["content"]
    state = await client.threads.get_state(thread_id)
    assert state["next"] == []
    if graph == "chat":
        assert last["content"].endswith("calculator returned: 84.")
    if graph == "supervisor":
        assert result["handoffs"][0]["member"] == "writer"


async def test_dev_server_governance_pauses_for_approval_and_resumes(dev_server: str) -> None:
    client = get_client(url=dev_server)
    tension = "Grant the writer the calculator so it can check figures in drafts"
    thread_id, _ = await run(
        client, "governance", input={"messages": [{"role": "user", "content": tension}]}
    )
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["approve"]
    (pending,) = state["interrupts"]
    assert pending["value"]["review_configs"][0]["action_name"] == "change_role"
    result = await client.runs.wait(
        thread_id, "governance", command={"resume": {"decisions": [{"type": "approve"}]}}
    )
    assert isinstance(result, dict)
    assert result["outcome"] == {"status": "applied", "role": "writer", "version": 1}


@pytest.mark.parametrize("graph", ["supervisor", "pipeline", "parallel", "reflective", "staff"])
async def test_dev_server_sees_members_as_subgraphs(dev_server: str, graph: str) -> None:
    """The official server draws and lists each graph's members as the compiled graph does."""
    compiled = importlib.import_module(f"graphs.{graph}").graph
    client = get_client(url=dev_server)
    (assistant,) = await client.assistants.search(graph_id=graph, limit=1)
    for xray in (False, 1, 2):  # the official server answers xray=0 with a 422
        drawn = await client.assistants.get_graph(assistant["assistant_id"], xray=xray)
        assert [n["id"] for n in drawn["nodes"]] == list(compiled.get_graph(xray=xray).nodes)
    listed = await client.assistants.get_subgraphs(assistant["assistant_id"], recurse=True)
    members = {name for name, _ in compiled.get_subgraphs(recurse=True)}
    assert set(listed) == members and members
