"""Built-in API keys: who a run belongs to, spoofing, revoked and bad keys, clients, the bind rule.

One server with ``STAFFGRAPH_AUTH=keys`` for the module; keys are made with
``staffgraph keys create`` against its database, as an operator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client
from langgraph_sdk.errors import AuthenticationError

from tests.support.auth.matrix import HERE, REPO, cli, create_key
from tests.support.server import LiveServer, fresh_database, start_server

CONFIG = HERE / "langgraph.json"


@pytest.fixture(scope="module")
def keyed(database_url: str) -> Iterator[tuple[LiveServer, str, dict[str, str]]]:
    url = fresh_database(database_url)
    server = start_server(env={"DATABASE_URL": url, "STAFFGRAPH_AUTH": "keys"}, config=CONFIG)
    try:
        keys = {
            "alice": create_key(url, "alice"),
            "bob": create_key(url, "bob"),
            "root": create_key(url, "root", "admin"),
        }
        yield server, url, keys
    finally:
        server.stop()


def _client(server: LiveServer, key: str | None) -> httpx.Client:
    headers = {"x-api-key": key} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def _whoami(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/runs/wait", json={"assistant_id": "whoami", "input": {}, **body})


def test_run_carries_the_authenticated_user_and_drops_client_supplied_identity(
    keyed: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = keyed
    with _client(server, keys["alice"]) as alice:
        spoofed = {
            "langgraph_auth_user_id": "bob",
            "langgraph_auth_user": {"identity": "bob"},
            "langgraph_auth_permissions": ["admin"],
        }
        answer = _whoami(alice, config={"configurable": spoofed})
    assert answer.status_code == 200, answer.text
    seen = answer.json()["seen"]
    assert seen["user_id"] == "alice"
    assert seen["permissions"] == ["read", "write"]
    assert seen["user"]["identity"] == "alice" and seen["user"]["role"] == "member"
    assert seen["user_identity_attr"] == "alice"
    assert seen["server_info_identity"] == "alice"


def test_context_user_id_of_another_user_is_refused_unless_admin(
    keyed: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = keyed
    with _client(server, keys["alice"]) as alice:
        other = _whoami(alice, context={"user_id": "bob"})
        assert other.status_code == 403
        assert other.json() == {
            "detail": "context.user_id must be the authenticated user's id, or left out"
        }
        conf = _whoami(alice, config={"configurable": {"user_id": "bob"}})
        assert conf.status_code == 403
        assert _whoami(alice, context={"user_id": "alice"}).status_code == 200
    with _client(server, keys["root"]) as root:
        assert _whoami(root, context={"user_id": "bob"}).status_code == 200


def test_missing_malformed_unknown_and_revoked_keys_get_401_and_change_nothing(
    keyed: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, url, keys = keyed
    made = cli(url, "keys", "create", "--user", "dave", "--role", "member", "--name", "laptop")
    assert made.returncode == 0, made.stderr
    doomed = made.stdout.splitlines()[0]
    key_id = doomed.split("_")[1]
    with _client(server, doomed) as dave:
        assert dave.post("/threads/count", json={}).status_code == 200  # now cached
        revoked = cli(url, "keys", "revoke", key_id)
        assert revoked.returncode == 0 and f"revoked key {key_id}" in revoked.stdout
        # The server hears the revocation over NOTIFY; the client can only see it by asking.
        deadline = time.monotonic() + 10
        while dave.post("/threads/count", json={}).status_code == 200:
            assert time.monotonic() < deadline, "a revoked key still works after 10 s"
            time.sleep(0.05)
    assert cli(url, "keys", "revoke", key_id).returncode == 1  # not live any more
    listing = cli(url, "keys", "list").stdout
    assert f"{key_id}  dave  member" in listing and "revoked  laptop" in listing
    assert doomed not in listing  # the key itself is never shown again
    with _client(server, keys["root"]) as root:
        before = root.post("/threads/count", json={}).json()
    cases: list[dict[str, str]] = [
        {},
        {"x-api-key": "not-a-key"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"x-api-key": "sg_000000000000_" + "A" * 43},
        {"x-api-key": keys["alice"][:-1] + ("B" if keys["alice"][-1] != "B" else "C")},
        {"x-api-key": doomed},
        {"Authorization": f"Bearer {doomed}"},
        {"x-api-key": "x" * 10_000},
    ]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for headers in cases:
            answer = client.post("/threads", headers=headers, json={"metadata": {"a": 1}})
            assert answer.status_code == 401, (headers, answer.text)
            assert set(answer.json()) == {"detail"}
            assert answer.headers["www-authenticate"] == "Bearer"
        bearer = client.post("/threads/count", headers={"Authorization": f"Bearer {keys['bob']}"})
        assert bearer.status_code == 200
    with _client(server, keys["root"]) as root:
        assert root.post("/threads/count", json={}).json() == before


def test_memory_is_scoped_to_the_authenticated_user(
    keyed: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = keyed
    message = {"messages": [{"role": "user", "content": "Remember that my PIN is 4242."}]}
    with _client(server, keys["alice"]) as alice:
        told = alice.post("/runs/wait", json={"assistant_id": "chat", "input": message})
        assert told.status_code == 200, told.text
        mine = alice.post("/store/items/search", json={"namespace_prefix": ["memories"]})
        assert "4242" in mine.text  # stored under alice's own namespace
        assert all(item["namespace"][1] == "user:alice" for item in mine.json()["items"])
    ask = {"messages": [{"role": "user", "content": "What is my PIN?"}]}
    with _client(server, keys["bob"]) as bob:
        spoof = {"configurable": {"langgraph_auth_user_id": "alice"}}
        asked = bob.post("/runs/wait", json={"assistant_id": "chat", "input": ask, "config": spoof})
        assert asked.status_code == 200, asked.text
        assert "4242" not in asked.text
        as_alice = bob.post(
            "/runs/wait",
            json={"assistant_id": "chat", "input": ask, "context": {"user_id": "alice"}},
        )
        assert as_alice.status_code == 403
        theirs = bob.post("/store/items/search", json={"namespace_prefix": ["memories"]})
        assert "4242" not in theirs.text
        assert bob.delete("/memories/users/alice").status_code == 403
        assert bob.delete("/memories/users/bob").status_code == 200
    with _client(server, keys["alice"]) as alice:
        assert "4242" in alice.post("/store/items/search", json={"namespace_prefix": []}).text


def test_usage_shows_own_totals_unless_admin(
    keyed: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = keyed
    hello = {"messages": [{"role": "user", "content": "Hello"}]}
    for user in ("alice", "bob"):
        with _client(server, keys[user]) as client:
            thread = client.post("/threads", json={}).json()["thread_id"]
            ran = client.post(
                f"/threads/{thread}/runs/wait", json={"assistant_id": "chat", "input": hello}
            )
            assert ran.status_code == 200, ran.text
    with _client(server, keys["bob"]) as bob:
        own = bob.get("/usage", params={"group_by": "user"})
        assert own.status_code == 200
        assert [group["key"] for group in own.json()["groups"]] == ["bob"]
        assert bob.get("/usage", params={"user_id": "alice"}).status_code == 403
    with _client(server, keys["root"]) as root:
        everyone = root.get("/usage", params={"group_by": "user"}).json()
        assert {"alice", "bob"} <= {group["key"] for group in everyone["groups"]}


async def test_sdk_remote_graph_and_studio_work_with_keys(
    keyed: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = keyed
    client = get_client(url=server.url, api_key=keys["alice"])
    thread = await client.threads.create()
    result = await client.runs.wait(thread["thread_id"], "whoami", input={})
    assert isinstance(result, dict) and result["seen"]["user_id"] == "alice"
    assert [t["thread_id"] for t in await client.threads.search()].count(thread["thread_id"]) == 1
    anonymous = get_client(url=server.url, api_key=None)
    with pytest.raises(AuthenticationError, match="Missing API key"):
        await anonymous.threads.search()

    remote = RemoteGraph(
        "whoami", url=server.url, headers={"Authorization": f"Bearer {keys['bob']}"}
    )
    out = await remote.ainvoke({})
    assert out["seen"]["user_id"] == "bob"

    with httpx.Client(base_url=server.url, timeout=30) as plain:
        preflight = plain.options(
            "/threads/search",
            headers={
                "Origin": "https://smith.langchain.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type",
            },
        )
        assert preflight.status_code == 200
        for path in ("/ok", "/info", "/metrics", "/docs", "/openapi.json"):
            assert plain.get(path).status_code == 200, path
        spec = plain.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["x-api-key"]["in"] == "header"


def test_an_unauthenticated_server_refuses_a_non_loopback_bind(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "STAFFGRAPH_AUTH": "none"}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--host", "0.0.0.0", "--config", str(CONFIG)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "STAFFGRAPH_AUTH=keys" in lines[0] and "staffgraph keys create" in lines[0]
