"""The audit log through the API: what is recorded (with its actor), who may read it, filters,
cursor pages, the NDJSON export, and a chain that ``staffgraph audit verify`` finds intact.

One keyed server on its own database for the module; keys are made and revoked with the CLI,
as an operator does (those entries have no actor).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.support.auth.matrix import HERE, cli, create_key
from tests.support.server import LiveServer, fresh_database, start_server

CONFIG = HERE / "langgraph.json"


@pytest.fixture(scope="module")
def audited(database_url: str) -> Iterator[tuple[LiveServer, str, dict[str, str]]]:
    url = fresh_database(database_url)
    server = start_server(env={"DATABASE_URL": url, "STAFFGRAPH_AUTH": "keys"}, config=CONFIG)
    try:
        keys = {
            "alice": create_key(url, "alice"),
            "vera": create_key(url, "vera", "viewer"),
            "root": create_key(url, "root", "admin"),
        }
        yield server, url, keys
    finally:
        server.stop()


def _client(server: LiveServer, key: str | None) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": key} if key else {}, timeout=60)


def _entries(root: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = root.get("/audit", params={"limit": 1000, **params})
    assert answer.status_code == 200, answer.text
    assert answer.json()["next_cursor"] is None
    return answer.json()["entries"]


def test_only_admins_read_the_audit_log(
    audited: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = audited
    with _client(server, None) as anonymous:
        assert anonymous.get("/audit").status_code == 401
    for user in ("alice", "vera"):
        with _client(server, keys[user]) as client:
            refused = client.get("/audit")
            assert refused.status_code == 403
            assert refused.json() == {"detail": "Only admins may read the audit log"}
            assert client.get("/audit", params={"format": "ndjson"}).status_code == 403
    with _client(server, keys["root"]) as root:
        assert root.get("/audit").status_code == 200


async def test_deletions_are_recorded_with_their_actor(
    audited: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = audited
    sdk = get_client(url=server.url, api_key=keys["alice"])
    thread = await sdk.threads.create()
    await sdk.threads.delete(thread["thread_id"])
    assistant = await sdk.assistants.create("whoami")
    on_assistant = await sdk.threads.create(metadata={"assistant_id": assistant["assistant_id"]})
    await sdk.assistants.delete(assistant["assistant_id"], delete_threads=True)
    await sdk.store.put_item(["alice", "notes"], "k", {"note": "x"})
    await sdk.store.delete_item(["alice", "notes"], "k")
    await sdk.store.delete_item(["alice", "notes"], "never-there")  # nothing deleted: no entry
    await sdk.store.put_item(["memories", "user:alice", "facts"], "f1", {"text": "likes tea"})
    await sdk.store.put_item(["memories", "user:alice", "facts"], "f2", {"text": "likes jam"})
    with _client(server, keys["alice"]) as alice:
        forgot = alice.delete("/memories/users/alice")
        assert forgot.json() == {"deleted": 2}
        assert (
            alice.get(
                "/store/items", params={"namespace": "memories.user:alice.facts", "key": "f1"}
            ).json()
            is None
        )

    with _client(server, keys["root"]) as root:
        mine = _entries(root, actor="alice")
        got = [
            (e["action"], e["resource_type"], e["resource_id"])
            for e in mine
            if e["action"] != "auth.denied"
        ]
        assert got == [
            ("thread.deleted", "thread", thread["thread_id"]),
            ("assistant.deleted", "assistant", assistant["assistant_id"]),
            ("thread.deleted", "thread", on_assistant["thread_id"]),
            ("memory.deleted", "store_item", "alice.notes/k"),
            ("memory.deleted", "user_memories", "alice"),
        ]
        by_id = {e["resource_id"]: e for e in mine}
        assert by_id[assistant["assistant_id"]]["details"] == {
            "graph_id": "whoami",
            "deleted_threads": 1,
        }
        assert by_id[on_assistant["thread_id"]]["details"] == {
            "reason": "assistant deleted",
            "assistant_id": assistant["assistant_id"],
        }
        assert by_id["alice.notes/k"]["details"] == {"namespace": ["alice", "notes"], "key": "k"}
        assert by_id["alice"]["details"]["deleted"] == 2
        # filters: resource, action (repeatable)
        assert [e["action"] for e in _entries(root, resource_id=thread["thread_id"])] == [
            "thread.deleted"
        ]
        both = _entries(root, action=["assistant.deleted", "memory.deleted"], actor="alice")
        assert [e["action"] for e in both] == ["assistant.deleted", *["memory.deleted"] * 2]


def test_keys_created_and_revoked_with_the_cli_are_recorded_without_the_key(
    audited: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, url, keys = audited
    made = cli(url, "keys", "create", "--user", "dora", "--role", "approver", "--name", "ci")
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[0]
    key_id = key.split("_")[1]
    assert cli(url, "keys", "revoke", key_id).returncode == 0
    assert cli(url, "keys", "revoke", key_id).returncode == 1  # nothing revoked: no entry
    with _client(server, keys["root"]) as root:
        found = _entries(root, resource_type="api_key", resource_id=key_id)
        assert [(e["action"], e["actor"]) for e in found] == [
            ("key.created", None),
            ("key.revoked", None),
        ]
        assert found[0]["details"] == {"user_id": "dora", "role": "approver", "name": "ci"}
        assert found[1]["details"] == {"user_id": "dora", "role": "approver"}
        assert key not in root.get("/audit", params={"format": "ndjson"}).text


def test_refusals_are_recorded_at_most_once_per_caller_and_route_in_a_window(
    audited: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = audited
    with _client(server, keys["vera"]) as vera:
        for _ in range(5):
            assert vera.post("/threads", json={}).status_code == 403  # a viewer may only read
    with _client(server, None) as anonymous:
        for _ in range(5):
            assert anonymous.post("/threads/search", json={}).status_code == 401
    with _client(server, keys["root"]) as root:
        denied = _entries(root, action="auth.denied", resource_id="/threads")
        assert [(e["actor"], e["details"]["status"], e["details"]["method"]) for e in denied] == [
            ("vera", 403, "POST")
        ]
        anon = _entries(root, action="auth.denied", resource_id="/threads/search")
        assert [(e["actor"], e["details"]["status"]) for e in anon] == [(None, 401)]
        assert anon[0]["details"]["client"] == "127.0.0.1"


def test_cursor_pages_filters_and_ndjson_export_agree(
    audited: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = audited
    with _client(server, keys["alice"]) as alice:
        for _ in range(7):
            made = alice.post("/threads", json={}).json()["thread_id"]
            assert alice.delete(f"/threads/{made}").status_code == 204
    with _client(server, keys["root"]) as root:
        everything = _entries(root)
        seqs = [e["seq"] for e in everything]
        assert seqs == list(range(1, len(seqs) + 1))
        for order, expected in (("asc", everything), ("desc", everything[::-1])):
            paged: list[dict[str, Any]] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 3, "order": order}
                if cursor is not None:
                    params["cursor"] = cursor
                page = root.get("/audit", params=params).json()
                assert len(page["entries"]) <= 3
                paged += page["entries"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert paged == expected
        # time range: between the third and the fifth entry's times
        lo, hi = everything[2]["at"], everything[4]["at"]
        ranged = _entries(root, since=lo, until=hi)
        assert {e["seq"] for e in ranged} >= {3, 4} and all(lo <= e["at"] < hi for e in ranged)

        for kwargs in (
            {"params": {"format": "ndjson"}},
            {"headers": {"Accept": "application/x-ndjson"}},
        ):
            export = root.get("/audit", **kwargs)
            assert export.status_code == 200
            assert export.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in export.text.splitlines()]
            assert lines[: len(everything)] == everything
        tail = root.get(
            "/audit", params={"format": "ndjson", "cursor": 5, "action": "thread.deleted"}
        )
        assert all(json.loads(x)["seq"] > 5 for x in tail.text.splitlines())

        for params in (
            {"cursor": "999999999999999999", "order": "desc"},
            {"since": "0001-01-01T00:00:00-14:00", "until": "9999-12-31T23:59:59.999999+14:00"},
            {"since": "2026-01-01T00:00:00", "actor": "é" * 512, "resource_id": "\u2028"},
        ):
            edge = root.get("/audit", params=params)
            assert edge.status_code == 200, (params, edge.text)
        for params, field in (
            ({"cursor": "abc"}, "query.cursor"),
            ({"limit": 0}, "query.limit"),
            ({"action": "Not An Action"}, "query.action"),
            ({"actor": "a\x00b"}, "query.actor"),
            ({"since": "yesterday"}, "query.since"),
            ({"order": "sideways"}, "query.order"),
        ):
            bad = root.get("/audit", params=params)
            assert bad.status_code == 422, (params, bad.text)
            assert field in bad.json()["detail"]


async def test_concurrent_deletions_keep_the_chain_intact_for_audit_verify(
    audited: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, url, keys = audited
    sdk = get_client(url=server.url, api_key=keys["alice"])
    threads = [await sdk.threads.create() for _ in range(16)]
    await asyncio.gather(*(sdk.threads.delete(t["thread_id"]) for t in threads))
    verified = await asyncio.to_thread(cli, url, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with _client(server, keys["root"]) as root:
        count = len(_entries(root))
    assert verified.stdout.startswith(f"audit log intact: {count} entries; head {count}:")


def test_openapi_documents_the_audit_route(
    audited: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, _, keys = audited
    with _client(server, keys["root"]) as root:
        spec = root.get("/openapi.json").json()
    operation = spec["paths"]["/audit"]["get"]
    content = operation["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/AuditPage"}
    assert content["application/x-ndjson"]["schema"] == {
        "$ref": "#/components/schemas/AuditEntryOut"
    }
    assert {"401", "403", "422"} <= set(operation["responses"])
    entry = spec["components"]["schemas"]["AuditEntryOut"]
    assert set(entry["required"]) >= {"seq", "at", "actor", "action", "hash", "prev_hash"}
    params = {p["name"] for p in operation["parameters"]}
    assert params >= {
        "action",
        "actor",
        "resource_type",
        "resource_id",
        "since",
        "until",
        "cursor",
        "limit",
        "order",
        "format",
    }
