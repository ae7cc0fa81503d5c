"""Owner isolation on every route, generated from the app's route table.

For each operation the app serves, user B and an anonymous caller aim at user A's thread,
run, assistant, checkpoint, store item and memories: anonymous gets 401, B gets 401/403/404/409
or an answer without any of A's data, and afterwards A's resources are untouched. The same
matrix runs with built-in API keys and with the owner-only ``auth.py`` of LangGraph's docs
(custom auth through ``--config``); a deny-all ``Auth`` makes every protected route 401/403.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import APIRouter

from server.auth import protect, public
from tests.support.auth.matrix import (
    DENIED,
    HERE,
    MARK,
    Owned,
    build_app,
    call,
    create_key,
    is_public,
    leaks,
    operations,
    owner_still_intact,
    routes_without_decision,
    seed,
)
from tests.support.server import LiveServer, fresh_database, start_server, wait_for_ready

KEYS_CONFIG = HERE / "langgraph.json"
OWNER_CONFIG = HERE / "langgraph_owner.json"
DENY_CONFIG = HERE / "langgraph_deny.json"


def test_every_route_declares_exactly_one_auth_decision() -> None:
    app = build_app(KEYS_CONFIG)
    assert routes_without_decision(app) == []
    assert len(operations(app)) > 40


def test_a_route_without_a_decision_is_reported() -> None:
    app = build_app(KEYS_CONFIG)
    extra = APIRouter()

    @extra.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    @extra.get("/twice", dependencies=[public(), protect("threads", "read")])
    async def twice() -> dict[str, str]:
        return {}

    app.include_router(extra)
    assert routes_without_decision(app) == [
        "['GET'] /forgotten: 0 auth decisions",
        "['GET'] /twice: 2 auth decisions",
    ]


def _run_matrix(server: LiveServer, owned: Owned, other: dict[str, str]) -> int:
    app = build_app(KEYS_CONFIG)
    problems: list[str] = []
    checked = 0
    with httpx.Client(base_url=server.url) as client:
        for method, path, route in operations(app):
            if is_public(route):
                continue
            checked += 1
            anonymous = call(client, method, path, owned, {})
            if anonymous.status_code != 401 or "detail" not in anonymous.json():
                problems.append(f"anonymous {method} {path}: {anonymous.status_code}")
            if found := leaks(anonymous, owned):
                problems.append(f"anonymous {method} {path} leaked {found}")
            answer = call(client, method, path, owned, other)
            if answer.status_code >= 300 and answer.status_code not in DENIED:
                problems.append(f"B {method} {path}: {answer.status_code} {answer.text[:200]}")
            if found := leaks(answer, owned):
                problems.append(f"B {method} {path} ({answer.status_code}) leaked {found}")
    assert problems == []
    return checked


@pytest.fixture(scope="module")
def keys_server(database_url: str) -> Iterator[tuple[LiveServer, str]]:
    url = fresh_database(database_url)
    server = start_server(env={"DATABASE_URL": url, "STAFFGRAPH_AUTH": "keys"}, config=KEYS_CONFIG)
    try:
        yield server, url
    finally:
        server.stop()


def test_keys_matrix_other_user_and_anonymous_get_nothing(
    keys_server: tuple[LiveServer, str],
) -> None:
    server, url = keys_server
    key_a, key_b = create_key(url, "alice"), create_key(url, "bob")
    with httpx.Client(base_url=server.url, headers={"x-api-key": key_a}, timeout=60) as alice:
        owned = seed(alice, "alice")
        checked = _run_matrix(server, owned, {"x-api-key": key_b})
        assert checked > 40
        owner_still_intact(alice, owned)


def test_keys_admin_sees_everyone_and_a_viewer_only_reads(
    keys_server: tuple[LiveServer, str],
) -> None:
    server, url = keys_server
    key_c, admin, viewer = (
        create_key(url, "carol"),
        create_key(url, "root", "admin"),
        create_key(url, "vera", "viewer"),
    )
    with httpx.Client(base_url=server.url, timeout=60) as client:
        made = client.post("/threads", headers={"x-api-key": key_c}, json={})
        thread_id = made.json()["thread_id"]
        assert made.json()["metadata"]["owner"] == "carol"
        seen = client.get(f"/threads/{thread_id}", headers={"x-api-key": admin})
        assert seen.status_code == 200
        denied = client.post("/threads", headers={"x-api-key": viewer}, json={})
        assert denied.status_code == 403
        assert denied.json() == {"detail": "This key may only read (role viewer)"}
        # the audit log is for admins only, and records the refusal just made
        assert client.get("/audit", headers={"x-api-key": key_c}).status_code == 403
        audit = client.get("/audit", headers={"x-api-key": admin}, params={"actor": "vera"})
        assert audit.status_code == 200
        assert [e["action"] for e in audit.json()["entries"]] == ["auth.denied"]
        # the per-graph system assistants are everyone's
        system = client.get("/assistants/whoami", headers={"x-api-key": viewer})
        assert system.status_code == 200
        found = client.post("/assistants/search", headers={"x-api-key": viewer}, json={})
        assert {a["graph_id"] for a in found.json()} >= {"whoami", "simple", "chat"}


def test_the_console_inbox_and_reads_show_a_user_only_their_own(
    keys_server: tuple[LiveServer, str],
) -> None:
    server, url = keys_server
    key_a, key_b, admin = (
        create_key(url, "ann"),
        create_key(url, "ben"),
        create_key(url, "boss", "admin"),
    )
    with httpx.Client(base_url=server.url, timeout=60) as client:
        thread_id = client.post("/threads", headers={"x-api-key": key_a}, json={}).json()[
            "thread_id"
        ]
        paused = client.post(
            f"/threads/{thread_id}/runs/wait",
            headers={"x-api-key": key_a},
            json={"assistant_id": "hitl", "input": {"proposal": MARK}},
        )
        assert paused.status_code == 200, paused.text

        def inbox(headers: dict[str, str]) -> httpx.Response:
            return client.get("/ui/api/inbox", headers=headers)

        (mine,) = inbox({"x-api-key": key_a}).json()["items"]
        assert mine["thread_id"] == thread_id and mine["started_by"] == "ann"
        assert mine["value"]["proposal"] == MARK and mine["actions"] is None
        theirs = inbox({"x-api-key": key_b})
        assert theirs.status_code == 200 and theirs.json() == {"items": []}
        assert MARK not in theirs.text
        assert inbox({}).status_code == 401
        assert thread_id in {i["thread_id"] for i in inbox({"x-api-key": admin}).json()["items"]}
        me = client.get("/ui/api/me", headers={"x-api-key": key_b}).json()
        assert me["identity"] == "ben" and me["auth"] is True
        assert client.get("/ui/api/roles", headers={}).status_code == 401
        assert client.get("/ui/api/session").json() == {"auth": True}


def test_owner_only_docs_example_passes_the_same_matrix(database_url: str) -> None:
    server = start_server(env={"DATABASE_URL": fresh_database(database_url)}, config=OWNER_CONFIG)
    try:
        alice_headers = {"Authorization": "Bearer token-alice"}
        with httpx.Client(base_url=server.url, headers=alice_headers, timeout=60) as alice:
            owned = seed(alice, "alice")
            thread = alice.get(f"/threads/{owned.thread}").json()
            assert thread["metadata"]["owner"] == "alice"
            checked = _run_matrix(server, owned, {"Authorization": "Bearer token-bob"})
            assert checked > 40
            owner_still_intact(alice, owned)
            bad = alice.get("/threads/" + owned.thread, headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401 and bad.json() == {"detail": "Invalid token"}
        # LangGraph Studio on a loopback server comes in as the Studio user, as with
        # `langgraph dev`; the owner filter still applies to it.
        with httpx.Client(base_url=server.url, timeout=60) as studio:
            seen = studio.post("/threads/search", json={}, headers={"x-auth-scheme": "langsmith"})
            assert seen.status_code == 200 and seen.json() == []
    finally:
        server.stop()


def test_deny_all_auth_makes_every_protected_route_401_or_403(database_url: str) -> None:
    server = start_server(env={"DATABASE_URL": fresh_database(database_url)}, config=DENY_CONFIG)
    nobody = Owned(
        user="someone",
        thread=str(uuid.uuid4()),
        run=str(uuid.uuid4()),
        assistant=str(uuid.uuid4()),
        checkpoint=str(uuid.uuid4()),
        namespace=["someone", "notes"],
    )
    app = build_app(DENY_CONFIG)
    problems = []
    try:
        wait_for_ready(server.url)  # /ready is one of the public routes that must answer 200
        with httpx.Client(base_url=server.url) as client:
            for method, path, route in operations(app):
                if is_public(route):
                    assert call(client, method, path, nobody, {}).status_code == 200, path
                    continue
                for headers, allowed in (({}, {401}), ({"Authorization": "Bearer u"}, {403})):
                    answer = call(client, method, path, nobody, headers)
                    if answer.status_code not in allowed:
                        problems.append(f"{headers} {method} {path}: {answer.status_code}")
    finally:
        server.stop()
    assert problems == []
