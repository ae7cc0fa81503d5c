"""Live ``staffgraph serve`` processes for integration tests.

Each server runs as a real subprocess on a free port with its own fresh database on the
session's Postgres, so tests drive it over HTTP exactly as a user would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
TEST_CONFIG = Path(__file__).with_name("langgraph.json")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_database(database_url: str) -> str:
    """Create an empty database on the same server and return its URL."""
    name = f"sg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(database_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@dataclass
class LiveServer:
    """A running server process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """Terminate the process (SIGTERM, graceful) and return its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def spawn_serve(
    config: Path, *, database_url: str, home: Path, env: dict[str, str], port: int | None = None
) -> subprocess.Popen[str]:
    """``staffgraph serve`` on a fresh database and the hashing embedder, its output piped as
    text; for tests that watch a start-up (see :func:`start_server` for one that serves)."""
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port or free_port())]
        + ["--config", str(config)],
        cwd=REPO,
        env={
            **os.environ,
            "DATABASE_URL": fresh_database(database_url),
            "STAFFGRAPH_HOME": str(home),
            "EMBEDDINGS": "hashing",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_server(
    *,
    env: dict[str, str],
    config: Path = TEST_CONFIG,
    args: tuple[str, ...] = (),
    timeout: float = 60.0,
    command: str = "serve",
) -> LiveServer:
    """Start ``staffgraph serve`` and wait until ``/ok`` answers and the app behind it is up.

    Raises:
        RuntimeError: the process exited or did not answer in time; the message holds its log.
    """
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="staffgraph-server-", suffix=".log")[1])
    full_env = {
        **os.environ,
        "STAFFGRAPH_HOME": tempfile.mkdtemp(prefix="staffgraph-home-"),
        "PYTHONUNBUFFERED": "1",
        # Servers embed with the hashing embedder unless a test asks for another: loading
        # MiniLM in every server process would cost seconds of the 2-core budget each.
        "EMBEDDINGS": "hashing",
        # Limits are tested where they are the subject (test_limits.py); elsewhere one client
        # drives a whole module through one server and chooses models freely.
        "STAFFGRAPH_RATE_LIMIT_PER_MINUTE": "0",
        "STAFFGRAPH_MAX_CONCURRENT_RUNS": "0",
        "STAFFGRAPH_ALLOWED_MODELS": "*",
        **env,
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server.cli",
                command,
                "--port",
                str(port),
                "--config",
                str(config),
                *args,
            ],
            cwd=REPO,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path, env)
    deadline = time.monotonic() + timeout
    try:
        wait_for_ok(process, server.url, timeout)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{exc}:\n{server.log()}") from None
    # /ok answers while the app still starts behind it; any other request is held until the
    # app is up (a 503 only when it could not start). /metrics: served by workers too, and
    # never rate-limited (a limits test counts every request of its address).
    left = max(deadline - time.monotonic(), 1.0)
    if httpx.get(f"{server.url}/metrics", timeout=left).status_code != 503:
        return server
    server.stop()
    raise RuntimeError(f"the server's app did not start within {timeout}s:\n{server.log()}")


def wait_for_ready(url: str, timeout: float = 60.0) -> None:
    """Poll ``url``'s ``/ready`` until it answers 200: the app is up before its graphs finish
    importing in the background, and ``/ready`` answers 503 until they have.

    Raises:
        RuntimeError: ``/ready`` did not answer 200 within ``timeout`` seconds.
    """
    _poll(None, url, "/ready", timeout)


def wait_for_ok(process: subprocess.Popen[Any], url: str, timeout: float) -> None:
    """Poll ``url``'s ``/ok`` until it answers 200.

    Raises:
        RuntimeError: the process exited, or ``/ok`` did not answer within ``timeout`` seconds.
    """
    _poll(process, url, "/ok", timeout)


def _poll(process: subprocess.Popen[Any] | None, url: str, path: str, timeout: float) -> None:
    """Ask ``url + path`` until it answers 200 (failing early if ``process`` exits)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if client.get(f"{url}{path}").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # the process gives no readiness event other than answering
    raise RuntimeError(f"server did not answer {path} within {timeout}s")


@pytest.fixture
def server_factory(database_url: str) -> Iterator[object]:
    """Start servers on demand (``server_factory(env=..., config=...)``); all stopped after."""
    started: list[LiveServer] = []

    def factory(
        *,
        env: dict[str, str] | None = None,
        config: Path = TEST_CONFIG,
        fresh_db: bool = True,
        args: tuple[str, ...] = (),
        command: str = "serve",
    ) -> LiveServer:
        merged = {"DATABASE_URL": fresh_database(database_url) if fresh_db else database_url}
        merged.update(env or {})
        server = start_server(env=merged, config=config, args=args, command=command)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def live_server(database_url: str) -> Iterator[LiveServer]:
    """One server for the session, on its own database, with the test graphs."""
    server = start_server(env={"DATABASE_URL": fresh_database(database_url)})
    try:
        yield server
    finally:
        server.stop()
