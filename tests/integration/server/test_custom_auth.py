"""Custom auth from langgraph.json ``auth.path``: what ``langgraph dev`` honours, honoured here.

Observed on ``langgraph dev`` (langgraph-api 0.16.7) with an auth file: ``authenticate`` gets
``request``, ``path``, ``method``, ``path_params``, ``query_params``, ``headers`` (bytes keys)
and ``authorization`` by name; a string, a dict or an object with ``identity`` is the user; an
``Auth.exceptions.HTTPException`` becomes its status with ``{"detail": ...}``; the most specific
``@auth.on`` handler decides, ``False`` is ``403 {"detail": "Forbidden"}``, a filter hides
resources as if missing, metadata a create handler adds is stored, and the run's configurable
holds the user.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.auth.matrix import HERE
from tests.support.server import LiveServer, fresh_database, start_server


@pytest.fixture(scope="module")
def probe(database_url: str) -> Iterator[LiveServer]:
    server = start_server(
        env={"DATABASE_URL": fresh_database(database_url)},
        config=HERE / "langgraph_probe.json",
    )
    try:
        yield server
    finally:
        server.stop()


def _as(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def test_authenticate_gets_the_reference_parameters_and_its_user_reaches_the_run(
    probe: LiveServer,
) -> None:
    with _as(probe, "alice") as alice:
        thread = alice.post("/threads", json={}).json()["thread_id"]
        answer = alice.post(
            f"/threads/{thread}/runs/wait?stream=1", json={"assistant_id": "whoami", "input": {}}
        )
    assert answer.status_code == 200, answer.text
    seen = answer.json()["seen"]
    assert seen["user_id"] == "alice" and seen["permissions"] == ["team:red"]
    assert seen["server_info_identity"] == "alice"
    user = seen["user"]
    assert user["display_name"] == "ALICE" and user["is_authenticated"] is True
    assert user["seen"] == {
        "path": f"/threads/{thread}/runs/wait",
        "method": "POST",
        "path_params": {"thread_id": thread},
        "query_params": {"stream": "1"},
        "header_keys_bytes": True,
        "request_path": f"/threads/{thread}/runs/wait",
    }


def test_string_and_object_users(probe: LiveServer) -> None:
    with _as(probe, "str-sam") as sam:
        seen = sam.post("/runs/wait", json={"assistant_id": "whoami", "input": {}}).json()
    assert seen["seen"]["user_id"] == "sam" and seen["seen"]["permissions"] == []
    with _as(probe, "obj-olga") as olga:
        seen = olga.post("/runs/wait", json={"assistant_id": "whoami", "input": {}}).json()
    assert seen["seen"]["user_id"] == "olga" and seen["seen"]["permissions"] == ["team:blue"]
    assert seen["seen"]["user"]["display_name"] == "Olga"


def test_authenticate_errors(probe: LiveServer) -> None:
    with httpx.Client(base_url=probe.url, timeout=30) as client:
        missing = client.post("/threads/search", json={})
        assert missing.status_code == 401 and missing.json() == {"detail": "Who are you?"}
        # disable_studio_auth: Studio's header gets no free pass
        studio = client.post("/threads/search", json={}, headers={"x-auth-scheme": "langsmith"})
        assert studio.status_code == 401
    with _as(probe, "teapot") as teapot:
        answer = teapot.post("/threads/search", json={})
        assert answer.status_code == 418 and answer.json() == {"detail": "I'm a teapot"}
        assert answer.headers["x-why"] == "tea"
    with _as(probe, "boom") as boom:
        answer = boom.post("/threads/search", json={})
        assert answer.status_code == 401 and answer.json() == {"detail": "Authentication failed"}
        assert "hunter2" not in answer.text


def test_handlers_stamp_filter_and_refuse(probe: LiveServer) -> None:
    with _as(probe, "alice") as alice, _as(probe, "bob") as bob, _as(probe, "obj-olga") as olga:
        made = alice.post("/threads", json={"metadata": {"topic": "q3"}}).json()
        thread = made["thread_id"]
        assert made["metadata"] == {"topic": "q3", "team": "red", "members": ["alice"]}
        # bob is on alice's team ($eq filter): reads and finds it
        assert bob.get(f"/threads/{thread}").status_code == 200
        found = bob.post("/threads/search", json={"metadata": {"topic": "q3"}}).json()
        assert [t["thread_id"] for t in found] == [thread]
        # ...but may only delete threads he is a member of ($contains filter)
        assert bob.delete(f"/threads/{thread}").status_code == 404
        # olga's team is blue: alice's thread does not exist for her
        assert olga.get(f"/threads/{thread}").status_code == 404
        assert olga.post("/threads/count", json={}).json() == 0
        assert (
            olga.post(f"/threads/{thread}/runs", json={"assistant_id": "whoami"}).status_code == 404
        )
        # a handler returning False, and an assertion in a handler, are 403s
        with _as(probe, "readonly") as readonly:
            refused = readonly.post("/threads", json={})
            assert refused.status_code == 403 and refused.json() == {"detail": "Forbidden"}
        with _as(probe, "asserted") as asserted:
            refused = asserted.post("/threads/search", json={})
            assert refused.status_code == 403
            assert refused.json() == {"detail": "assertions are refusals"}
        # resources with no handler of their own fall to the global one: refused
        usage = alice.get("/usage")
        assert usage.status_code == 403 and usage.json() == {"detail": "Forbidden"}
        assert alice.delete(f"/threads/{thread}").status_code == 204


def test_store_handler_rewrites_the_namespace(probe: LiveServer) -> None:
    with _as(probe, "alice") as alice, _as(probe, "bob") as bob:
        put = alice.put(
            "/store/items", json={"namespace": ["notes"], "key": "k", "value": {"v": 1}}
        )
        assert put.status_code == 204
        assert alice.get("/store/items", params={"namespace": "notes", "key": "k"}).json()[
            "namespace"
        ] == ["alice", "notes"]
        assert bob.get("/store/items", params={"namespace": "notes", "key": "k"}).json() is None


def test_openapi_security_from_langgraph_json(probe: LiveServer) -> None:
    with httpx.Client(base_url=probe.url, timeout=30) as client:
        spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {
        "BearerAuth": {"type": "http", "scheme": "bearer"}
    }
    assert spec["security"] == [{"BearerAuth": []}]
