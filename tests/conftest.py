"""Session-wide test infrastructure: a real Postgres, a real Redis, and clean state per test.

- Postgres: ``DATABASE_URL`` when set, else one embedded PostgreSQL 18 + pgvector per session.
- Redis: ``REDIS_URL`` when set, else a ``redis-server`` on a unix socket started for the session.
- ``persistence``: LangGraph's saver and store plus our tables on the shared pool, emptied before
  each test that uses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from state.db import Persistence, open_persistence
from state.embedded import EmbeddedPostgres

pytest_plugins = [
    "tests.support.openai_stub",
    "tests.support.server",
    "tests.support.webhook_receiver",
]

# Tests never reach a real provider or LangSmith, whatever the developer's shell exports.
for _var in ("OPENAI_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "MODEL", "EMBEDDINGS"):
    os.environ.pop(_var, None)
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"
os.environ["LANGGRAPH_STRICT_MSGPACK"] = "true"
# Each test server is one process (`serve` defaults to one per core); tests of several
# processes ask for them.
os.environ["STAFFGRAPH_PROCESSES"] = "1"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a Postgres with pgvector for the whole session."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    home = Path(tempfile.mkdtemp(prefix="staffgraph-test-pg-"))
    embedded = EmbeddedPostgres(home)
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()
        shutil.rmtree(home, ignore_errors=True)


# Tables whose rows tests create; schema and migrations stay.
_DATA_TABLES = (
    "tool_effects",
    "tool_effect_attempts",
    "runs",
    "threads",
    "assistant_versions",
    "assistants",
    "checkpoint_writes",
    "checkpoint_blobs",
    "checkpoints",
    "store_vectors",
    "store",
)


async def truncate_all(persistence: Persistence) -> None:
    """Empty every data table (used between tests)."""
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        present = {row["tablename"] for row in await cur.fetchall()}
        tables = [t for t in _DATA_TABLES if t in present]
        if tables:
            await conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


@pytest.fixture
async def persistence(database_url: str) -> AsyncIterator[Persistence]:
    """Saver, store and pool on the session database, with every data table emptied first."""
    from nodes.embeddings import HashingEmbeddings

    embeddings = HashingEmbeddings(dims=384)
    async with open_persistence(
        database_url, max_size=8, index={"dims": 384, "embed": embeddings, "fields": ["$"]}
    ) as p:
        await truncate_all(p)
        yield p


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: ``REDIS_URL`` or a ``redis-server`` on a unix socket for the session."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed: run `make test` (it installs it) or set REDIS_URL"
        )
    workdir = Path(tempfile.mkdtemp(prefix="staffgraph-test-redis-"))
    sock = workdir / "redis.sock"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_redis(sock, proc)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_redis(sock: Path, proc: subprocess.Popen[bytes]) -> None:
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        if sock.exists():
            try:
                redis.Redis(unix_socket_path=str(sock)).ping()
                return
            except redis.ConnectionError:
                pass
        time.sleep(0.02)  # polling a socket file that has no event to await
    raise RuntimeError("redis-server did not open its socket within 10 s")
