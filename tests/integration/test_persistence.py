"""Persistence on a real Postgres: checkpoints, the strict serializer, vector search, migrations."""

from __future__ import annotations

import asyncio
import math
import pickle
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NotRequired

import psycopg
import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from psycopg import sql
from psycopg.rows import dict_row
from typing_extensions import TypedDict

import state.db
from nodes.embeddings import HashingEmbeddings
from state.db import Persistence, apply_migrations, open_persistence, open_pool, strict_serializer
from tests.support.server import fresh_database

MIGRATION_VERSIONS = sorted(
    int(path.name[:4])
    for path in Path(state.db.__file__).with_name("migrations").glob("[0-9][0-9][0-9][0-9]_*.sql")
)


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: NotRequired[int]


async def _reply(state: ChatState) -> dict[str, Any]:
    last = state["messages"][-1].content
    return {"messages": [AIMessage(content=f"echo: {last}")], "turns": state.get("turns", 0) + 1}


def _builder() -> StateGraph[ChatState]:
    builder = StateGraph(ChatState)
    builder.add_node("reply", _reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder


async def test_checkpoint_round_trip_is_durable(
    persistence: Persistence, database_url: str
) -> None:
    graph = _builder().compile(checkpointer=persistence.checkpointer)
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}

    await graph.ainvoke({"messages": [HumanMessage(content="hello")]}, config)
    await graph.ainvoke({"messages": [HumanMessage(content="again")]}, config)
    saved = await graph.aget_state(config)

    # The second run continued from the first run's checkpoint.
    assert [m.content for m in saved.values["messages"]] == [
        "hello",
        "echo: hello",
        "again",
        "echo: again",
    ]
    assert saved.values["turns"] == 2

    # A new saver on a new pool reads the same state: it is in Postgres, not in memory.
    pool = await open_pool(database_url, min_size=1, max_size=2, timeout=5.0)
    try:
        fresh_saver = AsyncPostgresSaver(pool, serde=strict_serializer())  # type: ignore[arg-type]
        reread = await _builder().compile(checkpointer=fresh_saver).aget_state(config)
        history = [snapshot async for snapshot in fresh_saver.alist(config)]
    finally:
        await pool.close()

    assert (
        reread.config["configurable"]["checkpoint_id"]
        == (saved.config["configurable"]["checkpoint_id"])
    )
    assert reread.values == saved.values
    # Messages come back as message objects: the strict serializer still revives safe types.
    assert isinstance(reread.values["messages"][1], AIMessage)
    assert len(history) >= 4  # input and step checkpoints of both runs


@dataclass
class Gadget:
    """A type that is on no deserialization allow-list."""

    name: str


_UNPICKLED: list[str] = []


