"""Postgres pool, our SQL migrations, and LangGraph's saver and store on that pool.

One :class:`psycopg_pool.AsyncConnectionPool` serves everything: our own tables, LangGraph's
``AsyncPostgresSaver`` (checkpoints; as :class:`~state.checkpoints.FencedPostgresSaver`, fenced
by the run's lease) and ``AsyncPostgresStore`` (long-term memory with pgvector).

The store's vector index is HNSW (cosine) built with :data:`HNSW_M` and
:data:`HNSW_EF_CONSTRUCTION`, searched with :data:`HNSW_EF_SEARCH`, which every pool
connection sets when it is opened.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.base import IndexConfig, TTLConfig
from langgraph.store.postgres import AsyncPostgresStore
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from state.checkpoints import FencedPostgresSaver
from state.json_columns import register_json_loads
from state.pool import OutageAwarePool
from state.schema import apply_migrations
from state.settings import POOL_MAX_SIZE, redact_url
from state.vectors import register_vector_dumper

__all__ = [
    "HNSW_EF_CONSTRUCTION",
    "HNSW_EF_SEARCH",
    "HNSW_M",
    "DatabaseUnavailable",
    "Persistence",
    "apply_migrations",
    "check_connection",
    "configure_connection",
    "describe_database",
    "open_persistence",
    "open_pool",
    "strict_serializer",
]

log = logging.getLogger(__name__)

# Any constant works: it only has to be the same in every staffgraph process.
_SETUP_LOCK_KEY = 0x5747_4650  # "SGFP"
# An advisory lock on one bigint shows in pg_locks as classid (its high 32 bits), objid (the
# low 32) and objsubid 1.
_TRY_SETUP_LOCK = """
SELECT pg_try_advisory_lock(%(key)s::bigint) AS locked,
       EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.classid::bigint = %(key)s::bigint >> 32
                 AND l.objid::bigint = %(key)s::bigint & 4294967295
                 AND l.objsubid = 1 AND a.state = 'active') AS holder_busy
"""

# Chosen with bench/memory_bench.py at 100k items (384-dim vectors; targets: search p95 <= 20
# ms, recall@10 >= 0.95 against exact search). pgvector's defaults (m=16, ef_construction=64)
# missed the recall target at ef_search 40, 100 and 200 (0.76-0.92). m=32, ef_construction=128
# reaches it from ef_search=100 (0.95, p95 about 11 ms on 2 cores), with room under 20 ms that
# ef_search=200 does not leave (p95 at the limit); 40 misses recall (0.88). The index is built
# with m and ef_construction; ef_search is a session setting, so every pool connection sets it.
HNSW_M = 32
"""HNSW links per node (pgvector default 16)."""
HNSW_EF_CONSTRUCTION = 128
"""HNSW candidate list while building (pgvector default 64)."""
HNSW_EF_SEARCH = 100
"""HNSW candidate list while searching (pgvector default 40); also bounds the top-k a search
can return from the index."""
_VECTOR_INDEX = "store_vectors_embedding_idx"  # the name LangGraph's store gives its index


class DatabaseUnavailable(RuntimeError):
    """Postgres cannot be reached; the message names host and port, never the password."""


def describe_database(url: str, *, embedded: bool) -> dict[str, Any]:
    """What ``/info`` shows about the database: kind and host, never credentials."""
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a multi-host libpq URL (h1:5432,h2:5433): show the list as written
        host, port = _host_list(url), None
    if not host:
        host = _query_host(parts.query) or "unix socket"
    return {
        "kind": "embedded" if embedded else "external",
        "host": host,
        "port": port,
        "database": parts.path.lstrip("/") or None,
    }


def _host_list(url: str) -> str:
    """The host part of ``url`` as written, without user info."""
    return urlsplit(url).netloc.rpartition("@")[2]


def _query_host(query: str) -> str | None:
    """``host`` from a libpq URL's query (``?host=/run/postgresql``: a socket directory)."""
    values = parse_qs(query).get("host")
    return values[0] if values else None


def _where(url: str) -> str:
    hosts = _host_list(url) or _query_host(urlsplit(url).query) or "localhost"
    if "," in hosts or ":" in hosts.rpartition("]")[2]:  # a host list, or a port given
        return hosts
    return f"{hosts}:5432"


