"""Embeddings reach Postgres as one pgvector literal each, with the values they had as lists.

psycopg dumps a list one float at a time in Python; the store's connections send our
embedders' :class:`~state.vectors.Vector` as ``[x,y,...]`` text instead. These tests use the
real pool, store and pgvector: the dumper is the one a pool connection picks, the casts and
the ``vector`` column read the literal to the same values as the array they replaced, and a
Store search scores with them as before.
"""

from __future__ import annotations

import math
import uuid

import numpy as np
from psycopg.adapt import PyFormat

from nodes.embeddings import HashingEmbeddings
from state.db import Persistence
from state.vectors import Vector, VectorDumper


async def test_a_pool_connection_sends_a_vector_as_one_literal(persistence: Persistence) -> None:
    vector = HashingEmbeddings().embed_query("quarterly invoices in Berlin")
    assert isinstance(vector, Vector)
    async with persistence.pool.connection() as conn:
        assert conn.adapters.get_dumper(Vector, PyFormat.AUTO) is VectorDumper
        plain = list(vector)  # an ordinary list still goes as an array
        row = await (
            await conn.execute(
                "SELECT %s::vector::text AS literal, %s::vector::text AS array,"
                " %s::halfvec::text AS half, %s::halfvec::text AS half_array,"
                " pg_typeof(%s)::text AS list_type",
                (vector, plain, vector, plain, plain),
            )
        ).fetchone()
    assert row is not None
    assert row["literal"] == row["array"]
    assert row["half"] == row["half_array"]
    assert row["list_type"] != "unknown"
    parsed = [float(x) for x in row["literal"].strip("[]").split(",")]
    assert np.allclose(parsed, vector, rtol=1e-6, atol=1e-7)


async def test_the_store_keeps_and_scores_the_vectors_it_was_given(
    persistence: Persistence,
) -> None:
    embeddings = HashingEmbeddings()
    namespace = ("vector-params", uuid.uuid4().hex)
    texts = {
        "invoices": "quarterly invoices are due on Mondays",
        "espresso": "the espresso machine in Berlin is broken",
        "hiring": "the hiring plan for next quarter",
    }
    for key, text in texts.items():
        await persistence.store.aput(namespace, key, {"text": text})
    async with persistence.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT key, embedding::text AS embedding FROM store_vectors WHERE prefix = %s",
                (".".join(namespace),),
            )
        ).fetchall()
    stored = {r["key"]: [float(x) for x in r["embedding"].strip("[]").split(",")] for r in rows}
    assert set(stored) == set(texts)
    for key, text in texts.items():
        # The store embeds the whole value ("$"): its JSON text.
        expected = embeddings.embed_query(f'{{"text": "{text}"}}')
        assert np.allclose(stored[key], expected, atol=1e-6), key

    query = "when are the invoices due"
    found = await persistence.store.asearch(namespace, query=query, limit=3)
    assert found[0].key == "invoices"
    q = np.array(embeddings.embed_query(query))
    for item in found:
        v = np.array(stored[item.key])
        cosine = float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v)))
        assert item.score is not None and math.isclose(item.score, cosine, abs_tol=1e-5)
