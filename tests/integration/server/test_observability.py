"""Observability of a live server: LangSmith traces, usage and cost, metrics, structured logs.

The traced server sends its spans to a local LangSmith collector (``LANGSMITH_ENDPOINT``) and
prices the offline model at made-up prices, so costs are non-zero and checkable. Its
langgraph.json serves the repo's own ``supervisor`` graph next to the small test graphs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from prometheus_client.parser import text_string_to_metric_families

from bench.langsmith_collector import LangSmithCollector, TraceNode
from state.usage import ROLE_METADATA_KEY
from tests.support.server import REPO, LiveServer, fresh_database, start_server

SUPPORT_GRAPHS = REPO / "tests" / "support" / "graphs.py"
FORECAST = "What is 1200 * 1.15 for the budget forecast?"
# USD per 1M tokens for the offline model: 0 by default, priced here so costs are checkable.
INPUT_PRICE, OUTPUT_PRICE = 2.0, 8.0
# Generous bounds: a run or a shutdown that waited on a dead or hanging LangSmith without
# limit would never finish; a bounded one finishes well within these on a loaded machine.
RUN_BOUND = 20.0
TRACE_WAIT = 30.0

LEAKY_GRAPH = '''
import logging
import os
from typing import Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

log = logging.getLogger("tests.leaky")


class State(TypedDict, total=False):
    note: str


async def leak(state: State) -> dict[str, Any]:
    """Log and fail with everything a careless node could: URLs, keys, headers."""
    url, key = os.environ["DATABASE_URL"], os.environ["OPENAI_API_KEY"]
    log.warning("connecting to %s with key %s; caller said %s", url, key, state.get("note"))
    raise RuntimeError(f"could not reach {url} using {key}")


builder = StateGraph(State)
builder.add_node("leak", leak)
builder.add_edge(START, "leak")
builder.add_edge("leak", END)
graph = builder.compile(name="leaky")
'''


def write_config(directory: Path, *, leaky: bool = False) -> Path:
    """A langgraph.json serving the repo's supervisor graph and the test graphs."""
    graphs = {
        "supervisor": f"{REPO / 'graphs' / 'supervisor.py'}:graph",
        "simple": f"{SUPPORT_GRAPHS}:simple",
        "failing": f"{SUPPORT_GRAPHS}:failing",
        "slow": f"{SUPPORT_GRAPHS}:slow",
    }
    if leaky:
        (directory / "leaky.py").write_text(LEAKY_GRAPH)
        graphs["leaky"] = "./leaky.py:graph"
    path = directory / "langgraph.json"
    path.write_text(json.dumps({"dependencies": [str(REPO)], "graphs": graphs}))
    return path


def tracing_env(collector: LangSmithCollector) -> dict[str, str]:
    return {
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": collector.url,
        "LANGSMITH_API_KEY": "test",
        "LANGSMITH_PROJECT": "staffgraph-tests",
    }


@pytest.fixture(scope="module")
def collector() -> Iterator[LangSmithCollector]:
    with LangSmithCollector() as running:
        yield running


@pytest.fixture(scope="module")
def traced(
    database_url: str, collector: LangSmithCollector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server tracing to the module's collector, with a price for the offline model."""
    directory = tmp_path_factory.mktemp("traced")
    prices = directory / "prices.yaml"
    prices.write_text(
        f"models:\n  staffgraph-offline: {{input: {INPUT_PRICE}, output: {OUTPUT_PRICE}}}\n"
    )
    server = start_server(
        env={
            "DATABASE_URL": fresh_database(database_url),
            "STAFFGRAPH_PRICE_TABLE": str(prices),
            "STAFFGRAPH_LOG_LEVEL": "info",
            **tracing_env(collector),
        },
        config=write_config(directory),
    )
    try:
        yield server
    finally:
        server.stop()


def human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def run_to_end(
    client: LangGraphClient, assistant: str, graph_input: dict[str, Any], **kwargs: Any
) -> tuple[str, str]:
    """Create a run on a new thread, wait for it; ``(thread_id, run_id)``."""
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, assistant, input=graph_input, **kwargs)
    await asyncio.wait_for(client.runs.join(thread_id, run["run_id"]), RUN_BOUND)
    return thread_id, run["run_id"]


def roots_for(collector: LangSmithCollector, run_id: str) -> list[TraceNode]:
    return [root for root in collector.tree() if root.metadata.get("run_id") == run_id]


def wait_for_trace(collector: LangSmithCollector, run_id: str) -> TraceNode:
    """The run's root span once it and every span under it have ended."""

    def complete(c: LangSmithCollector) -> bool:
        roots = roots_for(c, run_id)
        return bool(roots) and all(node.run.get("end_time") for node in roots[0].walk())

    assert collector.wait_for(complete, timeout=TRACE_WAIT), f"no complete trace of {run_id}"
    (root,) = roots_for(collector, run_id)  # exactly one root per run
    return root


