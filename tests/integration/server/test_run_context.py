"""The run context a graph receives, for a graph written like LangGraph's ReAct template.

Every expected value here was observed on ``langgraph dev`` (langgraph-cli 0.4.40,
langgraph-api 0.16.7, in-memory runtime 0.36.7) serving ``tests/support/langgraph_parity.json``
with the same requests: the reply ``[model|max_search_results] system_prompt text`` shows which
context the node saw.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.support.parity import ParityServer, parity_server

__all__ = ["parity_server"]

HI = {"messages": [{"role": "user", "content": "hi"}]}
DEFAULTS = "[offline/echo|10] You are a helpful AI assistant. hi"
GRAPHS = ("react", "react_factory", "react_managed")


def _reply(output: Any) -> str:
    return str(output["messages"][-1]["content"])


@pytest.mark.parametrize("graph", GRAPHS)
async def test_context_defaults_configurable_and_explicit(
    parity_server: ParityServer, graph: str
) -> None:
    client = get_client(url=parity_server.url)
    cases: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
        # No context: the dataclass's defaults; the run stores context {}.
        ({}, DEFAULTS, {}),
        # An explicit context: keys outside the schema are dropped before the graph sees
        # them, but the run stores what was sent.
        (
            {"context": {"model": "openai/gpt-x", "bogus": 1}},
            "[openai/gpt-x|10] You are a helpful AI assistant. hi",
            {"model": "openai/gpt-x", "bogus": 1},
        ),
        # configurable only: it becomes the context (and is stored as the run's context).
        (
            {"config": {"configurable": {"model": "cfg/model", "system_prompt": "Cfg.", "o": 2}}},
            "[cfg/model|10] Cfg. hi",
            {"model": "cfg/model", "system_prompt": "Cfg.", "o": 2},
        ),
    ]
    for request, reply, stored in cases:
        thread = await client.threads.create()
        out = await client.runs.wait(thread["thread_id"], graph, input=HI, **request)
        assert _reply(out) == reply
        (run,) = await client.runs.list(thread["thread_id"])
        assert run["status"] == "success"
        assert run["kwargs"]["context"] == stored


async def test_explicit_context_is_mirrored_into_configurable(
    parity_server: ParityServer,
) -> None:
    # Observed: the stored config.configurable holds the context's keys (graphs written before
    # context existed read them there).
    client = get_client(url=parity_server.url)
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], "react", input=HI, context={"model": "m"})
    await client.runs.join(thread["thread_id"], run["run_id"])
    stored = await client.runs.get(thread["thread_id"], run["run_id"])
    assert stored["kwargs"]["config"]["configurable"]["model"] == "m"


async def test_assistant_context_and_configurable(parity_server: ParityServer) -> None:
    client = get_client(url=parity_server.url)
    with_context = await client.assistants.create("react", context={"model": "asst/model"})
    with_config = await client.assistants.create(
        "react", config={"configurable": {"model": "asstcfg/model"}}
    )
    observed = [
        # (assistant, run context, reply) as langgraph dev answered
        (with_context, None, "[asst/model|10] You are a helpful AI assistant. hi"),
        (with_config, None, "[asstcfg/model|10] You are a helpful AI assistant. hi"),
        (
            with_context,
            {"max_search_results": 3},
            "[asst/model|3] You are a helpful AI assistant. hi",
        ),
    ]
    for assistant, context, reply in observed:
        thread = await client.threads.create()
        out = await client.runs.wait(
            thread["thread_id"], assistant["assistant_id"], input=HI, context=context
        )
        assert _reply(out) == reply


async def test_context_and_configurable_together_is_400(parity_server: ParityServer) -> None:
    thread = await get_client(url=parity_server.url).threads.create()
    async with httpx.AsyncClient(base_url=parity_server.url) as http:
        answer = await http.post(
            f"/threads/{thread['thread_id']}/runs/wait",
            json={
                "assistant_id": "react",
                "input": HI,
                "context": {"max_search_results": 3},
                "config": {"configurable": {"model": "x"}},
            },
        )
        runs = await http.get(f"/threads/{thread['thread_id']}/runs")
    assert answer.status_code == 400
    assert answer.json() == {
        "detail": "Cannot specify both configurable and context. Prefer setting context alone. "
        "Context was introduced in LangGraph 0.6.0 and is the long term planned replacement "
        "for configurable."
    }
    assert runs.json() == []
