"""MemoryStore on every store backend: LangGraph's in-memory store and Postgres + pgvector."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from langgraph.store.base import BaseStore

from state.memory import (
    Episode,
    MemoryInputError,
    MemoryKind,
    MemoryNotFound,
    MemoryScope,
    MemoryScopeError,
    MemoryStore,
    Provenance,
)

ALICE = MemoryScope(role="writer", user_id="alice", domains=("brand",))
WHO = Provenance(recorded_by="writer", run_id="run-1", thread_id="thread-1")


async def test_similar_fact_updates_the_existing_one(any_store: BaseStore) -> None:
    # The hashing embedder scores these two at about 0.83; 0.8 makes them "the same fact".
    memory = MemoryStore(any_store, similarity_threshold=0.8)
    first = await memory.write_fact(ALICE, "The user's favourite colour is blue.", provenance=WHO)
    assert first.action == "created"
    later = Provenance(recorded_by="writer", run_id="run-2")
    second = await memory.write_fact(
        ALICE, "The user's favourite colour is green.", provenance=later
    )

    assert second.action == "updated"
    assert second.similarity is not None and 0.8 <= second.similarity < 1.0
    assert second.memory.key == first.memory.key
    assert second.memory.text == "The user's favourite colour is green."
    assert second.memory.value["revision"] == 2
    assert second.memory.provenance.run_id == "run-2"
    (earlier,) = second.memory.value["previous"]
    assert earlier["text"] == "The user's favourite colour is blue."
    assert earlier["provenance"]["run_id"] == "run-1"
    assert second.memory.value["first_recorded"]["run_id"] == "run-1"
    facts = await memory.recall(ALICE, "favourite colour", kinds=["semantic"])
    assert [m.text for m in facts] == ["The user's favourite colour is green."]


async def test_different_facts_stay_apart_and_identical_ones_merge(any_store: BaseStore) -> None:
    memory = MemoryStore(any_store)  # default threshold 0.85
    a = await memory.write_fact(ALICE, "The user's favourite colour is blue.", provenance=WHO)
    b = await memory.write_fact(ALICE, "The office is in Rotterdam.", provenance=WHO)
    c = await memory.write_fact(ALICE, "  the user's   favourite colour is blue. ", provenance=WHO)
    assert (a.action, b.action) == ("created", "created")
    assert c.action == "updated"  # same words, other case: same key, new wording kept
    assert c.memory.key == a.memory.key
    d = await memory.write_fact(ALICE, "the user's favourite colour is blue.", provenance=WHO)
    assert d.action == "unchanged" and d.memory.value["revision"] == 2
    assert len(await memory.recall(ALICE, "colour office", k=10)) == 2
    # a fact with the same text in another area or for another user is a separate memory
    brand = await memory.write_fact(
        ALICE, "The user's favourite colour is blue.", provenance=WHO, area="brand"
    )
    bob = await memory.write_fact(
        MemoryScope(role="writer", user_id="bob"),
        "The user's favourite colour is blue.",
        provenance=WHO,
    )
    assert brand.action == bob.action == "created"


async def test_concurrent_identical_facts_make_one_item(any_store: BaseStore) -> None:
    memory = MemoryStore(any_store)
    results = await asyncio.gather(
        *(memory.write_fact(ALICE, "The launch is on 3 June.", provenance=WHO) for _ in range(5))
    )
    assert len({r.memory.key for r in results}) == 1
    assert len(await memory.recall(ALICE, "launch", k=10)) == 1


async def test_update_keeps_history_and_refuses_procedural(any_store: BaseStore) -> None:
    memory = MemoryStore(any_store)
    fact = await memory.write_fact(ALICE, "The launch is on 3 June.", provenance=WHO)
    updated = await memory.update(
        ALICE, fact.memory.ref, "The launch moved to 10 June.", provenance=WHO
    )
    assert updated.text == "The launch moved to 10 June."
    assert updated.value["previous"][0]["text"] == "The launch is on 3 June."
    assert (await memory.get(ALICE, fact.memory.ref)) == updated
    with pytest.raises(MemoryNotFound):
        await memory.update(ALICE, "user/writer/semantic/fact-missing", "x", provenance=WHO)
    rule = await memory.propose_procedure(ALICE, "greet", "Say hello.", provenance=WHO)
    with pytest.raises(MemoryInputError, match="procedural memories change through"):
        await memory.update(ALICE, rule.ref, "Say goodbye.", provenance=WHO)


async def test_refs_never_leave_the_scope(any_store: BaseStore) -> None:
    memory = MemoryStore(any_store)
    fact = await memory.write_fact(ALICE, "The launch is on 3 June.", provenance=WHO)
    bob = MemoryScope(role="writer", user_id="bob")
    assert await memory.get(bob, fact.memory.ref) is None  # same ref, bob's namespace
    assert await memory.forget(bob, fact.memory.ref) is False
    assert await memory.get(ALICE, fact.memory.ref) is not None
    with pytest.raises(MemoryScopeError):
        await memory.get(MemoryScope(role="finance", user_id="alice"), fact.memory.ref)
    for bad in ("user/writer/semantic/", "users/writer/semantic/k", "user/Writer/semantic/k", ""):
        with pytest.raises(MemoryInputError):
            await memory.get(ALICE, bad)
    assert await memory.forget(ALICE, fact.memory.ref) is True
    assert await memory.forget(ALICE, fact.memory.ref) is False


async def test_episodes_are_one_per_run_and_validated(any_store: BaseStore) -> None:
    memory = MemoryStore(any_store)
    episode = Episode(
        task="Summarise the board pack.",
        outcome="A one-page summary.",
        actions=("called document_stats(text=...)",),
        succeeded=True,
        scores={"accuracy": 0.75},
    )
    first = await memory.write_episode(ALICE, episode, provenance=WHO)
    again = await memory.write_episode(
        ALICE, Episode(task="Summarise the board pack.", outcome="Retried."), provenance=WHO
    )
    assert first.key == again.key == "run-run-1"
    assert again.value["outcome"] == "Retried."
    assert first.text == (
        "Task: Summarise the board pack. Done: called document_stats(text=...) "
        "Outcome: A one-page summary. Scores: accuracy 0.75"
    )
    with pytest.raises(MemoryInputError, match="must be in \\[0, 1\\]"):
        await memory.write_episode(
            ALICE, Episode(task="t", outcome="o", scores={"x": 1.5}), provenance=WHO
        )
    with pytest.raises(MemoryScopeError, match="has no user"):
        await memory.write_episode(
            MemoryScope(role="writer"), Episode(task="t", outcome="o"), provenance=WHO
        )


async def test_recall_respects_kinds_k_floor_and_expiry(any_store: BaseStore) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    memory = MemoryStore(any_store, clock=lambda: now)
    await memory.write_fact(ALICE, "The launch is on 3 June.", provenance=WHO)
    await memory.write_fact(ALICE, "The launch party is at the harbour.", provenance=WHO, ttl=10)
    await memory.write_episode(
        ALICE, Episode(task="Plan the launch.", outcome="Planned."), provenance=WHO
    )
    assert {m.kind for m in await memory.recall(ALICE, "launch", k=10)} == {
        MemoryKind.SEMANTIC,
        MemoryKind.EPISODIC,
    }
    assert len(await memory.recall(ALICE, "launch", k=1)) == 1
    episodic = await memory.recall(ALICE, "launch", kinds=[MemoryKind.EPISODIC])
    assert [m.text for m in episodic] == ["Task: Plan the launch. Outcome: Planned."]
    assert await memory.recall(ALICE, "launch", min_score=1.01) == []
    scores = [m.score for m in await memory.recall(ALICE, "launch", k=10)]
    assert scores == sorted(scores, reverse=True)

    later = MemoryStore(any_store, clock=lambda: now + timedelta(minutes=11))
    texts = {m.text for m in await later.recall(ALICE, "launch party harbour", k=10)}
    assert "The launch party is at the harbour." not in texts
    assert "The launch is on 3 June." in texts
    with pytest.raises(MemoryInputError):
        await memory.recall(ALICE, "launch", k=0)


async def test_procedure_decisions_are_checked(any_store: BaseStore) -> None:
    memory = MemoryStore(any_store)
    proposal = await memory.propose_procedure(
        ALICE, "greet", "Open with the reader's name.", provenance=WHO
    )
    await memory.reject_procedure(ALICE, proposal.ref, decided_by="human:lead", reason="No.")
    with pytest.raises(MemoryInputError, match="is rejected; only pending"):
        await memory.approve_procedure(ALICE, proposal.ref, decided_by="human:lead")
    with pytest.raises(MemoryNotFound):
        await memory.approve_procedure(
            ALICE, "org/writer/procedural/greet-v9", decided_by="human:lead"
        )
    fact = await memory.write_fact(ALICE, "A fact.", provenance=WHO)
    with pytest.raises(MemoryInputError, match="not a procedural memory"):
        await memory.approve_procedure(ALICE, fact.memory.ref, decided_by="human:lead")
    with pytest.raises(MemoryInputError, match="lower_snake_case"):
        await memory.propose_procedure(ALICE, "Greet Me", "x", provenance=WHO)
    user_rule = await memory.propose_procedure(
        ALICE, "greet", "Use first names.", provenance=WHO, owner="user"
    )
    assert user_rule.ref == "user/writer/procedural/greet-v1"  # versions count per namespace
    second = await memory.propose_procedure(ALICE, "greet", "Say hi.", provenance=WHO)
    assert second.value["version"] == 2
    assert [m.ref for m in await memory.procedures(ALICE, status="pending")] == [
        "user/writer/procedural/greet-v1",
        "org/writer/procedural/greet-v2",
    ]


async def test_delete_user_spans_every_area_and_kind(any_store: BaseStore) -> None:
    memory = MemoryStore(any_store)
    for index in range(7):
        await memory.write_fact(ALICE, f"Fact number {index} about alice.", provenance=WHO)
    await memory.write_fact(ALICE, "The brand is teal.", provenance=WHO, area="brand")
    await memory.write_episode(ALICE, Episode(task="t", outcome="o"), provenance=WHO)
    other = MemoryScope(role="writer", user_id="alice2")
    await memory.write_fact(other, "Fact about alice2.", provenance=WHO)
    assert await memory.delete_user("alice") == 9
    assert await memory.recall(ALICE, "fact brand", k=10) == []
    assert len(await memory.recall(other, "fact", k=10)) == 1