# -- tracing ------------------------------------------------------------------------------


async def test_supervisor_run_is_one_trace_with_agent_and_tool_spans(
    traced: LiveServer, collector: LangSmithCollector
) -> None:
    client = get_client(url=traced.url)
    assistant = await client.assistants.create(
        "supervisor",
        name="Front desk",
        config={"configurable": {"langsmith_project": "front-desk"}},
    )
    thread_id, run_id = await run_to_end(
        client,
        assistant["assistant_id"],
        human(FORECAST),
        metadata={"user_id": "ada@example.com"},
    )

    root = wait_for_trace(collector, run_id)
    assert root.name == "Front desk"  # the assistant's name, not the graph's
    assert root.run_type == "chain"
    assert root.run["id"] == run_id  # the trace is found by the run's own id
    expected = {
        "run_id": run_id,
        "thread_id": thread_id,
        "assistant_id": assistant["assistant_id"],
        "graph_id": "supervisor",
        "user_id": "ada@example.com",
    }
    assert {key: root.metadata.get(key) for key in expected} == expected
    spans = list(root.walk())
    assert {span.run["session_name"] for span in spans} == {"front-desk"}  # per assistant
    assert all(span.metadata.get("run_id") == run_id for span in spans)  # ids on every span
    assert all(span.error is None for span in spans), root.outline()
    assert [child.name for child in root.children] == [
        "intake",
        "lead",
        "finance",
        "budget_guard",
        "lead",
    ], root.outline()

    (agent,) = [s for s in root.children[2].children if s.name == "finance"]
    assert agent.metadata[ROLE_METADATA_KEY] == "finance"
    model_calls = [s for s in agent.walk() if s.run_type == "llm"]
    tool_calls = [s for s in agent.walk() if s.run_type == "tool"]
    assert model_calls and tool_calls, agent.outline()
    assert [s.name for s in tool_calls] == ["calculator"]
    assert "1380" in json.dumps(tool_calls[0].run["outputs"])
    assert all(s.metadata[ROLE_METADATA_KEY] == "finance" for s in model_calls + tool_calls)
    # The lead's own model calls count against the lead's role.
    lead_calls = [s for s in root.children[1].walk() if s.run_type == "llm"]
    assert lead_calls and all(
        s.metadata[ROLE_METADATA_KEY] == "chief_of_staff" for s in lead_calls
    ), root.children[1].outline()
    assert collector.unhandled == []


async def test_failing_node_is_an_error_span_and_requests_pick_projects(
    traced: LiveServer, collector: LangSmithCollector
) -> None:
    client = get_client(url=traced.url)
    _, failed = await run_to_end(client, "failing", {"x": 1})
    _, chosen = await run_to_end(
        client, "simple", human("hi"), config={"configurable": {"langsmith_project": "adhoc"}}
    )

    root = wait_for_trace(collector, failed)
    assert root.name == "failing"  # the default assistant is named after its graph
    assert root.run["session_name"] == "staffgraph-tests"  # LANGSMITH_PROJECT
    assert root.error and "ValueError" in root.error
    (node,) = root.children
    assert node.name == "fail"
    assert node.error and "intentional failure for testing" in node.error

    other = wait_for_trace(collector, chosen)
    assert {span.run["session_name"] for span in other.walk()} == {"adhoc"}  # per request
    assert [child.name for child in other.children] == ["a", "b"]


@pytest.mark.parametrize("outage", ["stall", "stop"])
async def test_runs_succeed_and_shutdown_is_bounded_while_langsmith_is_out(
    outage: str, database_url: str, tmp_path: Path
) -> None:
    with LangSmithCollector() as collector:
        server = start_server(
            env={
                "DATABASE_URL": fresh_database(database_url),
                "STAFFGRAPH_TRACE_FLUSH_TIMEOUT": "1",
                **tracing_env(collector),
            },
            config=write_config(tmp_path),
        )
        try:
            client = get_client(url=server.url)
            _, healthy = await run_to_end(client, "simple", human("hi"))
            wait_for_trace(collector, healthy)  # tracing works before the outage

            # stall: LangSmith accepts connections and never answers; stop: it is gone.
            getattr(collector, outage)()
            runs, took = [], []
            for _ in range(3):
                started = time.monotonic()
                runs.append(await run_to_end(client, "supervisor", human(FORECAST)))
                took.append(time.monotonic() - started)
            # A run that waited on LangSmith would take at least its 5 s read cap.
            assert max(took) < 4.0, took
            for thread_id, run_id in runs:
                run = await client.runs.get(thread_id, run_id)
                assert run["status"] == "success"
                assert run["usage"]["by_role"]["finance"]["calls"] >= 1
        finally:
            started = time.monotonic()
            code = server.stop()  # spans of the runs above are still waiting to be sent
            stopping = time.monotonic() - started
    assert code == 0, server.log()
    # At most the flush timeout (1 s) plus one capped read (5 s) of a send already in flight;
    # without the drop at shutdown, every queued batch would get three more 5 s attempts.
    assert stopping < 10.0, f"shutdown took {stopping:.1f}s with LangSmith out"
    assert "Traceback" not in server.log()