def _reason(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if not text:
        return type(exc).__name__
    # libpq: 'connection to server at "h", port 1 failed: Connection refused Is the server…'
    return text.rsplit(" failed: ", 1)[-1]


async def check_connection(url: str, *, timeout: float) -> None:
    """Open and close one connection, turning failures into a one-line :class:`DatabaseUnavailable`.

    Args:
        url: libpq URL.
        timeout: seconds before giving up.
    """
    try:
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(url, connect_timeout=max(1, int(timeout))),
            timeout=timeout + 1,
        )
    except (psycopg.OperationalError, TimeoutError, OSError) as exc:
        reason = _reason(exc)
        # libpq messages can echo the connection string; keep only what cannot hold a secret.
        reason = reason.replace(url, redact_url(url))
        raise DatabaseUnavailable(
            f"cannot connect to Postgres at {_where(url)} ({redact_url(url)}): {reason}. "
            "Check that the server is running and DATABASE_URL is right, "
            "or unset DATABASE_URL to use the embedded server."
        ) from None
    await conn.close()


async def configure_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set up every pool connection: ``hnsw.ef_search`` = :data:`HNSW_EF_SEARCH`,
    :class:`~state.vectors.Vector` parameters sent as pgvector literals, and JSON columns read
    with orjson (:mod:`state.json_columns`).

    Postgres accepts the setting before pgvector is loaded in the session (as a placeholder
    that pgvector checks when it loads), so it works on a database still being set up.
    """
    register_vector_dumper(conn)
    register_json_loads(conn)
    await conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(HNSW_EF_SEARCH)))
    if not conn.autocommit:
        # The pool only takes back idle connections; a SET outside autocommit opened a
        # transaction, and committing it keeps the setting for the session.
        await conn.commit()


async def open_pool(
    url: str,
    *,
    min_size: int,
    max_size: int,
    timeout: float,
    checkout_timeout: float = 30.0,
    unreachable_after: float = 30.0,
) -> AsyncConnectionPool:
    """Open the shared pool (autocommit, dict rows: what LangGraph's saver and store need).

    Each new connection is configured by :func:`configure_connection`, and every connection is
    checked as it is handed out: after a Postgres restart the pool's connections are all dead,
    and a check costs one round trip where a dead connection would fail the caller's query.

    Args:
        url: libpq URL.
        min_size: connections kept open.
        max_size: most connections open.
        timeout: seconds to wait for Postgres at start.
        checkout_timeout: seconds a caller waits for a connection while every one is busy.
        unreachable_after: seconds without a connection after which Postgres is probed; when
            it is unreachable the caller gets ``PoolTimeout`` then (the server answers 503
            with ``Retry-After``, workers retry with backoff). See :mod:`state.pool`.

    An open that fails or is cancelled closes the pool again.
    """
    await check_connection(url, timeout=timeout)
    pool: AsyncConnectionPool = OutageAwarePool(
        url,
        unreachable_after=unreachable_after,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=configure_connection,
        timeout=max(checkout_timeout, unreachable_after),
        name="staffgraph",
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except BaseException:
        # Cancelled by a shutdown during the start, or timed out: the pool's workers and
        # the connections made so far must not outlive it.
        try:
            await pool.close()
        except Exception:  # the error being raised matters more
            log.warning("closing a pool whose open failed failed too", exc_info=True)
        raise
    return pool


async def _acquire_setup_lock(conn: psycopg.AsyncConnection[Any], *, timeout: float) -> None:
    """Take the session-level setup lock so concurrent starters never race on CREATE TABLE.

    Polls ``pg_try_advisory_lock`` rather than blocking in ``pg_advisory_lock``: a session blocked
    inside a statement holds a snapshot, and a ``CREATE INDEX CONCURRENTLY`` in the lock holder
    (LangGraph's, or a migration's) would wait for that snapshot forever.

    Waits as long as the holder is running statements, since a migration's index build on a big
    table takes as long as it takes, and gives up ``timeout`` seconds after the holder was last
    seen running one (a holder whose process hangs). The holder's activity is read from
    ``pg_stat_activity``, which shows another role's sessions only to a superuser or a member of
    ``pg_read_all_stats``: where it cannot be read, the wait is ``timeout`` seconds in all.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.02
    while True:
        cur = await conn.cursor(row_factory=tuple_row).execute(
            _TRY_SETUP_LOCK, {"key": _SETUP_LOCK_KEY}
        )
        locked, holder_busy = await cur.fetchone() or (False, False)
        if locked:
            return
        if holder_busy:
            deadline = loop.time() + timeout
        elif loop.time() > deadline:
            raise DatabaseUnavailable(
                "another staffgraph process has held the schema setup lock without running a "
                f"statement for over {timeout:.0f}s"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


def strict_serializer() -> JsonPlusSerializer:
    """Checkpoint serializer that never pickles and only revives allow-listed msgpack types."""
    return JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


async def _check_vector_index(conn: psycopg.AsyncConnection[Any], index: Any) -> None:
    """Warn when the existing HNSW index was built with other settings than configured.

    LangGraph's store creates the index once (a versioned migration), so a database set up
    before the settings changed keeps its old index until an operator rebuilds it.
    """
    wanted = index.get("ann_index_config") or {}
    if wanted.get("kind", "hnsw") != "hnsw":
        return
    cur = await conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = %s AND schemaname = current_schema()",
        (_VECTOR_INDEX,),
    )
    row = await cur.fetchone()
    if row is None:
        return
    indexdef = row["indexdef"] if isinstance(row, dict) else row[0]
    built: dict[str, int] = {}
    for name, default in (("m", 16), ("ef_construction", 64)):  # pgvector's defaults
        match = re.search(rf"\b{name}\s*=\s*'?(\d+)", indexdef)
        built[name] = int(match.group(1)) if match else default
    expected = {name: int(wanted.get(name, built[name])) for name in built}
    if built != expected:
        log.warning(
            "the store's vector index %s was built with m=%d, ef_construction=%d but "
            "m=%d, ef_construction=%d are configured; search recall stays lower until it is "
            "rebuilt: DROP INDEX %s; then CREATE INDEX CONCURRENTLY with WITH (m = %d, "
            "ef_construction = %d) as before",
            _VECTOR_INDEX,
            built["m"],
            built["ef_construction"],
            expected["m"],
            expected["ef_construction"],
            _VECTOR_INDEX,
            expected["m"],
            expected["ef_construction"],
        )


@dataclass(frozen=True)
class Persistence:
    """What the lifespan opens once and hands to every request and worker."""

    pool: AsyncConnectionPool
    checkpointer: AsyncPostgresSaver
    store: AsyncPostgresStore


@asynccontextmanager
async def open_persistence(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = POOL_MAX_SIZE,
    timeout: float = 5.0,
    checkout_timeout: float = 30.0,
    unreachable_after: float = 30.0,
    index: IndexConfig | None = None,
    ttl: TTLConfig | None = None,
) -> AsyncIterator[Persistence]:
    """Open the pool, run migrations and LangGraph's own setup, and yield :class:`Persistence`.

    Closes in reverse order: the store's TTL sweeper, then the pool.

    Args:
        url: libpq URL of a Postgres ≥ 15 with the ``vector`` extension available.
        min_size: connections kept open.
        max_size: most connections open.
        timeout: seconds to wait for Postgres.
        checkout_timeout: seconds a caller waits for a connection while all are busy.
        unreachable_after: seconds without a connection before Postgres counts as unreachable
            (see :func:`open_pool`).
        index: the store's vector index (dims, embed, fields); ``None`` disables vector search.
            It is an HNSW index with :data:`HNSW_M` and :data:`HNSW_EF_CONSTRUCTION` unless
            ``index`` carries its own ``ann_index_config``.
        ttl: the store's TTL policy (e.g. from ``store.ttl`` in langgraph.json).

    Raises:
        DatabaseUnavailable: Postgres cannot be reached.
    """
    pool = await open_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        checkout_timeout=checkout_timeout,
        unreachable_after=unreachable_after,
    )
    try:
        checkpointer = FencedPostgresSaver(pool, serde=strict_serializer())  # type: ignore[arg-type]
        store_kwargs: dict[str, Any] = {}
        if index is not None:
            store_kwargs["index"] = {
                "ann_index_config": {
                    "kind": "hnsw",
                    "vector_type": "vector",
                    "m": HNSW_M,
                    "ef_construction": HNSW_EF_CONSTRUCTION,
                },
                "distance_type": "cosine",
                **index,
            }
        if ttl is not None:
            store_kwargs["ttl"] = ttl
        store = AsyncPostgresStore(pool, **store_kwargs)  # type: ignore[arg-type]
        async with pool.connection() as conn:
            await _acquire_setup_lock(conn, timeout=max(30.0, timeout))
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                await apply_migrations(conn)
                await checkpointer.setup()
                await store.setup()
                if index is not None:
                    await _check_vector_index(conn, store_kwargs["index"])
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))
        if ttl is not None:
            await store.start_ttl_sweeper()
        try:
            yield Persistence(pool=pool, checkpointer=checkpointer, store=store)
        finally:
            if ttl is not None:
                await store.stop_ttl_sweeper()
    finally:
        await pool.close()
