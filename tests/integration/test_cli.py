"""``staffgraph serve`` as a user runs it: start-up errors, /ok, /info, banner, SIGTERM, restart."""

from __future__ import annotations

import functools
import json
import operator
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from state.db import open_pool, strict_serializer
from state.embedded import EmbeddedPostgres
from tests.support.fixtures import (
    assert_postgres_stopped,
    fresh_home,  # noqa: F401  (fixture `home`)
    postmaster_pid,
    process_exits,
)
from tests.support.server import (
    REPO,
    TEST_CONFIG,
    LiveServer,
    free_port,
    fresh_database,
    start_server,
)

TEST_GRAPHS = set(json.loads(TEST_CONFIG.read_text())["graphs"])
SECRET = "Zq9-cli-secret"


def _run_cli(
    *args: str, env: dict[str, str], console_script: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (it is expected to fail fast; see :func:`_startup_budget`)."""
    command = (
        [str(Path(sys.executable).with_name("staffgraph"))]
        if console_script
        else [sys.executable, "-m", "server.cli"]
    )
    return subprocess.run(
        [*command, *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=_startup_budget(),
    )


@functools.cache
def _startup_budget() -> float:
    """Seconds a failing start may take: the interpreter's own start-up here, plus 8 s.

    Importing the CLI takes ~1 s on a quiet machine and over 10 s on a loaded 2-core one; what
    the tests check is that a bad configuration is refused without waiting on anything
    (a connection timeout, a retry loop), so the budget is measured, not fixed.
    """
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import server.cli"], cwd=REPO, check=True, timeout=120)
    return time.monotonic() - started + 8.0


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_unreachable_database_fails_fast_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    budget = _startup_budget()
    started = time.monotonic()
    result = _run_cli(
        "serve",
        "--config",
        str(TEST_CONFIG),
        "--port",
        str(free_port()),
        env={
            "DATABASE_URL": f"postgresql://staff:{SECRET}@127.0.0.1:{port}/staff",
            "STAFFGRAPH_HOME": str(tmp_path),
        },
        console_script=True,
    )

    assert time.monotonic() - started < budget
    line = _one_line_error(result)
    assert f"127.0.0.1:{port}" in line
    assert "DATABASE_URL" in line  # what to check
    assert SECRET not in result.stderr + result.stdout


def test_invalid_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = _run_cli(
        "serve",
        "--config",
        str(TEST_CONFIG),
        env={
            "DATABASE_URL": f"mysql://staff:{SECRET}@db/staff",
            "STAFFGRAPH_HOME": str(tmp_path),
        },
    )

    assert result.returncode == 2
    line = _one_line_error(result)
    assert "DATABASE_URL" in line
    assert SECRET not in result.stderr + result.stdout


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "langgraph.json"
    result = _run_cli(
        "serve",
        "--config",
        str(missing),
        env={"DATABASE_URL": "", "STAFFGRAPH_HOME": str(tmp_path)},
    )

    assert result.returncode == 2
    assert str(missing) in _one_line_error(result)


def _serve_embedded(home: Path) -> LiveServer:
    # An empty DATABASE_URL counts as unset, whatever the test environment exports.
    return start_server(env={"DATABASE_URL": "", "STAFFGRAPH_HOME": str(home)})


def test_serve_on_embedded_postgres(home: Path) -> None:
    server = _serve_embedded(home)
    try:
        postmaster = postmaster_pid(home)
        ok = httpx.get(f"{server.url}/ok", timeout=10)
        info_response = httpx.get(f"{server.url}/info", timeout=10)
    finally:
        code = server.stop()

    assert ok.status_code == 200
    assert ok.json() == {"ok": True}
    assert info_response.status_code == 200
    info = info_response.json()
    assert set(info["graphs"]) == TEST_GRAPHS
    assert info["model"]["offline"] is True
    assert info["embeddings"]["dims"] > 0
    assert info["database"]["kind"] == "embedded"
    assert "password" not in info_response.text.lower()
    assert "postgresql://" not in info_response.text

    banner = server.log()
    assert f"API:     {server.url}" in banner
    assert f"Docs:    {server.url}/docs" in banner
    assert f"Console: {server.url}/ui" in banner
    assert f"https://smith.langchain.com/studio/?baseUrl={server.url}" in banner

    # SIGTERM: graceful shutdown, exit code 0, and the embedded postmaster stopped with it.
    assert code == 0, server.log()
    assert "Traceback" not in server.log()
    assert_postgres_stopped(home, postmaster)


def _with_password(url: str) -> tuple[str, str]:
    """``url`` with a password in it (trust auth ignores it) and that password."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0] if at else (parts.username or "postgres")
    netloc = f"{user or 'postgres'}:{SECRET}@{hostinfo}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), SECRET


def test_serve_on_external_database(database_url: str, tmp_path: Path) -> None:
    url, password = _with_password(fresh_database(database_url))
    server = start_server(env={"DATABASE_URL": url, "STAFFGRAPH_HOME": str(tmp_path)})
    try:
        response = httpx.get(f"{server.url}/info", timeout=10)
    finally:
        assert server.stop() == 0

    assert response.status_code == 200
    database = response.json()["database"]
    assert database["kind"] == "external"
    parts = urlsplit(url)
    expected_host = parts.hostname or parse_qs(parts.query)["host"][0]
    assert database["host"] == expected_host
    assert password not in response.text
    assert password not in server.log()
    assert not (tmp_path / "pgdata").exists()  # no embedded server was started


class Counter(TypedDict):
    notes: Annotated[list[str], operator.add]


def _note(state: Counter) -> dict[str, Any]:
    return {"notes": [f"note {len(state['notes'])}"]}


def _counter_graph(saver: AsyncPostgresSaver) -> Any:
    builder = StateGraph(Counter)
    builder.add_node("note", _note)
    builder.add_edge(START, "note")
    builder.add_edge("note", END)
    return builder.compile(checkpointer=saver)


async def _with_saver(home: Path, action: Any) -> Any:
    """Run ``action(saver)`` on the embedded database of ``home`` through a handle of our own."""
    handle = EmbeddedPostgres(home)
    url = handle.start()
    try:
        pool = await open_pool(url, min_size=1, max_size=2, timeout=5.0)
        try:
            saver = AsyncPostgresSaver(pool, serde=strict_serializer())  # type: ignore[arg-type]
            return await action(saver)
        finally:
            await pool.close()
    finally:
        handle.stop()


async def test_restart_finds_checkpoint_written_before(home: Path) -> None:
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}

    async def write(saver: AsyncPostgresSaver) -> dict[str, Any]:
        return await _counter_graph(saver).ainvoke({"notes": ["before restart"]}, config)

    async def read(saver: AsyncPostgresSaver) -> dict[str, Any]:
        return (await _counter_graph(saver).aget_state(config)).values

    first = _serve_embedded(home)
    try:
        first_postmaster = postmaster_pid(home)
        written = await _with_saver(home, write)
        assert httpx.get(f"{first.url}/ok", timeout=10).status_code == 200  # still serving
    finally:
        assert first.stop() == 0, first.log()
    assert process_exits(first_postmaster)

    second = _serve_embedded(home)
    try:
        assert postmaster_pid(home) != first_postmaster
        assert await _with_saver(home, read) == written == {"notes": ["before restart", "note 1"]}
        assert httpx.get(f"{second.url}/ok", timeout=10).status_code == 200
    finally:
        assert second.stop() == 0, second.log()
    assert not (home / "pgdata" / "postmaster.pid").exists()


def test_serve_refuses_a_process_count_out_of_range() -> None:
    for value in ("0", "300", "some"):
        done = subprocess.run(
            [sys.executable, "-m", "server.cli", "serve", "--processes", value],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "--processes" in done.stderr and "Traceback" not in done.stderr