# -- usage and cost -----------------------------------------------------------------------


async def test_usage_is_stored_with_each_run_priced_and_summed(traced: LiveServer) -> None:
    client = get_client(url=traced.url)
    assistant = await client.assistants.create("supervisor", name="Ledger")
    aid = assistant["assistant_id"]
    ada = await run_to_end(client, aid, human(FORECAST), metadata={"user_id": "ada"})
    bob = await run_to_end(
        client, aid, human(FORECAST), config={"configurable": {"user_id": "bob"}}
    )

    usages = []
    for thread_id, run_id in (ada, bob):
        run = await client.runs.get(thread_id, run_id)  # the SDK passes the extra key through
        usage = run["usage"]
        usages.append(usage)
        assert usage["estimated"] is True and usage["cost_estimated"] is True  # offline model
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
        expected_cost = (
            usage["input_tokens"] * INPUT_PRICE + usage["output_tokens"] * OUTPUT_PRICE
        ) / 1e6
        assert usage["cost_usd"] == pytest.approx(expected_cost, rel=1e-6)
        assert set(usage["by_model"]) == {"staffgraph-offline"}
        finance = usage["by_role"]["finance"]
        assert finance["calls"] >= 1 and finance["estimated"] is True
        assert "finance/model" in usage["by_node"]
        # The budget guard counts the same tokens from the messages in state.
        state = await client.threads.get_state(thread_id)
        assert state["values"]["usage"]["finance"] == finance["total_tokens"]
        listed = await client.runs.list(thread_id)
        assert listed[0]["usage"] == usage

    async with httpx.AsyncClient(base_url=traced.url) as http:
        totals = (await http.get("/usage", params={"assistant_id": aid})).json()
        by_user = (await http.get("/usage", params={"assistant_id": aid, "user_id": "ada"})).json()
        grouped = (
            await http.get("/usage", params={"assistant_id": aid, "group_by": "user"})
        ).json()
        future = (
            await http.get("/usage", params={"assistant_id": aid, "since": "2999-01-01T00:00:00Z"})
        ).json()
        bad = await http.get("/usage", params={"assistant_id": "no-such-graph"})

    assert totals["runs"] == 2
    for key in ("input_tokens", "output_tokens", "total_tokens", "calls"):
        assert totals[key] == sum(u[key] for u in usages)
    assert totals["cost_usd"] == pytest.approx(sum(u["cost_usd"] for u in usages))
    assert totals["estimated"] is True and totals["cost_estimated"] is True
    assert totals["by_role"]["finance"]["total_tokens"] == sum(
        u["by_role"]["finance"]["total_tokens"] for u in usages
    )
    assert by_user["runs"] == 1 and by_user["total_tokens"] == usages[0]["total_tokens"]
    assert {g["key"]: g["runs"] for g in grouped["groups"]} == {"ada": 1, "bob": 1}
    assert future["runs"] == 0 and future["total_tokens"] == 0 and future["by_role"] == {}
    assert bad.status_code == 422


