"""Memory scopes, namespaces, provenance and the pure helpers of the memory nodes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.runtime import ExecutionInfo, Runtime, ServerInfo
from langgraph.store.memory import InMemoryStore

from nodes.memory import (
    MemoryContext,
    episode_from_messages,
    explicit_facts,
    format_memories,
    memory_settings,
    provenance_for,
    resolve_scope,
)
from state.memory import (
    Episode,
    Memory,
    MemoryInputError,
    MemoryKind,
    MemoryScope,
    MemoryScopeError,
    MemoryStore,
    Provenance,
    owner_label,
)


@dataclass
class _User:
    identity: str
    is_authenticated: bool = True
    display_name: str = "someone"
    permissions: tuple[str, ...] = ()


def test_owner_labels_escape_dots_and_never_collide() -> None:
    labels = {
        owner_label("user", "alice"),
        owner_label("user", "alice.smith"),
        owner_label("user", "alice%2Esmith"),
        owner_label("user", "org:acme"),
        owner_label("org", "acme"),
    }
    assert len(labels) == 5
    assert owner_label("user", "alice.smith") == "user:alice%2Esmith"
    assert owner_label("user", "alice%2Esmith") == "user:alice%252Esmith"
    assert all("." not in label for label in labels)
    with pytest.raises(MemoryInputError):
        owner_label("user", "")
    with pytest.raises(MemoryInputError):
        owner_label("user", "x" * 201)


def test_scope_namespaces_areas_and_refs() -> None:
    scope = MemoryScope(role="finance", user_id="alice", domains=("budget", "finance"))
    assert scope.areas == ("finance", "budget")
    assert scope.namespace(MemoryKind.SEMANTIC) == (
        "memories",
        "user:alice",
        "finance",
        "semantic",
    )
    assert scope.namespace("procedural", owner="org", area="budget") == (
        "memories",
        "org:default",
        "budget",
        "procedural",
    )
    assert scope.readable_namespaces([MemoryKind.EPISODIC]) == [
        ("memories", "user:alice", "finance", "episodic"),
        ("memories", "user:alice", "budget", "episodic"),
        ("memories", "org:default", "finance", "episodic"),
        ("memories", "org:default", "budget", "episodic"),
    ]
    namespace, key = scope.resolve("user/budget/semantic/fact-1")
    assert namespace == ("memories", "user:alice", "budget", "semantic") and key == "fact-1"
    assert scope.ref_of(namespace, key) == "user/budget/semantic/fact-1"
    with pytest.raises(MemoryScopeError, match="may only use its own memory area"):
        scope.resolve("user/writer/semantic/fact-1")
    with pytest.raises(MemoryScopeError, match="has no organisation"):
        MemoryScope(role="finance", user_id="alice", org_id=None).namespace("semantic", owner="org")
    with pytest.raises(MemoryScopeError, match="has no user"):
        MemoryScope(role="finance").namespace("semantic")
    assert MemoryScope(role="finance", org_id=None).readable_namespaces() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"role": "Writer"},
        {"role": "writer.x"},
        {"role": "writer", "domains": ("bad name",)},
        {"role": "writer", "user_id": ""},
        {"role": "writer", "org_id": "x\x00y"},
        {"role": "writer", "domains": tuple(f"d{i}" for i in range(51))},
    ],
)
def test_scope_refuses_bad_names(kwargs: dict[str, object]) -> None:
    with pytest.raises(MemoryInputError):
        MemoryScope(**kwargs)  # type: ignore[arg-type]


def test_provenance_round_trip_and_description() -> None:
    when = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
    provenance = Provenance(
        recorded_by="writer",
        source="tool",
        user_id="alice",
        thread_id="t-1",
        run_id="r-1",
        recorded_at=when,
    )
    assert Provenance.from_json(provenance.to_json()) == provenance
    assert provenance.describe() == (
        "by writer (tool), for user alice, run r-1 in thread t-1, 2025-03-04 10:30 UTC"
    )
    damaged = Provenance.from_json({"recorded_by": 3, "recorded_at": "not a date"})
    assert damaged.recorded_by == "unknown" and damaged.recorded_at is None
    assert Provenance.from_json(None).source == "unknown"
    with pytest.raises(MemoryInputError):
        Provenance(recorded_by="")


def test_memory_describe_and_format_block_bounds() -> None:
    memory = Memory(
        namespace=("memories", "org:default", "writer", "procedural"),
        key="greet-v2",
        kind=MemoryKind.PROCEDURAL,
        text="Greet  the reader\nby name.",
        provenance=Provenance(recorded_by="critic", run_id="r-9"),
        value={"rule": "greet", "version": 2},
        ref="org/writer/procedural/greet-v2",
    )
    assert memory.describe() == (
        "[instruction greet v2 (organisation)] Greet the reader by name. "
        "(remembered by critic, run r-9; ref org/writer/procedural/greet-v2)"
    )
    block = format_memories([memory] * 3)
    assert block.splitlines()[0].startswith("Long-term memory")
    assert [line[:3] for line in block.splitlines()[1:]] == ["1. ", "2. ", "3. "]
    assert format_memories([memory] * 100, max_chars=500).count("\n") < 5
    assert format_memories([]) == ""


def test_episode_text_is_bounded() -> None:
    episode = Episode(
        task="t" * 5_000,
        outcome="o" * 5_000,
        actions=tuple(f"call {i}" for i in range(50)),
        scores={"clarity": 0.5},
    )
    text = episode.text()
    assert len(text) <= 2_000 and text.startswith("Task: ttt")


def test_explicit_facts() -> None:
    text = (
        "Hi! Please remember that my team ships on Thursdays. Also note that I'm based in "
        "Lisbon. Do you remember what I said yesterday? Remember: the budget is 5k."
    )
    assert explicit_facts(text) == [
        "The user's team ships on Thursdays.",
        "The user is based in Lisbon.",
        "The budget is 5k.",
    ]
    assert explicit_facts("Do you remember that I like tea?") == []
    assert explicit_facts("Nothing to keep here.") == []
    assert len(explicit_facts("Remember that x is fine. " * 50)) == 1
    assert len(explicit_facts(" ".join(f"Remember that fact {i} holds." for i in range(9)))) == 5


def test_episode_from_messages_reads_the_latest_turn() -> None:
    messages = [
        HumanMessage("old request"),
        AIMessage("old answer"),
        HumanMessage("Add 2 and 3."),
        AIMessage(
            "",
            tool_calls=[
                {
                    "name": "calculator",
                    "args": {"expression": "2+3"},
                    "id": "c1",
                    "type": "tool_call",
                }
            ],
        ),
        ToolMessage("5", tool_call_id="c1"),
        AIMessage("The sum is 5."),
    ]
    review = {
        "scores": [{"criterion": "accuracy", "score": 1.0}, {"criterion": "x", "score": "bad"}],
        "passed": True,
    }
    episode = episode_from_messages(messages, review=review)
    assert episode == Episode(
        task="Add 2 and 3.",
        outcome="The sum is 5.",
        actions=("called calculator(expression=2+3)",),
        succeeded=True,
        scores={"accuracy": 1.0},
    )
    assert episode_from_messages([HumanMessage("no answer yet")]) is None
    assert episode_from_messages([AIMessage("no request")]) is None


def test_memory_settings_read_any_context() -> None:
    @dataclass
    class GraphContext:
        model: str = "offline"
        user_id: str | None = "alice"
        memory_k: int = 3

    settings = memory_settings(Runtime(context=GraphContext()))
    assert settings == MemoryContext(user_id="alice", memory_k=3)
    assert memory_settings(Runtime(context=None)) == MemoryContext()
    from_dict = memory_settings(
        Runtime(context={"user_id": "bob", "org_id": None, "memory_min_score": None, "x": 1})
    )
    assert from_dict == MemoryContext(user_id="bob", org_id=None, memory_min_score=None)
    for bad in ({"memory_k": 0}, {"memory_k": True}, {"user_id": 5}, {"memory_min_score": 2}):
        with pytest.raises(ValueError):
            memory_settings(Runtime(context=bad))


def test_resolve_scope_prefers_the_authenticated_user() -> None:
    server = ServerInfo(assistant_id="a", graph_id="g", user=_User("bob"))
    scope = resolve_scope(Runtime(context=None, server_info=server), role="writer")
    assert scope.user_id == "bob"
    same = Runtime(context={"user_id": "bob"}, server_info=server)
    assert resolve_scope(same, role="writer", domains=["brand"]).areas == ("writer", "brand")
    with pytest.raises(MemoryScopeError, match="does not match the authenticated user"):
        resolve_scope(Runtime(context={"user_id": "alice"}, server_info=server), role="writer")
    assert resolve_scope(Runtime(context={"user_id": "alice"}), role="writer").user_id == "alice"
    assert resolve_scope(Runtime(context=None), role="writer").user_id is None


def test_provenance_for_takes_thread_and_run_from_the_runtime() -> None:
    info = ExecutionInfo(
        checkpoint_id="c", checkpoint_ns="", task_id="t", thread_id="th-1", run_id="run-1"
    )
    provenance = provenance_for(
        Runtime(context=None, execution_info=info), recorded_by="writer", user_id="alice"
    )
    assert (provenance.thread_id, provenance.run_id, provenance.user_id) == (
        "th-1",
        "run-1",
        "alice",
    )


def test_memory_store_settings_are_checked() -> None:
    store = InMemoryStore()
    with pytest.raises(MemoryInputError):
        MemoryStore(store, similarity_threshold=0)
    with pytest.raises(MemoryInputError):
        MemoryStore(store, default_ttl={"episodic": -1})
    with pytest.raises(ValueError):
        MemoryStore(store, default_ttl={"nonsense": 5})
    assert MemoryStore(store, default_ttl={"episodic": 60}).default_ttl == {
        MemoryKind.EPISODIC: 60.0
    }
