"""``RemoteGraph`` pointed at our server, on its own and as a node of a local graph."""

from __future__ import annotations

import uuid
from typing import Annotated

from langchain_core.messages import AnyMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client
from typing_extensions import TypedDict

from tests.support.server import LiveServer


class Chat(TypedDict, total=False):
    """The local graph's state: what the remote graph reads and writes, plus a local note."""

    messages: Annotated[list[AnyMessage], add_messages]
    count: int
    note: str


async def note(state: Chat) -> dict[str, str]:
    """A local step after the remote one."""
    return {"note": f"remote said: {state['messages'][-1].content}"}


async def test_remote_graph_as_a_node(live_server: LiveServer) -> None:
    remote = RemoteGraph("simple", url=live_server.url, name="remote_simple")
    builder = StateGraph(Chat)
    builder.add_node("remote", remote)
    builder.add_node("note", note)
    builder.add_edge(START, "remote")
    builder.add_edge("remote", "note")
    builder.add_edge("note", END)
    local = builder.compile(checkpointer=InMemorySaver())
    # The local thread id is used for the remote run too (created there on first use).
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    out = await local.ainvoke({"messages": [{"role": "user", "content": "ping"}]}, config)
    assert out["count"] == 1
    assert [m.type for m in out["messages"]] == ["human", "ai"]
    assert out["note"] == "remote said: echo: ping"
    updates = [
        chunk
        async for chunk in local.astream(
            {"messages": [{"role": "user", "content": "again"}]},
            {"configurable": {"thread_id": str(uuid.uuid4())}},
            stream_mode="updates",
        )
    ]
    assert [list(u) for u in updates] == [["remote"], ["note"]]


async def test_remote_graph_on_a_server_thread(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    remote = RemoteGraph("hitl", url=live_server.url)
    config = {"configurable": {"thread_id": tid}}
    out = await remote.ainvoke({"proposal": "ship it"}, config)
    assert out["log"] == ["proposed"]
    state = await remote.aget_state(config)
    assert state.next == ("review",)
    assert state.tasks[0].interrupts[0].value == {"question": "approve?", "proposal": "ship it"}
    chunks = [
        c async for c in remote.astream({"proposal": "ship it"}, config, stream_mode="updates")
    ]
    assert chunks and "__interrupt__" in chunks[-1]
    history = [s async for s in remote.aget_state_history(config, limit=3)]
    assert len(history) == 3
    graph = await remote.aget_graph()
    assert {"propose", "review", "act"} <= set(graph.nodes)
