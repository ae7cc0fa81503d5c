"""Graph factories taking ``(config, runtime: ServerRuntime)``, plain and as async context managers.

The factories in ``tests/support/react_agent.py`` log what they are handed. Expected entries were
observed on ``langgraph dev`` (langgraph-api 0.16.7) for the same requests:

- executing a run: ``_ExecutionRuntime``, ``access_context="threads.create_run"``, ``user`` None
  (no auth), a store, ``context`` = the run's stored context as a dict, and a dict config whose
  configurable holds the run's ids and the context's keys;
- schemas, graph and subgraphs: ``_ReadRuntime`` with ``assistants.read``;
- state and history: ``_ReadRuntime`` with ``threads.read``; ``update_state``: ``threads.update``;
- a context-manager factory is entered before and exited after each of those uses.
"""

from __future__ import annotations

from typing import Any

import pytest
from langgraph_sdk import get_client

from server.graph_factory import FactoryError, classify
from server.graphs import assistant_id_for
from tests.support.parity import ParityServer, parity_server

__all__ = ["parity_server"]

HI = {"messages": [{"role": "user", "content": "hi"}]}


def _calls(entries: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["event"], e["runtime_type"], e["access_context"]) for e in entries]


async def test_run_gets_the_execution_runtime(parity_server: ParityServer) -> None:
    client = get_client(url=parity_server.url)
    for graph, events in (("react_factory", ["call"]), ("react_managed", ["enter", "exit"])):
        thread = await client.threads.create()
        mark = parity_server.log.mark()
        out = await client.runs.wait(
            thread["thread_id"], graph, input=HI, context={"model": "m1", "bogus": 1}
        )
        assert out["messages"][-1]["content"] == "[m1|10] You are a helpful AI assistant. hi"
        entries = parity_server.log.since(mark)
        assert _calls(entries) == [(e, "_ExecutionRuntime", "threads.create_run") for e in events]
        for entry in entries:
            assert entry["user"] == "None" and entry["has_store"] and entry["is_execution"]
            # The factory sees the stored context, unfiltered, as a dict.
            assert entry["context"] == {"model": "m1", "bogus": 1}
            assert entry["context_type"] == "dict" and entry["config_is_dict"]
            keys = set(entry["configurable_keys"])
            assert {"assistant_id", "graph_id", "run_id", "thread_id", "model"} <= keys


async def test_run_without_context_hands_the_factory_an_empty_dict(
    parity_server: ParityServer,
) -> None:
    client = get_client(url=parity_server.url)
    thread = await client.threads.create()
    mark = parity_server.log.mark()
    out = await client.runs.wait(thread["thread_id"], "react_factory", input=HI)
    assert out["messages"][-1]["content"] == "[offline/echo|10] You are a helpful AI assistant. hi"
    (entry,) = parity_server.log.since(mark)
    assert entry["context"] == {} and entry["context_type"] == "dict"


@pytest.mark.parametrize("graph", ["react_factory", "react_managed"])
async def test_reads_get_the_read_runtime(parity_server: ParityServer, graph: str) -> None:
    client = get_client(url=parity_server.url)
    managed = graph == "react_managed"
    assistant = assistant_id_for(graph)
    thread = await client.threads.create()
    await client.runs.wait(thread["thread_id"], graph, input=HI)

    def expect(access: str) -> list[tuple[str, str, str]]:
        events = ["enter", "exit"] if managed else ["call"]
        return [(e, "_ReadRuntime", access) for e in events]

    for read in (
        lambda: client.assistants.get_schemas(assistant),
        lambda: client.assistants.get_graph(assistant),
        lambda: client.assistants.get_subgraphs(assistant),
    ):
        mark = parity_server.log.mark()
        await read()
        assert _calls(parity_server.log.since(mark)) == expect("assistants.read")
    for read in (
        lambda: client.threads.get_state(thread["thread_id"]),
        lambda: client.threads.get_history(thread["thread_id"]),
    ):
        mark = parity_server.log.mark()
        await read()
        assert _calls(parity_server.log.since(mark)) == expect("threads.read")
    mark = parity_server.log.mark()
    await client.threads.update_state(thread["thread_id"], {"steps": 5})
    entries = parity_server.log.since(mark)
    # The reference builds a second graph (threads.read) to record the new state; we record it
    # with the graph built for the update. Both start with the update's own call.
    assert _calls(entries)[: len(expect("threads.update"))] == expect("threads.update")
    assert all(e["runtime_type"] == "_ReadRuntime" and e["context"] is None for e in entries)
    assert (await client.threads.get_state(thread["thread_id"]))["values"]["steps"] == 5


def test_two_arguments_need_one_runtime_annotation() -> None:
    # Not observed live: langgraph-api 0.16.7's factory classification refuses such a factory
    # at start-up too (its ValueError asks for ServerRuntime and/or RunnableConfig).
    def untyped(config, runtime):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(FactoryError, match="annotate exactly one of them as ServerRuntime"):
        classify(untyped)
