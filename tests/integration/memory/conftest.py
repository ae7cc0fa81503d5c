"""Fixtures for the memory tests: a tiny graph using the memory nodes, and stores to run on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired
from uuid import uuid4

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from nodes.embeddings import HashingEmbeddings
from nodes.memory import RECALL_MESSAGE_PREFIX, make_recall_node, make_remember_node
from nodes.offline import OfflineChatModel
from state.db import Persistence
from state.roles import Role

WRITER = Role(name="writer", purpose="Writes and edits prose.", domains=("brand",))
FINANCE = Role(name="finance", purpose="Owns the budget.", domains=("budget",))


@dataclass(kw_only=True)
class Context:
    """The test graph's run context, sharing the memory field names."""

    user_id: str | None = None


class State(MessagesState):
    """Conversation plus an optional critic review of the answer."""

    review: NotRequired[dict[str, Any]]


async def answer(state: State) -> dict[str, Any]:
    """The agent step: the deterministic offline model answers the conversation."""
    return {"messages": [await OfflineChatModel().ainvoke(state["messages"])]}


def build_memory_graph(persistence: Persistence, role: Role, **remember: Any) -> Any:
    """recall -> agent -> remember, compiled on the test's Postgres saver and store."""
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("recall", make_recall_node(role))
    builder.add_node("agent", answer)
    builder.add_node("remember", make_remember_node(role, **remember))
    builder.add_edge(START, "recall")
    builder.add_edge("recall", "agent")
    builder.add_edge("agent", "remember")
    builder.add_edge("remember", END)
    return builder.compile(
        checkpointer=persistence.checkpointer, store=persistence.store, name="memory_test"
    )


@dataclass
class Turn:
    """One finished run: its ids and final state."""

    thread_id: str
    run_id: str
    values: dict[str, Any]

    @property
    def recalled(self) -> str:
        """The memory block the recall node placed in the conversation ("" if none)."""
        blocks = [m for m in self.values["messages"] if is_recall_message(m)]
        assert len(blocks) <= 1, "an earlier recall block was not replaced"
        return str(blocks[0].content) if blocks else ""


def is_recall_message(message: AnyMessage) -> bool:
    """Whether ``message`` is the recall node's memory block."""
    return (
        isinstance(message, SystemMessage)
        and isinstance(message.id, str)
        and message.id.startswith(RECALL_MESSAGE_PREFIX)
    )


async def run_turn(
    graph: Any,
    text: str,
    *,
    user: str | None,
    thread_id: str | None = None,
    review: dict[str, Any] | None = None,
    configurable: dict[str, Any] | None = None,
) -> Turn:
    """Run the graph once for ``user`` with one human message."""
    thread_id = thread_id or f"thread-{uuid4().hex[:8]}"
    run_id = str(uuid4())
    payload: dict[str, Any] = {"messages": [HumanMessage(text)]}
    if review is not None:
        payload["review"] = review
    values = await graph.ainvoke(
        payload,
        config={"configurable": {"thread_id": thread_id, **(configurable or {})}, "run_id": run_id},
        context=Context(user_id=user),
    )
    return Turn(thread_id=thread_id, run_id=run_id, values=values)


@pytest.fixture(params=["memory", "postgres"])
def any_store(request: pytest.FixtureRequest) -> BaseStore:
    """Every store backend: LangGraph's in-memory store and our Postgres store (hashing index)."""
    if request.param == "memory":
        embeddings = HashingEmbeddings(dims=384)
        return InMemoryStore(index={"dims": 384, "embed": embeddings, "fields": ["$"]})
    persistence: Persistence = request.getfixturevalue("persistence")
    return persistence.store


class SeenPrompts(BaseCallbackHandler):
    """Every chat model call's input, by agent: LangChain calls it before each model call.

    Passed in a run's ``callbacks``, it observes the real graph without replacing any part of
    it; ``lc_agent_name`` in the call's metadata names the role agent making the call.
    """

    run_inline = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str | None, list[BaseMessage]]] = []

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.calls.append(((metadata or {}).get("lc_agent_name"), list(messages[0])))

    def prompts(self, agent: str) -> list[str]:
        """The system prompt of each model call ``agent`` made, in order."""
        return [
            "\n".join(m.text for m in messages if isinstance(m, SystemMessage))
            for name, messages in self.calls
            if name == agent
        ]

    def everything(self) -> str:
        """All the text every model received, system prompts, requests and tool results."""
        return "\n".join(m.text for _, messages in self.calls for m in messages)
