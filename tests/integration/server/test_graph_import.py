"""The served graphs are imported in the background: ``/ok`` first, ``/ready`` once they are in.

Importing a graph imports langchain, langgraph and the user's code: seconds before anything
could answer. The gate graph below blocks its own import on a named pipe until the test writes
to it, so the test controls exactly when the import finishes: no timing assumptions.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from langgraph_sdk import get_client

from server.graphs import assistant_id_for
from tests.support.imports import modules_loaded_by
from tests.support.server import REPO, LiveServer, free_port, fresh_database, spawn_serve

GATED_GRAPH = """
import os

# Blocks until the test opens the pipe for writing and closes it.
with open(os.environ["GRAPH_GATE"], encoding="utf-8") as gate:
    if gate.read() != "go":
        raise RuntimeError("the test asked this graph to fail its import")

from tests.support.graphs import simple as graph
"""


def gated_config(tmp_path: Path) -> tuple[Path, Path]:
    """A langgraph.json serving the gated graph, and the pipe that releases its import."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    (tmp_path / "gated.py").write_text(GATED_GRAPH, encoding="utf-8")
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps({"dependencies": [str(REPO)], "graphs": {"gated": "./gated.py:graph"}}),
        encoding="utf-8",
    )
    return config, gate


def release(gate: Path, word: str = "go") -> None:
    """Let the gated import go on (blocks until the server's import opened the pipe)."""
    with gate.open("w", encoding="utf-8") as pipe:
        pipe.write(word)


async def test_ok_answers_while_graphs_import_and_a_run_waits_for_them(
    server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    config, gate = gated_config(tmp_path)
    server = server_factory(env={"GRAPH_GATE": str(gate)}, config=config)
    client = get_client(url=server.url, timeout=60)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        # server_factory waited for /ok: it answered while the graph's import is blocked.
        ready = await http.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["graphs"] == {"ok": False, "error": "loading"}
        assistant = await client.assistants.get(assistant_id_for("gated"))
        assert assistant["graph_id"] == "gated"

        # A run sent now waits for its graph instead of failing.
        thread = await client.threads.create()
        waiting = asyncio.ensure_future(
            client.runs.wait(
                thread["thread_id"],
                "gated",
                input={"messages": [{"role": "user", "content": "hi"}]},
            )
        )
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done, "the run finished before its graph was imported"
        await asyncio.to_thread(release, gate)
        result = await waiting
        assert result["messages"][-1]["content"] == "echo: hi"

        ready = await http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["graphs"] == {"ok": True}


PROBING_GRAPH = """
import os

import psycopg

# What the database looks like when the server starts importing its graphs.
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    row = conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()
with open(os.environ["GRAPH_PROBE"], "w", encoding="utf-8") as probe:
    probe.write("migrated" if row[0] else "not migrated")

from tests.support.graphs import simple as graph
"""


async def test_graphs_import_once_start_up_is_done(
    server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    # Importing graphs beside start-up competed with it for the GIL and slowed /ok down: the
    # import starts once the app has started, so a graph module that touches the database at
    # import finds it migrated (with the import started first, the database was still empty).
    probe = tmp_path / "probe"
    (tmp_path / "probing.py").write_text(PROBING_GRAPH, encoding="utf-8")
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps({"dependencies": [str(REPO)], "graphs": {"probing": "./probing.py:graph"}}),
        encoding="utf-8",
    )
    server = server_factory(env={"GRAPH_PROBE": str(probe)}, config=config)
    client = get_client(url=server.url, timeout=60)
    thread = await client.threads.create()
    result = await client.runs.wait(
        thread["thread_id"], "probing", input={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert result["messages"][-1]["content"] == "echo: hi"
    assert probe.read_text(encoding="utf-8") == "migrated"


def test_a_graph_failing_to_import_stops_the_server_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    config, gate = gated_config(tmp_path)
    process = spawn_serve(
        config, database_url=database_url, home=tmp_path / "home", env={"GRAPH_GATE": str(gate)}
    )
    try:
        release(gate, "fail")
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("staffgraph: graph 'gated': importing "), err
    assert "RuntimeError: the test asked this graph to fail its import" in last
    assert "Traceback" not in err


def test_a_missing_graph_file_fails_the_start_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"gone": "./gone.py:graph"}}), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(free_port())]
        + ["--config", str(config)],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": fresh_database(database_url)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"staffgraph: graph 'gone': file {tmp_path / 'gone.py'} does not exist"
    ]


def test_importing_the_cli_imports_no_graph_machinery() -> None:
    # The graphs (and langchain's agent machinery they build on) are imported after /ok.
    heavy = ("graphs", "langchain.agents", "nodes.agent", "nodes.team")
    assert modules_loaded_by("import server.cli", heavy) == []
