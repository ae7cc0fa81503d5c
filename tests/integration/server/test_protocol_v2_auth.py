"""Protocol v2 with built-in API keys: runs started by commands are their caller's."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.integration.server.test_protocol_v2 import _frames, _root_end
from tests.support.auth.matrix import create_key

AUTH_CONFIG = Path(__file__).resolve().parents[2] / "support" / "auth" / "langgraph.json"


def _start(graph: str, graph_input: Any, **params: Any) -> dict[str, Any]:
    body = {"assistant_id": graph, "input": graph_input, **params}
    return {"id": 1, "method": "run.start", "params": body}


async def test_a_command_run_carries_its_callers_identity(server_factory: Any) -> None:
    server = server_factory(env={"STAFFGRAPH_AUTH": "keys"}, config=AUTH_CONFIG)
    alice_key = await asyncio.to_thread(create_key, server.env["DATABASE_URL"], "alice")
    thread_id = str(uuid.uuid4())
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-api-key": alice_key}, timeout=60
    ) as alice:
        spoof = await alice.post(
            f"/threads/{thread_id}/commands",
            json=_start("whoami", {}, config={"configurable": {"user_id": "bob"}}),
        )
        started = await alice.post(f"/threads/{thread_id}/commands", json=_start("whoami", {}))
        assert started.json()["type"] == "success", started.text
        frames = await _frames(alice, thread_id, {"channels": ["values", "lifecycle"]}, _root_end)
    assert spoof.json() == {
        "type": "error",
        "id": 1,
        "error": "unknown_error",
        "message": "403: config.configurable.user_id must be the authenticated user's id, "
        "or left out",
    }
    # The server, not the client, told the graph who started the run.
    assert frames[-2].data["params"]["data"]["seen"]["user_id"] == "alice"
