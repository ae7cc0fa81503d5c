"""``staffgraph serve`` answers ``/ok`` first and starts its app behind the open port.

The app's start (LangGraph, the API, Postgres, the workers) is seconds of CPU. The port opens
before it: ``/ok`` answers, ``/ready`` says 503 with a ``startup`` check, and every other
request is held until the app is up. The served config names a custom auth module that blocks
its own import (part of building the app) on a named pipe until the test writes to it, so the
test decides when the start finishes, or fails, without timing assumptions.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.integration.server.test_graph_import import release
from tests.support.imports import modules_loaded_by
from tests.support.server import REPO, free_port, spawn_serve, wait_for_ok

GATED_AUTH = """
import os

from langgraph_sdk import Auth

# Blocks until the test opens the pipe for writing and closes it. Processes reading the pipe
# at once share what the writers send: one that found it empty waits for the next writer, and
# one may read two writers' words ("gogo").
word = ""
while not word:
    with open(os.environ["AUTH_GATE"], encoding="utf-8") as gate:
        word = gate.read()
if not word.startswith("go"):
    raise RuntimeError("the test asked this auth module to fail its import")

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> str:
    return "tester"
"""


@contextmanager
def _gated_server(
    database_url: str, tmp_path: Path, *, processes: int = 1
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """A ``staffgraph serve`` (``processes`` of them on one port) whose app start waits on the
    returned pipe; killed afterwards."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    (tmp_path / "gated_auth.py").write_text(GATED_AUTH, encoding="utf-8")
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "dependencies": [str(REPO)],
                "graphs": {"simple": str(REPO / "tests/support/graphs.py") + ":simple"},
                "auth": {"path": "./gated_auth.py:auth"},
            }
        ),
        encoding="utf-8",
    )
    port = free_port()
    process = spawn_serve(
        config,
        database_url=database_url,
        home=tmp_path / "home",
        env={"AUTH_GATE": str(gate), "STAFFGRAPH_PROCESSES": str(processes)},
        port=port,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ok(process, url, 60)
        yield process, url, gate
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _held(url: str) -> socket.socket:
    """``GET /info`` sent now on a connection of its own; it is held until the app is up."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(b"GET /info HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    # The request's bytes were all sent before this /ok: once /ok came back, the server has
    # accepted and read the held request too.
    assert httpx.get(f"{url}/ok", timeout=10).status_code == 200
    return sock


def _line_with(process: subprocess.Popen[str], text: str) -> str:
    """The first line of the process's output that holds ``text`` (waits for it)."""
    assert process.stdout is not None
    for line in process.stdout:
        if text in line:
            return line
    raise AssertionError(f"the process ended without printing {text!r}")


def _answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], object]:
    """The held request's status, headers and JSON body (waits for it)."""
    with sock:
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_ok_answers_while_the_app_starts_and_other_requests_wait_for_it(
    database_url: str, tmp_path: Path
) -> None:
    with _gated_server(database_url, tmp_path) as (process, url, gate):
        early_ok = httpx.get(f"{url}/ok", timeout=10)
        assert early_ok.json() == {"ok": True}
        assert "x-request-id" not in early_ok.headers  # not the app's middleware yet
        ready = httpx.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "unavailable",
            "checks": {"startup": {"ok": False, "error": "starting"}},
        }
        held = _held(url)
        assert not _answered(held)  # the app cannot be up: its auth module is still importing
        release(gate)
        status, _, body = _answer(held)
        assert status == 200, body
        assert isinstance(body, dict) and body["graphs"] == ["simple"]
        # From now on the app itself answers, /ok included.
        assert "x-request-id" in httpx.get(f"{url}/ok", timeout=10).headers
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "serving 1 graphs: simple" in out  # the banner comes once the app is up
    assert "Traceback" not in err


def test_a_start_failing_behind_the_open_port_exits_2_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    with _gated_server(database_url, tmp_path) as (process, url, gate):
        held = _held(url)
        release(gate, "fail")
        status, _, body = _answer(held)
        out, err = process.communicate(timeout=60)
    assert (status, body) == (503, {"detail": "the server could not start"})
    assert process.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("staffgraph: auth.path: importing "), err
    assert "RuntimeError: the test asked this auth module to fail its import" in lines[0]
    assert "serving" not in out  # no banner: the app never came up


def test_sigterm_while_starting_answers_held_requests_and_exits_cleanly(
    database_url: str, tmp_path: Path
) -> None:
    with _gated_server(database_url, tmp_path) as (process, url, gate):
        held = _held(url)
        process.send_signal(signal.SIGTERM)
        status, headers, body = _answer(held)  # answered while the start is still stuck
        assert process.poll() is None  # waiting for the start to return, to release it
        release(gate)
        out, err = process.communicate(timeout=60)
    assert (status, body) == (503, {"detail": "the server is still starting; retry shortly"})
    assert headers["retry-after"] == "1"
    assert process.returncode == 0, err
    assert "serving" not in out
    assert "Traceback" not in err


def test_importing_the_cli_imports_neither_langgraph_nor_the_api() -> None:
    # What runs before the port opens; everything heavy is imported behind it.
    heavy = ("langgraph", "langchain_core", "fastapi", "psycopg", "server.app", "server.auth")
    assert modules_loaded_by("import server.cli", heavy) == []


@contextmanager
def _opening_the_gate(gate: Path, word: str) -> Iterator[None]:
    """Write ``word`` to every reader that opens ``gate`` (each server process imports the
    gated module once) until the block ends; then let the last write go and stop."""
    done = threading.Event()

    def open_for_each_reader() -> None:
        while not done.is_set():
            try:
                release(gate, word)  # blocks until a process opens the pipe to read
            except BrokenPipeError:  # that reader left before the word was written
                continue

    writer = threading.Thread(target=open_for_each_reader, daemon=True)
    writer.start()
    try:
        yield
    finally:
        done.set()
        reader = os.open(gate, os.O_RDONLY | os.O_NONBLOCK)  # completes a pending release
        writer.join(timeout=10)
        os.close(reader)
        assert not writer.is_alive()


def test_several_processes_answer_ok_before_the_app_is_imported_and_print_one_banner(
    database_url: str, tmp_path: Path
) -> None:
    # The parent of `--processes 2` imports neither the app nor the custom auth module: its
    # children answer /ok while that import is still blocked, and start the app behind it.
    with _gated_server(database_url, tmp_path, processes=2) as (process, url, gate):
        held = _held(url)
        assert not _answered(held)
        with _opening_the_gate(gate, "go"):
            status, _, body = _answer(held)
            assert status == 200, body
            banner = _line_with(process, "serving")  # the lead's, once its app is up
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert banner == "staffgraph serving 1 graphs in 2 processes: simple\n"
    assert "serving" not in out  # the other process printed none
    assert "Traceback" not in err


def test_several_processes_failing_to_start_exit_2_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    with _gated_server(database_url, tmp_path, processes=2) as (process, url, gate):
        with _opening_the_gate(gate, "fail"):
            out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # two processes failed alike: the parent says it once
    assert lines[0].startswith("staffgraph: auth.path: importing "), err
    assert "RuntimeError: the test asked this auth module to fail its import" in lines[0]
    assert "serving" not in out