def _record_unpickle(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class _Tripwire:
    """Unpickling this calls ``_record_unpickle``: proof that pickle data was loaded."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickle, ("tripwire",))


def test_strict_serializer_does_not_revive_unlisted_types() -> None:
    payload = strict_serializer().dumps_typed({"gadget": Gadget(name="probe")})
    assert payload[0] == "msgpack"

    # The same bytes would revive the object under a permissive serializer ...
    permissive = JsonPlusSerializer(allowed_msgpack_modules=True)
    assert permissive.loads_typed(payload) == {"gadget": Gadget(name="probe")}
    # ... the strict one hands back plain data instead of constructing it.
    loaded = strict_serializer().loads_typed(payload)
    assert not isinstance(loaded["gadget"], Gadget)
    assert loaded["gadget"] == {"name": "probe"}


def test_strict_serializer_never_pickles() -> None:
    serde = strict_serializer()

    with pytest.raises(NotImplementedError):
        serde.loads_typed(("pickle", pickle.dumps(_Tripwire())))
    assert _UNPICKLED == []

    # Something msgpack cannot encode is refused rather than pickled.
    with pytest.raises(TypeError):
        serde.dumps_typed({"handle": object()})


async def test_checkpointer_uses_the_strict_serializer(persistence: Persistence) -> None:
    saver = persistence.checkpointer
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"gadget": Gadget(name="stored")}
    checkpoint["channel_versions"] = {"gadget": saver.get_next_version(None, None)}

    saved = await saver.aput(config, checkpoint, {}, checkpoint["channel_versions"])
    loaded = await saver.aget_tuple(saved)

    assert loaded is not None
    assert loaded.checkpoint["channel_values"]["gadget"] == {"name": "stored"}


_DOCUMENTS = {
    "cats": "cats purr softly and chase mice around the barn",
    "ships": "container ships cross the ocean carrying cargo",
    "bread": "sourdough bread needs a starter and a hot oven",
}


@pytest.mark.parametrize(
    ("query", "nearest"),
    [
        ("which ships carry cargo across the ocean", "ships"),
        ("how to bake sourdough bread in an oven", "bread"),
        ("the cats chase mice", "cats"),
    ],
)
async def test_store_vector_search_returns_nearest_first(
    persistence: Persistence, query: str, nearest: str
) -> None:
    namespace = ("memories", uuid.uuid4().hex)
    for key, text in _DOCUMENTS.items():
        await persistence.store.aput(namespace, key, {"text": text})

    results = await persistence.store.asearch(namespace, query=query, limit=3)

    assert [item.key for item in results][0] == nearest
    assert {item.key for item in results} == set(_DOCUMENTS)
    scores = [item.score for item in results]
    assert all(score is not None for score in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]


async def _schema_versions(url: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT version, name, applied_at FROM schema_version ORDER BY 1")
        return await cur.fetchall()


async def _drop_database(admin_url: str, url: str) -> None:
    name = url.split("?", 1)[0].rsplit("/", 1)[1]
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


async def test_migrations_apply_once_and_reopening_applies_nothing(database_url: str) -> None:
    url = fresh_database(database_url)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert await apply_migrations(conn) == MIGRATION_VERSIONS
            assert await apply_migrations(conn) == []
        before = await _schema_versions(url)
        assert [row["version"] for row in before] == MIGRATION_VERSIONS

        async with open_persistence(url, max_size=2) as reopened:
            async with reopened.pool.connection() as conn:
                assert await apply_migrations(conn) == []

        assert await _schema_versions(url) == before  # same rows, same applied_at
    finally:
        await _drop_database(database_url, url)


async def test_concurrent_first_starts_on_a_fresh_database(database_url: str) -> None:
    url = fresh_database(database_url)
    embeddings = HashingEmbeddings(dims=64)

    async def start_once() -> None:
        index = {"dims": 64, "embed": embeddings, "fields": ["$"]}
        async with open_persistence(url, max_size=2, index=index) as persistence:  # type: ignore[arg-type]
            await persistence.store.aput(("boot",), uuid.uuid4().hex, {"text": "started"})

    try:
        await asyncio.gather(start_once(), start_once())

        assert [row["version"] for row in await _schema_versions(url)] == MIGRATION_VERSIONS
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT count(*) FROM store WHERE prefix = 'boot'")
            assert await cur.fetchone() == (2,)
    finally:
        await _drop_database(database_url, url)


class _Draft(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    notes: NotRequired[list[str]]


async def _draft(state: _Draft) -> dict[str, Any]:
    return {"messages": [AIMessage(content="draft")], "notes": ["drafted"]}


async def _review(state: _Draft) -> dict[str, Any]:
    if state["messages"][-2].content == "fail the review":
        raise RuntimeError("the review failed")
    return {"messages": [AIMessage(content="reviewed")]}


async def _long_thread(persistence: Persistence, runs: int) -> RunnableConfig:
    """A thread with ``runs`` runs of a two-node graph, the last one failing in ``review`` (so
    its latest checkpoint has pending writes as well as blobs)."""
    builder = StateGraph(_Draft)
    builder.add_node("draft", _draft)
    builder.add_node("review", _review)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", END)
    graph = builder.compile(checkpointer=persistence.checkpointer)
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    for _ in range(runs - 1):
        await graph.ainvoke({"messages": [HumanMessage(content="go")]}, config)
    # The last run fails in review: its error is a pending write on the latest checkpoint.
    with pytest.raises(RuntimeError):
        await graph.ainvoke({"messages": [HumanMessage(content="fail the review")]}, config)
    return config


def _rows_read(plan: dict[str, Any], table: str) -> int:
    """Rows that every scan of ``table`` in an ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan returned."""
    own = 0
    if plan.get("Relation Name") == table:
        own = int(plan["Actual Rows"] * plan["Actual Loops"])
    return own + sum(_rows_read(child, table) for child in plan.get("Plans", []))


async def test_loading_a_checkpoint_reads_its_own_rows_not_the_threads_history(
    persistence: Persistence,
) -> None:
    config = await _long_thread(persistence, runs=40)
    thread_id = config["configurable"]["thread_id"]
    async with persistence.pool.connection() as conn:
        await conn.execute("ANALYZE checkpoints, checkpoint_blobs, checkpoint_writes")
        cur = await conn.execute(
            "SELECT count(*) AS n FROM checkpoint_blobs WHERE thread_id = %s", (thread_id,)
        )
        stored = await cur.fetchone()
        cur = await conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) "
            + persistence.checkpointer.SELECT_SQL
            + "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id,),
        )
        explained = await cur.fetchone()
    assert stored is not None and explained is not None
    plan = next(iter(explained.values()))[0]["Plan"]

    assert stored["n"] >= 80  # the history is there to be (mis)read
    # One probe per channel of the checkpoint (messages, notes, branch), not every blob.
    assert _rows_read(plan, "checkpoint_blobs") <= 5
    assert _rows_read(plan, "checkpoint_writes") <= 5


async def test_checkpoint_reads_match_langgraphs_own_saver(persistence: Persistence) -> None:
    config = await _long_thread(persistence, runs=3)
    langgraph_saver = AsyncPostgresSaver(
        persistence.pool,  # type: ignore[arg-type]  # a pool of dict-row connections
        serde=persistence.checkpointer.serde,
    )

    ours = await persistence.checkpointer.aget_tuple(config)
    theirs = await langgraph_saver.aget_tuple(config)
    history = [t async for t in persistence.checkpointer.alist(config)]
    their_history = [t async for t in langgraph_saver.alist(config)]

    assert ours is not None and theirs is not None
    assert ours.pending_writes  # the failed review's error
    assert ours.checkpoint["channel_values"]["messages"]  # a blob channel, loaded
    assert ours == theirs
    assert len(history) > 6
    assert history == their_history


@pytest.mark.parametrize(
    "metadata",
    [
        # orjson writes these: text beyond ASCII, nesting, floats, booleans, null
        {"team": "café ☕", "nested": {"tags": ["a", "b"], "n": 3}, "ratio": 0.1, "ok": None},
        # orjson refuses these (an integer past 64 bits, a key that is not a string) and
        # json.dumps writes them, as LangGraph's saver does
        {"big": 2**70, "by_id": {7: "seven"}},
    ],
    ids=["orjson", "json.dumps"],
)
async def test_checkpoint_metadata_is_stored_as_langgraphs_own_saver_stores_it(
    persistence: Persistence, metadata: dict[str, Any]
) -> None:
    """The run's metadata lands in every checkpoint's metadata; ours is written by orjson where
    it can be, and must read back as what LangGraph's saver (``json.dumps``) stores."""
    langgraph_saver = AsyncPostgresSaver(
        persistence.pool,  # type: ignore[arg-type]  # a pool of dict-row connections
        serde=persistence.checkpointer.serde,
    )
    stored = []
    for saver in (persistence.checkpointer, langgraph_saver):
        config: RunnableConfig = {
            "configurable": {"thread_id": str(uuid.uuid4())},
            "metadata": metadata,
        }
        graph = _builder().compile(checkpointer=saver)
        await graph.ainvoke({"messages": [HumanMessage(content="hi")]}, config)
        saved = await langgraph_saver.aget_tuple(config)
        assert saved is not None
        stored.append(saved.metadata)

    ours, theirs = stored
    assert ours == theirs
    assert ours["team" if "team" in metadata else "big"] == metadata.get("team", 2**70)


class Scores(TypedDict, total=False):
    score: float
    low: float
    high: float
    note: str
    flag: bool


async def _score(state: Scores) -> dict[str, Any]:
    return {
        "score": float("nan"),
        "low": float("-inf"),
        "high": float("inf"),
        "note": "before\x00after",
        "flag": True,
    }


async def test_values_jsonb_cannot_hold_are_checkpointed_and_come_back(
    persistence: Persistence,
) -> None:
    """NaN, infinities and NUL characters go to blobs (jsonb refuses them, and the run failed
    at its first checkpoint); LangGraph's own saver reads the same checkpoint."""
    builder = StateGraph(Scores)
    builder.add_node("score", _score)
    builder.add_edge(START, "score")
    builder.add_edge("score", END)
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    graph = builder.compile(checkpointer=persistence.checkpointer)

    await graph.ainvoke({"score": 0.5, "note": "in"}, config, durability="sync")

    langgraph_saver = AsyncPostgresSaver(
        persistence.pool,  # type: ignore[arg-type]  # a pool of dict-row connections
        serde=persistence.checkpointer.serde,
    )
    for saver in (persistence.checkpointer, langgraph_saver):
        values = (await builder.compile(checkpointer=saver).aget_state(config)).values
        assert math.isnan(values["score"])
        assert (values["low"], values["high"]) == (float("-inf"), float("inf"))
        assert values["note"] == "before\x00after"
        assert values["flag"] is True


async def test_setup_drops_the_indexes_the_primary_keys_cover(persistence: Persistence) -> None:
    await persistence.checkpointer.setup()  # again: setting up a set-up database is harmless

    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN "
            "('checkpoints', 'checkpoint_blobs', 'checkpoint_writes') ORDER BY 1"
        )
        names = [row["indexname"] for row in await cur.fetchall()]

    assert names == ["checkpoint_blobs_pkey", "checkpoint_writes_pkey", "checkpoints_pkey"]
