"""Retrieval quality with real embeddings: all-MiniLM-L6-v2 through our recall on pgvector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.store.base import IndexConfig

from nodes.embeddings import LOCAL_DIMS, LocalEmbeddings
from state.db import Persistence, open_persistence
from state.memory import MemoryKind, MemoryScope, MemoryStore, Provenance
from tests.conftest import truncate_all
from tests.integration.memory.retrieval_set import FACTS, QUESTIONS

# Measured when the set was written: 53 of 62 questions (85.5 %) get their gold fact first,
# 60 of 62 (96.8 %) within the top 3. The misses are near neighbours sharing a subject
# (headquarters vs the other offices, discount vs payment terms). The floors sit a few points
# under those figures so that the test catches a real regression (wrong field embedded,
# provenance text in the vector, broken ranking) without failing on one borderline question.
TOP1_FLOOR = 0.80
TOP3_FLOOR = 0.92


@pytest.fixture
async def minilm_persistence(database_url: str) -> AsyncIterator[Persistence]:
    """The session database with a store that embeds with the local MiniLM model."""
    embeddings = LocalEmbeddings()
    index: IndexConfig = {"dims": LOCAL_DIMS, "embed": embeddings, "fields": ["$"]}
    async with open_persistence(database_url, max_size=4, index=index) as persistence:
        await truncate_all(persistence)
        try:
            yield persistence
        finally:
            await truncate_all(persistence)


async def test_top1_accuracy_of_recall_with_minilm(minilm_persistence: Persistence) -> None:
    assert len(FACTS) >= 50 and len(QUESTIONS) >= 50
    memory = MemoryStore(minilm_persistence.store)
    scope = MemoryScope(role="chief_of_staff", user_id="eval-user")
    key_of_text: dict[str, str] = {}
    for key, text in FACTS.items():
        written = await memory.write_fact(
            scope, text, provenance=Provenance(recorded_by="eval", source="api")
        )
        # no two facts of the set are near-duplicates, so dedup must not merge any
        assert written.action == "created", (key, written.similarity)
        key_of_text[written.memory.text] = key

    top1 = top3 = 0
    misses = []
    for question, gold in QUESTIONS:
        found = await memory.recall(scope, question, k=3, kinds=[MemoryKind.SEMANTIC])
        ranked = [key_of_text[m.text] for m in found]
        top1 += ranked[:1] == [gold]
        top3 += gold in ranked
        if ranked[:1] != [gold]:
            misses.append(f"{question!r}: got {ranked[0]}, wanted {gold}")
    n = len(QUESTIONS)
    print(
        f"\nMiniLM recall over {len(FACTS)} facts, {n} questions: "
        f"top-1 {top1}/{n} = {top1 / n:.3f} (floor {TOP1_FLOOR}), "
        f"top-3 {top3}/{n} = {top3 / n:.3f} (floor {TOP3_FLOOR})"
    )
    print("\n".join(misses))
    assert top1 / n >= TOP1_FLOOR
    assert top3 / n >= TOP3_FLOOR
