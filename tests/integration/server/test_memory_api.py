"""DELETE /memories/users/{user_id}: everything stored about one user goes, nobody else's."""

from __future__ import annotations

import uuid

import httpx
from langgraph_sdk import get_client

from state.memory import MEMORY_ROOT, owner_label
from tests.support.server import LiveServer


async def test_deleting_a_users_memories_leaves_other_users_alone(
    live_server: LiveServer,
) -> None:
    client = get_client(url=live_server.url)
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    for user in (alice, bob):
        for kind in ("semantic", "episodic"):
            namespace = [MEMORY_ROOT, owner_label("user", user), "analyst", kind]
            await client.store.put_item(namespace, key="k", value={"text": f"{user} {kind}"})

    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as http:
        response = await http.delete(f"/memories/users/{alice}")
        assert response.status_code == 200
        assert response.json() == {"deleted": 2}
        again = await http.delete(f"/memories/users/{alice}")
        assert again.json() == {"deleted": 0}
        too_long = await http.delete(f"/memories/users/{'x' * 300}")
        assert too_long.status_code == 422

    gone = await client.store.search_items([MEMORY_ROOT, owner_label("user", alice)])
    assert gone["items"] == []
    kept = await client.store.search_items([MEMORY_ROOT, owner_label("user", bob)])
    assert sorted(i["value"]["text"] for i in kept["items"]) == [
        f"{bob} episodic",
        f"{bob} semantic",
    ]
