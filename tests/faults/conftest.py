"""What the fault tests break and watch: their own Postgres and Redis, effect files, the DB.

Each fault test gets services of its own (an embedded Postgres it may stop, a redis-server it
may kill), so breaking them never disturbs the rest of the session.
"""

from __future__ import annotations

import collections
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from bench.fault_env import busy_threads, run_rows, unknown_effects  # noqa: F401  (re-exported to the fault tests)
from state.embedded import EmbeddedPostgres
from tests.support.fixtures import fresh_home  # noqa: F401  (fixture)

__all__ = ["unknown_effects"]  # shared with the fault bench

REPO = Path(__file__).resolve().parents[2]
FAULT_CONFIG = REPO / "bench" / "fault_langgraph.json"
STEPS = 5

FAST_LEASES = {"STAFFGRAPH_LEASE_SECONDS": "4", "STAFFGRAPH_HEARTBEAT_SECONDS": "1"}
"""Short leases, so a crashed worker's runs are taken over within seconds."""


@dataclass
class Effects:
    """The side-effect files the fault graph writes (see ``bench/fault_graph.py``)."""

    path: Path

    def lines(self, name: str) -> list[str]:
        file = self.path / name
        return file.read_text().splitlines() if file.exists() else []

    def duplicates(self, name: str) -> int:
        """Lines beyond the first of each: effects made more than once."""
        counts = collections.Counter(self.lines(name))
        return sum(n - 1 for n in counts.values())

    def expected(self, thread_ids: list[str]) -> set[str]:
        return {f"{tid} s{i}" for tid in thread_ids for i in range(1, STEPS + 1)}


@pytest.fixture
def effects() -> Iterator[Effects]:
    path = Path(tempfile.mkdtemp(prefix="staffgraph-effects-"))
    path.chmod(0o777)
    yield Effects(path)
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class ControlledPostgres:
    """An embedded Postgres the test may stop and start."""

    server: EmbeddedPostgres
    url: str
    _options: str = ""

    def stop(self) -> None:
        opts = (self.server.pgdata / "postmaster.opts").read_text()
        self._options = " ".join(shlex.quote(a) for a in shlex.split(opts)[3:])  # after -D dir
        self.server.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self.server.pg_ctl("start", "-o", self._options, "-l", str(self.server.pgdata / "log"))

    def restart(self) -> None:
        self.server.pg_ctl("restart", "-m", "fast", "-l", str(self.server.pgdata / "log"))


@pytest.fixture
def own_postgres(home: Path) -> Iterator[ControlledPostgres]:
    server = EmbeddedPostgres(home)
    controlled = ControlledPostgres(server, server.start())
    try:
        yield controlled
    finally:
        if not (server.pgdata / "postmaster.pid").exists():
            controlled.start()  # a test that failed while it was down: up again to stop it
        server.stop()


class ControlledRedis:
    """A redis-server on a unix socket that the test may kill and start again."""

    def __init__(self, workdir: Path) -> None:
        self.socket = workdir / "redis.sock"
        self.workdir = workdir
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                binary,
                *("--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(unix_socket_path=str(self.socket)).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)  # a socket file appearing has no event to await
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        self.socket.unlink(missing_ok=True)


@pytest.fixture
def own_redis() -> Iterator[ControlledRedis]:
    workdir = Path(tempfile.mkdtemp(prefix="staffgraph-fault-redis-"))
    controlled = ControlledRedis(workdir)
    controlled.start()
    yield controlled
    controlled.kill()
    shutil.rmtree(workdir, ignore_errors=True)
