"""Fixtures beyond the session's: a server pair sharing one database and one Redis, and a
fresh home for the embedded PostgreSQL with the helpers that watch its postmaster.

Import the fixtures into a test module to use them (``from tests.support.fixtures import …``).
"""

from __future__ import annotations

import os
import select
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from state.embedded import EmbeddedPostgres
from tests.support.server import LiveServer, fresh_database, start_server

__all__ = [
    "assert_postgres_stopped",
    "fresh_home",
    "postmaster_pid",
    "process_exits",
    "redis_pair",
]


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


@pytest.fixture(name="home")
def fresh_home() -> Iterator[Path]:
    """A fresh STAFFGRAPH_HOME; a postmaster a failed test left running in it is stopped.

    Not under pytest's tmp_path: the embedded server runs as the unprivileged `pgserver` user
    when tests run as root, and a concurrent pytest session resets its base directory to 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="staffgraph-test-home-"))
    yield path
    if (path / "pgdata" / "postmaster.pid").exists():
        leftover = EmbeddedPostgres(path)
        leftover.start()
        leftover.stop()
    shutil.rmtree(path, ignore_errors=True)


def postmaster_pid(home: Path) -> int:
    """The pid of the embedded postmaster running on ``home``."""
    return int((home / "pgdata" / "postmaster.pid").read_text().split()[0])


def process_exits(pid: int, *, timeout: float = 10.0) -> bool:
    """Wait for ``pid`` to terminate (a pidfd turns readable then, zombie or reaped)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def assert_postgres_stopped(home: Path, pid: int) -> None:
    """The embedded server on ``home``, postmaster ``pid``, is stopped and its process gone."""
    # pg_ctl stop returns once postmaster.pid is gone; the process exits a moment later.
    assert not (home / "pgdata" / "postmaster.pid").exists()
    assert process_exits(pid)
