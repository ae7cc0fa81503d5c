"""Bad input is a 4xx naming the field, never a 500: values nothing can store, names that do
not exist, and bodies that would parse to more than the budget allows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import LiveServer

BIG = "123456789012345678901234567890"
HI = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        yield client


async def _raw(client: httpx.AsyncClient, method: str, path: str, body: str) -> httpx.Response:
    return await client.request(
        method, path, content=body.encode(), headers={"content-type": "application/json"}
    )


def _names(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"].startswith(f"{field}: "), body


async def _thread(client: httpx.AsyncClient) -> str:
    response = await client.post("/threads", json={})
    assert response.status_code == 200
    return str(response.json()["thread_id"])


# --- the four causes of 500s ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/threads", "/threads/search", "/assistants/search"])
async def test_integers_beyond_64_bits_are_422_naming_the_field(
    http: httpx.AsyncClient, path: str
) -> None:
    response = await _raw(http, "POST", path, f'{{"metadata": {{"n": {BIG}}}}}')
    _names(response, 422, "body.metadata.n")
    assert response.json()["errors"][0]["type"] == "int_range"


async def test_an_integer_at_the_64_bit_edge_is_kept_exactly(http: httpx.AsyncClient) -> None:
    response = await _raw(http, "POST", "/threads", '{"metadata": {"n": 18446744073709551615}}')
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["n"] == 2**64 - 1


async def test_lone_surrogates_are_422_naming_the_field(http: httpx.AsyncClient) -> None:
    response = await _raw(
        http, "PUT", "/store/items", '{"namespace": ["s"], "key": "k", "value": {"t": "\\ud800"}}'
    )
    _names(response, 422, "body.value.t")
    assert response.json()["errors"][0]["type"] == "string_unicode"
    # in a key, too: the error body itself stays valid UTF-8
    response = await _raw(http, "POST", "/threads", '{"metadata": {"\\udfff": 1}}')
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "metadata", "\\udfff"]


async def test_nul_in_text_is_422_naming_the_field(http: httpx.AsyncClient) -> None:
    thread_id = await _thread(http)
    for method, path, body, field in [
        ("POST", "/threads", '{"metadata": {"s": "a\\u0000b"}}', "body.metadata.s"),
        ("PUT", "/store/items", '{"namespace": ["n"], "key": "k\\u0000", "value": {}}', "body.key"),
        (
            "POST",
            f"/threads/{thread_id}/runs/wait",
            '{"assistant_id": "simple", "input": {"messages": [{"role": "user", '
            '"content": "hi\\u0000"}]}}',
            "body.input.messages.0.content",
        ),
    ]:
        _names(await _raw(http, method, path, body), 422, field)


async def test_nul_in_query_parameters_is_422_naming_the_parameter(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/store/items", params={"namespace": "a\x00b", "key": "k"})
    _names(response, 422, "query.namespace")
    response = await http.get("/threads/search", params={"x": "1", "status": "idle\x00"})
    _names(response, 422, "query.status")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_numbers_in_history_filters_are_422(
    http: httpx.AsyncClient, number: str
) -> None:
    thread_id = await _thread(http)
    response = await _raw(
        http, "POST", f"/threads/{thread_id}/history", f'{{"metadata": {{"x": {number}}}}}'
    )
    _names(response, 422, "body.metadata.x")
    assert response.json()["errors"][0]["type"] == "float_finite"


async def test_refused_values_change_nothing(http: httpx.AsyncClient) -> None:
    before = (await http.post("/threads/count", json={})).json()
    await _raw(http, "POST", "/threads", f'{{"metadata": {{"n": {BIG}}}}}')
    await _raw(http, "POST", "/threads", '{"metadata": {"s": "\\u0000"}}')
    assert (await http.post("/threads/count", json={})).json() == before


# --- names that must exist ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["interrupt_before", "interrupt_after"])
async def test_unknown_interrupt_nodes_are_422(http: httpx.AsyncClient, field: str) -> None:
    thread_id = await _thread(http)
    response = await http.post(
        f"/threads/{thread_id}/runs",
        json={"assistant_id": "simple", "input": HI, field: ["a", "nope"]},
    )
    _names(response, 422, f"body.{field}")
    assert "'nope'" in response.json()["detail"]
    assert "'a'" not in response.json()["detail"]
    runs = await http.get(f"/threads/{thread_id}/runs")
    assert runs.json() == []


async def test_known_interrupt_nodes_still_pause_the_run(http: httpx.AsyncClient) -> None:
    thread_id = await _thread(http)
    response = await http.post(
        f"/threads/{thread_id}/runs/wait",
        json={"assistant_id": "simple", "input": HI, "interrupt_before": ["b"]},
    )
    assert response.status_code == 200, response.text
    state = (await http.get(f"/threads/{thread_id}/state")).json()
    assert state["next"] == ["b"]


async def test_unknown_checkpoint_id_is_404(http: httpx.AsyncClient) -> None:
    thread_id = await _thread(http)
    done = await http.post(
        f"/threads/{thread_id}/runs/wait",
        json={"assistant_id": "simple", "input": HI},
    )
    assert done.status_code == 200
    bogus = "1f000000-0000-6000-8000-000000000000"
    for body in [{"checkpoint_id": bogus}, {"checkpoint": {"checkpoint_id": bogus}}]:
        response = await http.post(
            f"/threads/{thread_id}/runs", json={"assistant_id": "simple", "input": None, **body}
        )
        assert response.status_code == 404, response.text
        assert bogus in response.json()["detail"]
    history = (await http.post(f"/threads/{thread_id}/history", json={})).json()
    real = history[-1]["checkpoint_id"]
    response = await http.post(
        f"/threads/{thread_id}/runs/wait",
        json={"assistant_id": "simple", "input": None, "checkpoint_id": real},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("command", [{}, {"resume": None}, {"goto": None, "update": None}])
async def test_empty_commands_are_422(http: httpx.AsyncClient, command: dict[str, object]) -> None:
    thread_id = await _thread(http)
    response = await http.post(
        f"/threads/{thread_id}/runs", json={"assistant_id": "simple", "command": command}
    )
    _names(response, 422, "body.command")


async def test_commands_going_to_unknown_nodes_are_422(http: httpx.AsyncClient) -> None:
    thread_id = await _thread(http)
    for goto in ["nowhere", ["a", "nowhere"], {"node": "nowhere", "input": {}}]:
        response = await http.post(
            f"/threads/{thread_id}/runs",
            json={"assistant_id": "simple", "command": {"goto": goto}},
        )
        _names(response, 422, "body.command.goto")


# --- the parsed-size budget -----------------------------------------------------------------


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_body_of_millions_of_empty_objects_is_413_without_growing_the_server(
    http: httpx.AsyncClient, live_server: LiveServer
) -> None:
    body = "[" + ",".join(["{}"] * (3 * 1024 * 1024)) + "]"  # 9 MiB, under the byte limit
    assert len(body) < 10 * 1024 * 1024
    before = _rss_bytes(live_server.process.pid)
    response = await _raw(http, "POST", "/threads/search", '{"metadata": {"x": ' + body + "}}")
    assert response.status_code == 413, response.text
    assert "STAFFGRAPH_MAX_BODY_VALUES" in response.json()["detail"]
    # Parsed, this body was over 500 MiB; refused from its bytes, it costs about its size.
    assert _rss_bytes(live_server.process.pid) - before < 64 * 1024 * 1024


async def test_commas_inside_strings_do_not_count_as_values(http: httpx.AsyncClient) -> None:
    text = "a," * 200_000  # a large text full of commas is one value
    response = await http.put(
        "/store/items", json={"namespace": ["budget"], "key": "k", "value": {"text": text}}
    )
    assert response.status_code == 204, response.text


async def test_deep_nesting_is_413(http: httpx.AsyncClient) -> None:
    deep = "[" * 200 + "]" * 200
    response = await _raw(http, "POST", "/threads", '{"metadata": {"x": ' + deep + "}}")
    assert response.status_code == 413, response.text
    assert "STAFFGRAPH_MAX_BODY_DEPTH" in response.json()["detail"]
    # brackets inside a string nest nothing
    response = await http.put(
        "/store/items", json={"namespace": ["budget"], "key": "b", "value": {"t": "[{" * 300}}
    )
    assert response.status_code == 204, response.text
