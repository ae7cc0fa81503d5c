"""The store as shipped: the tuned HNSW index, ef_search on every connection, store.ttl."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from nodes.embeddings import HashingEmbeddings
from server.config import load_config
from server.startup import DEFAULT_SWEEP_MINUTES, resolve_store_ttl
from state.db import (
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    Persistence,
    configure_connection,
    open_persistence,
)


async def test_index_and_every_pool_connection_use_the_benchmarked_settings(
    persistence: Persistence,
) -> None:
    assert (HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH) == (32, 128, 100)
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'store_vectors_embedding_idx' "
            "AND schemaname = current_schema()"
        )
        row = await cur.fetchone()
    assert row is not None
    assert (
        "USING hnsw (embedding vector_cosine_ops) WITH (m='32', ef_construction='128')"
        in (row["indexdef"])
    )
    # Every connection the pool hands out, not only the first one.
    held = [await persistence.pool.getconn() for _ in range(3)]
    try:
        for conn in held:
            cur = await conn.execute("SHOW hnsw.ef_search")
            setting = await cur.fetchone()
            assert setting is not None and setting["hnsw.ef_search"] == "100"
            assert conn.info.transaction_status is TransactionStatus.IDLE
    finally:
        for conn in held:
            await persistence.pool.putconn(conn)


async def test_configure_connection_leaves_a_non_autocommit_connection_idle(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        assert not conn.autocommit
        await configure_connection(conn)
        # The pool refuses connections left inside a transaction: the setting is committed.
        assert conn.info.transaction_status is TransactionStatus.IDLE
        cur = await conn.execute("SHOW hnsw.ef_search")
        row = await cur.fetchone()
        assert row is not None and row[0] == str(HNSW_EF_SEARCH)


async def test_an_index_built_with_other_settings_is_reported(
    persistence: Persistence, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A database set up before the settings changed: LangGraph never rebuilds its index.
    async with persistence.pool.connection() as conn:
        await conn.execute("DROP INDEX store_vectors_embedding_idx")
        await conn.execute(
            "CREATE INDEX store_vectors_embedding_idx ON store_vectors "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    index = {"dims": 384, "embed": HashingEmbeddings(dims=384), "fields": ["$"]}
    try:
        with caplog.at_level(logging.WARNING, logger="state.db"):
            async with open_persistence(database_url, max_size=2, index=index):
                pass
    finally:
        async with persistence.pool.connection() as conn:
            await conn.execute("DROP INDEX store_vectors_embedding_idx")
            await conn.execute(
                "CREATE INDEX store_vectors_embedding_idx ON store_vectors "
                "USING hnsw (embedding vector_cosine_ops) WITH (m = 32, ef_construction = 128)"
            )
    assert (
        "was built with m=16, ef_construction=64 but m=32, ef_construction=128 are configured"
        in caplog.text
    )


def write_config(tmp_path: Path, store: dict[str, object] | None) -> Path:
    data: dict[str, object] = {"graphs": {"chat": "./graphs/chat.py:graph"}}
    if store is not None:
        data["store"] = store
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


async def test_store_ttl_from_langgraph_json_reaches_the_store(
    database_url: str, tmp_path: Path
) -> None:
    # Without a policy a sweeper still runs, so items written with a ttl disappear.
    assert resolve_store_ttl(load_config(write_config(tmp_path, None))) == {
        "refresh_on_read": True,
        "sweep_interval_minutes": DEFAULT_SWEEP_MINUTES,
    }
    assert resolve_store_ttl(load_config(write_config(tmp_path, {"ttl": {}}))) == {
        "refresh_on_read": True
    }
    ttl = resolve_store_ttl(
        load_config(
            write_config(
                tmp_path,
                {
                    "ttl": {
                        "default_ttl": 90,
                        "refresh_on_read": False,
                        "sweep_interval_minutes": 15,
                    }
                },
            )
        )
    )
    assert ttl == {"refresh_on_read": False, "default_ttl": 90, "sweep_interval_minutes": 15}

    index = {"dims": 384, "embed": HashingEmbeddings(dims=384), "fields": ["$"]}
    async with open_persistence(database_url, max_size=2, index=index, ttl=ttl) as p:
        await p.store.aput(("ttl-test",), "item", {"text": "expires"})
        async with p.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT ttl_minutes, expires_at > now() + interval '89 minutes' AS later "
                "FROM store WHERE prefix = 'ttl-test' AND key = 'item'"
            )
            row = await cur.fetchone()
            await conn.execute("DELETE FROM store WHERE prefix = 'ttl-test'")
    assert row is not None and row["ttl_minutes"] == 90 and row["later"] is True
