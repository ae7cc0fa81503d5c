"""Processes the fault bench starts and breaks: staffgraph servers and workers, an embedded
Postgres it can stop, a redis-server it can kill. Only the product and the system are used."""

from __future__ import annotations

import collections
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis
from psycopg import sql

from bench._support import UNREACHED_LIMITS
from state.embedded import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).with_name("fault_langgraph.json")
STEPS = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A ``staffgraph serve`` / ``staffgraph worker`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(env: dict[str, str], *, command: str = "serve", args: tuple[str, ...] = ()) -> Server:
    """Start a server process on a free port and wait for ``/ok``."""
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="fault-bench-", suffix=".log")[1])
    full_env = {
        **os.environ,
        "STAFFGRAPH_HOME": tempfile.mkdtemp(prefix="fault-bench-home-"),
        "EMBEDDINGS": "hashing",
        "STAFFGRAPH_LOG_LEVEL": "warning",
        # One process per server: the scenarios kill and restart "the server" by its pid.
        "STAFFGRAPH_PROCESSES": "1",
        **UNREACHED_LIMITS,
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", command, "--port", str(port)]
            + ["--config", str(CONFIG), *args],
            cwd=REPO,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/ok", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("server did not start")


class Postgres:
    """An embedded Postgres that can be stopped and started again."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="fault-bench-pg-"))
        self.server = EmbeddedPostgres(self.home)
        self.url = self.server.start()
        self._options = ""

    def database(self) -> str:
        """A fresh database on this server."""
        name = f"fault_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))

    def stop(self) -> None:
        opts = (self.server.pgdata / "postmaster.opts").read_text()
        self._options = " ".join(shlex.quote(a) for a in shlex.split(opts)[3:])
        self.server.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self.server.pg_ctl("start", "-o", self._options, "-l", str(self.server.pgdata / "log"))

    def close(self) -> None:
        if not (self.server.pgdata / "postmaster.pid").exists():
            self.start()
        self.server.stop()
        shutil.rmtree(self.home, ignore_errors=True)


class Redis:
    """A redis-server on a unix socket that can be killed and started again."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fault-bench-redis-"))
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for _ in range(500):
            try:
                redis.Redis(unix_socket_path=str(self.socket)).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        self.socket.unlink(missing_ok=True)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Effects:
    """The fault graph's side-effect files (see ``bench/fault_graph.py``)."""

    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fault-effects-")))

    def __post_init__(self) -> None:
        self.path.chmod(0o777)

    def lines(self, name: str) -> list[str]:
        file = self.path / name
        return file.read_text().splitlines() if file.exists() else []

    def duplicates(self, name: str) -> int:
        return sum(n - 1 for n in collections.Counter(self.lines(name)).values())

    def threads_started(self) -> int:
        return len({line.split()[0] for line in self.lines("plain.log")})


def run_rows(database_url: str) -> list[dict[str, object]]:
    """Status, attempt and lease owner of every run."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT run_id::text, thread_id::text, status, attempt, lease_owner FROM runs"
        ).fetchall()
    keys = ("run_id", "thread_id", "status", "attempt", "lease_owner")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def busy_threads(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM threads WHERE status = 'busy'").fetchone()
    return int(row[0]) if row else 0


def unknown_effects(database_url: str) -> set[str]:
    """``<thread> <step>`` of ledgered calls killed mid-call (recorded as effect unknown)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT thread_id::text, tool_call_id FROM tool_effects "
            "WHERE result -> 'v' ? '__effect_unknown__'"
        ).fetchall()
    return {f"{thread_id} {call_id}" for thread_id, call_id in rows}
