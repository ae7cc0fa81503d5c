"""Extra live servers for the server tests: a pair sharing one database and one Redis.

Import the fixtures into a test module to use them (``from tests.support.fixtures import …``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import LiveServer, fresh_database, start_server

__all__ = ["redis_pair"]


@pytest.fixture(scope="session")
def redis_pair(database_url: str, redis_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two server processes on the same fresh database and the same Redis (Redis broker)."""
    url = fresh_database(database_url)
    env = {"DATABASE_URL": url, "REDIS_URL": redis_url}
    first = start_server(env=env)
    try:
        second = start_server(env=env)
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        second.stop()
        first.stop()
