"""Every way a run fails is logged at error level with the run and thread ids (and the exception
where there is one), so operators see it: a graph that raises, a graph that is not served, and
a run whose workers kept dying until the sweeper gave up on it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import psycopg
import pytest

from tests.faults.conftest import FAST_LEASES
from tests.support.server import LiveServer

pytestmark = pytest.mark.slow


def _failures(server: LiveServer, run_id: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    return [
        e
        for e in events
        if e.get("run_id") == run_id and e["message"].startswith(f"run {run_id} failed")
    ]


async def _logged(server: LiveServer, run_id: str) -> dict[str, Any]:
    # The log is another process's file: no event reaches this one.
    async with asyncio.timeout(60):
        while not (found := _failures(server, run_id)):
            await asyncio.sleep(0.1)
    (failed,) = found
    return failed


async def test_failed_runs_are_logged_at_error_level_with_their_ids(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = server_factory(env={"STAFFGRAPH_LOG_FORMAT": "json", **FAST_LEASES})
    database = server.env["DATABASE_URL"]
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:

        async def thread() -> str:
            return str((await http.post("/threads", json={})).json()["thread_id"])

        # A graph that raises.
        raising = await thread()
        waited = await http.post(
            f"/threads/{raising}/runs/wait", json={"assistant_id": "failing", "input": {"x": 1}}
        )
        assert "__error__" in waited.json()
        raised_run = (await http.get(f"/threads/{raising}/runs")).json()[0]["run_id"]

        # A graph no longer served: its assistant points at a graph this server does not have.
        unserved = await thread()
        assistant = (await http.post("/assistants", json={"graph_id": "slow"})).json()
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "UPDATE assistants SET graph_id = 'gone' WHERE assistant_id = %s",
                (assistant["assistant_id"],),
            )
        waited = await http.post(
            f"/threads/{unserved}/runs/wait",
            json={"assistant_id": assistant["assistant_id"], "input": {}},
        )
        assert waited.json()["__error__"]["error"] == "GraphNotFound"
        unserved_run = (await http.get(f"/threads/{unserved}/runs")).json()[0]["run_id"]

        # A run whose last worker died: queued for later, then made to look claimed by a worker
        # that stopped on its last attempt. The server's sweeper fails it.
        orphaned = await thread()
        later = await http.post(
            f"/threads/{orphaned}/runs",
            json={"assistant_id": "slow", "input": {"seconds": 0}, "after_seconds": 3600},
        )
        orphan_run = later.json()["run_id"]
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "UPDATE runs SET status = 'running', lease_owner = 'a-dead-worker', attempt = 3, "
                "lease_expires_at = now() - interval '1 second' WHERE run_id = %s",
                (orphan_run,),
            )
        joined = await http.get(f"/threads/{orphaned}/runs/{orphan_run}/join")
        assert joined.json()["__error__"]["error"] == "WorkerLost"

    expected = {raised_run: raising, unserved_run: unserved, orphan_run: orphaned}
    for run_id, thread_id in expected.items():
        failed = await _logged(server, run_id)
        assert failed["level"] == "ERROR", failed
        assert failed["thread_id"] == thread_id, failed
    assert "Traceback" in (await _logged(server, raised_run))["exc"]
    assert "UnknownGraph" in (await _logged(server, unserved_run))["exc"]
    assert "WorkerLost" in (await _logged(server, orphan_run))["message"]
