"""Approval interrupts over HTTP: the governance graph's gate answered with each decision type.

The gate speaks LangChain's human-in-the-loop schema; a client resumes it through the server with
``command={"resume": {"decisions": [...]}}`` exactly as it would a LangChain agent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from tests.support.server import REPO, LiveServer

GRANT_CALCULATOR = "Grant the writer the calculator so it can check figures in drafts"
GRANT_WEB = "Grant the writer the http_get tool to fetch sources"


@pytest.fixture
def governance_server(
    tmp_path: Path, server_factory: Callable[..., LiveServer]
) -> Callable[[], LiveServer]:
    """Start servers (each on a fresh database) serving the repo's governance graph."""
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "dependencies": [str(REPO)],
                "graphs": {"governance": str(REPO / "graphs" / "governance.py") + ":graph"},
            }
        )
    )
    return lambda: server_factory(config=config)


async def _propose(client: Any, tension: str, **context: Any) -> tuple[str, dict[str, Any]]:
    thread_id = (await client.threads.create())["thread_id"]
    paused = await client.runs.wait(
        thread_id,
        "governance",
        input={"messages": [{"role": "user", "content": tension}]},
        context=context or None,
    )
    (interrupt,) = paused["__interrupt__"]
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    return thread_id, interrupt["value"]


async def _decide(
    client: Any, thread_id: str, decision: dict[str, Any], **context: Any
) -> dict[str, Any]:
    result: dict[str, Any] = await client.runs.wait(
        thread_id,
        "governance",
        command={"resume": {"decisions": [decision]}},
        context=context or None,
    )
    return result


async def test_approve_and_reject(governance_server: Callable[[], LiveServer]) -> None:
    client = get_client(url=governance_server().url)

    thread_id, request = await _propose(client, GRANT_WEB)
    (action,) = request["action_requests"]
    assert action["name"] == "change_role" and action["args"]["value"] == "http_get"
    assert request["review_configs"][0]["allowed_decisions"] == ["edit", "reject", "respond"]
    rejected = await _decide(client, thread_id, {"type": "reject", "message": "stay offline"})
    assert rejected["outcome"] == {"status": "rejected", "role": "writer", "reason": "stay offline"}
    assert (await client.threads.get(thread_id))["status"] == "idle"

    thread_id, request = await _propose(client, GRANT_CALCULATOR)
    assert "approve" in request["review_configs"][0]["allowed_decisions"]
    approved = await _decide(client, thread_id, {"type": "approve"})
    assert approved["outcome"] == {"status": "applied", "role": "writer", "version": 1}
    assert [d["type"] for d in approved["decisions"]] == ["approve"]


async def test_edit_then_approve(governance_server: Callable[[], LiveServer]) -> None:
    client = get_client(url=governance_server().url)
    thread_id, request = await _propose(client, GRANT_WEB)
    edited = {**request["action_requests"][0]["args"], "value": "calculator"}
    paused = await _decide(
        client,
        thread_id,
        {"type": "edit", "edited_action": {"name": "change_role", "args": edited}},
    )
    (again,) = paused["__interrupt__"]  # the edited change is assessed and asked about again
    assert again["value"]["action_requests"][0]["args"]["value"] == "calculator"
    result = await _decide(client, thread_id, {"type": "approve"})
    assert result["outcome"] == {"status": "applied", "role": "writer", "version": 1}
    assert [d["type"] for d in result["decisions"]] == ["edit", "approve"]


async def test_respond_sends_guidance_back(governance_server: Callable[[], LiveServer]) -> None:
    client = get_client(url=governance_server().url)
    thread_id, _ = await _propose(client, GRANT_WEB, max_revisions=1)
    paused = await _decide(
        client,
        thread_id,
        {"type": "respond", "message": "Give the writer the calculator instead"},
        max_revisions=1,
    )
    assert paused["revisions"] == 1
    assert paused["proposal"]["value"] == "calculator"
    (again,) = paused["__interrupt__"]
    assert again["value"]["review_configs"][0]["allowed_decisions"] == ["approve", "edit", "reject"]
    result = await _decide(client, thread_id, {"type": "approve"}, max_revisions=1)
    assert result["outcome"] == {"status": "applied", "role": "writer", "version": 1}