# -- metrics ------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_runs_durations_tokens_and_subscribers(traced: LiveServer) -> None:
    client = get_client(url=traced.url)
    async with httpx.AsyncClient(base_url=traced.url, timeout=RUN_BOUND) as http:
        before = await scrape(http)
        done = [await run_to_end(client, "supervisor", human(FORECAST)) for _ in range(2)]
        await run_to_end(client, "failing", {"x": 1})
        usages = [(await client.runs.get(t, r))["usage"] for t, r in done]

        # A stream that stays open counts as a subscriber until the run ends.
        thread_id = (await client.threads.create())["thread_id"]
        body = {"assistant_id": "slow", "input": {"seconds": 30}}
        async with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "event: metadata"
            during = await scrape(http)
            run_id = stream.headers["content-location"].rsplit("/", 1)[1]
            await client.runs.cancel(thread_id, run_id)
            rest = [line async for line in lines]  # the stream ends with the run
        assert rest
        after = await scrape(http)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("staffgraph_runs_total", graph="supervisor", status="success") == 2
    assert delta("staffgraph_runs_total", graph="failing", status="error") == 1
    assert delta("staffgraph_runs_total", graph="slow", status="interrupted") == 1
    assert delta("staffgraph_run_duration_seconds_count", graph="supervisor") == 2
    assert delta("staffgraph_run_queue_wait_seconds_count", graph="supervisor") == 2
    assert sample(after, "staffgraph_active_runs", graph="supervisor") == 0
    assert sample(after, "staffgraph_active_runs", graph="slow") == 0
    stream_subscribers = "staffgraph_stream_subscribers"
    assert sample(during, stream_subscribers) == sample(before, stream_subscribers) + 1
    assert sample(after, stream_subscribers) == sample(before, stream_subscribers)

    tokens = "staffgraph_llm_tokens_total"
    for direction in ("input", "output"):
        expected = sum(u["by_role"]["finance"][f"{direction}_tokens"] for u in usages)
        assert delta(tokens, role="finance", direction=direction, estimated="true") == expected
    assert delta("staffgraph_llm_calls_total", role="finance") == sum(
        u["by_role"]["finance"]["calls"] for u in usages
    )
    assert delta("staffgraph_llm_cost_usd_total", role="finance") == pytest.approx(
        sum(u["by_role"]["finance"]["cost_usd"] for u in usages)
    )
    joins = delta(
        "staffgraph_http_request_duration_seconds_count",
        method="GET",
        route="/threads/{thread_id}/runs/{run_id}/join",
        status="200",
    )
    assert joins == 3


# -- logs ---------------------------------------------------------------------------------


def json_lines(log: str) -> list[dict[str, Any]]:
    """The log events; the start-up banner on stdout is the only plain text."""
    events = []
    for line in log.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
        else:
            assert line.startswith(
                ("staffgraph ", "  API:", "  Console:", "  Docs:", "  Studio:")
            ), line
    return events


async def test_logs_are_json_events_with_request_and_run_ids(traced: LiveServer) -> None:
    client = get_client(url=traced.url)
    thread_id, run_id = await run_to_end(client, "failing", {"x": 1})

    events = json_lines(traced.log())
    of_run = [e for e in events if e.get("run_id") == run_id]
    assert {e["message"].split(":")[0] for e in of_run} >= {
        f"run {run_id} failed",
        f"run {run_id} finished",
    }
    assert all(e["thread_id"] == thread_id for e in of_run)
    failed = next(e for e in of_run if e["message"].startswith(f"run {run_id} failed"))
    assert failed["level"] == "ERROR" and "Traceback" in failed["exc"]  # operators see it
    finished = next(e for e in of_run if "finished" in e["message"])
    assert finished["status"] == "error" and finished["graph_id"] == "failing"
    access = [e for e in events if e["logger"] == "server.access" and thread_id in e["message"]]
    assert access and all(len(e["request_id"]) == 32 for e in access)


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` for its user (the test Postgres trusts local users)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    user = (userinfo.split(":", 1)[0] if at else "") or parts.username or "postgres"
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, ""))


async def test_secrets_never_reach_the_server_log(database_url: str, tmp_path: Path) -> None:
    password = "Tr0ub4dor-and-3-horses"
    openai_key = "sk-proj-Abc123def456GHI789jkl012MNO345"
    bearer = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXNlc3Npb24tdG9rZW4"
    server = start_server(
        env={
            "DATABASE_URL": with_password(fresh_database(database_url), password),
            "OPENAI_API_KEY": openai_key,
            "MODEL": "offline",
            "STAFFGRAPH_LOG_LEVEL": "debug",
        },
        config=write_config(tmp_path, leaky=True),
    )
    headers = {"Authorization": f"Bearer {bearer}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
            assert (await http.get("/info")).status_code == 200
            assert (await http.get(f"/threads/{openai_key}")).status_code == 422
            thread_id = (await http.post("/threads", json={})).json()["thread_id"]
            waited = await http.post(
                f"/threads/{thread_id}/runs/wait",
                json={"assistant_id": "leaky", "input": {"note": f"Authorization: {bearer}"}},
            )
        assert "__error__" in waited.json()
    finally:
        assert server.stop() == 0
    log = server.log()

    for secret in (password, openai_key, bearer):
        assert secret not in log
    events = json_lines(log)
    (leak,) = [e for e in events if e["logger"] == "tests.leaky"]
    assert leak["thread_id"] == thread_id and "run_id" in leak  # logged from inside the run
    assert "***" in leak["message"]
    (failed,) = [e for e in events if "failed: RuntimeError" in e["message"]]
    assert failed["message"].endswith("could not reach *** using ***")
