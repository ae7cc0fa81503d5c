"""Schema-driven fuzz of every operation in the server's own OpenAPI document.

Against a live server with built-in API keys: requests generated from each operation's path,
query and body schemas (mostly valid values, ids that exist, and bodies carrying values nothing
can store) must never get a 5xx, and every JSON answer must match the schema the document
promises for its status. Derandomised (the same examples every run) and bounded:
``STAFFGRAPH_FUZZ_EXAMPLES`` examples per operation (default 15).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.auth.matrix import create_key
from tests.support.fuzz import NASTY, Operation, operations, poisoned, response_problem
from tests.support.fuzz import schema_values as values_of
from tests.support.server import LiveServer, fresh_database, start_server

EXAMPLES = int(os.environ.get("STAFFGRAPH_FUZZ_EXAMPLES", "15"))
HI = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def fuzzed(database_url: str) -> Iterator[tuple[LiveServer, str]]:
    url = fresh_database(database_url)
    server = start_server(env={"DATABASE_URL": url, "STAFFGRAPH_AUTH": "keys"})
    try:
        yield server, create_key(url, "fuzzer")
    finally:
        server.stop()


def _known(client: httpx.Client) -> dict[str, list[Any]]:
    """Ids that exist, for the properties and parameters that name them."""
    thread = client.post("/threads", json={"metadata": {"fuzz": True}}).json()["thread_id"]
    run = client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "simple", "input": HI})
    assert run.status_code == 200, run.text
    runs = client.get(f"/threads/{thread}/runs").json()
    assistant = client.post("/assistants", json={"graph_id": "simple"}).json()["assistant_id"]
    client.put("/store/items", json={"namespace": ["fuzz"], "key": "k", "value": {"v": 1}})
    history = client.post(f"/threads/{thread}/history", json={}).json()
    return {
        "thread_id": [thread],
        "run_id": [runs[0]["run_id"]],
        "assistant_id": ["simple", "chat", assistant],
        "graph_id": ["simple", "chat"],
        "checkpoint_id": [history[-1]["checkpoint_id"]],
        "namespace": [["fuzz"], "fuzz"],
        "key": ["k"],
        "input": [HI],
        # free-form objects present, so that values nothing can store get somewhere
        "metadata": [{"tag": "fuzz"}],
        "values": [{"count": 1}],
        "context": [{"user_id": "fuzzer"}],
    }


def _request(
    draw: Any, operation: Operation, document: dict[str, Any], known: dict[str, list[Any]]
) -> tuple[str, list[tuple[str, str]], bytes | None]:
    path = operation.path
    for name, schema in operation.path_params.items():
        value = draw(
            st.one_of(st.sampled_from(known[name]), values_of(schema, document, known))
            if name in known
            else values_of(schema, document, known)
        )
        path = path.replace("{" + name + "}", quote(str(value), safe="") or "x")
    query: list[tuple[str, str]] = []
    for param in operation.query_params:
        if not (param.get("required") or draw(st.booleans())):
            continue
        value = draw(values_of(param.get("schema", {}), document, known, name=param["name"]))
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                query.append((param["name"], _query_text(item)))
    body: bytes | None = None
    if operation.body is not None:
        value = draw(values_of(operation.body, document, known))
        if draw(st.integers(0, 3)) == 0:
            nasty = draw(st.sampled_from(NASTY))
            body = poisoned(value, nasty, draw(st.integers(0, 1000))).encode()
        else:
            body = json.dumps(value).encode()
    return path, query, body


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _send(
    client: httpx.Client, operation: Operation, path: str, query: Any, body: bytes | None
) -> tuple[int, Any]:
    headers = {"content-type": "application/json"} if body is not None else {}
    with client.stream(
        operation.method, path, params=query, content=body, headers=headers
    ) as response:
        kind = response.headers.get("content-type", "")
        if not kind.startswith("application/json"):
            return response.status_code, None  # event streams stay open: the status is enough
        response.read()
        try:
            return response.status_code, response.json()
        except ValueError:  # a streamed wait (newline heartbeats then JSON)
            return response.status_code, None


def _fuzz_operation(
    client: httpx.Client,
    operation: Operation,
    document: dict[str, Any],
    known: dict[str, list[Any]],
    failures: list[str],
) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def fuzz(data: Any) -> None:
        path, query, body = _request(data.draw, operation, document, known)
        status, answer = _send(client, operation, path, query, body)
        where = f"{operation!r} {path}?{query} {body[:300] if body else ''!r} -> {status}"
        if status >= 500:
            failures.append(f"{where}: server error {answer}")
            return
        if answer is not None:
            problem = response_problem(document, operation, status, answer)
            if problem is not None:
                failures.append(f"{where}: answer does not match the schema: {problem}")

    fuzz()


def test_every_operation_survives_schema_driven_requests(
    fuzzed: tuple[LiveServer, str],
) -> None:
    server, key = fuzzed
    failures: list[str] = []
    with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30) as client:
        document = client.get("/openapi.json").json()
        known = _known(client)
        ops = operations(document)
        assert len(ops) >= 60, [repr(op) for op in ops]
        for operation in ops:
            _fuzz_operation(client, operation, document, known, failures)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])
