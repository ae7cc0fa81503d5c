"""100 concurrent interrupt / rollback cancels, many of them landing before the run's task
starts: every cancel returns, takes effect, and leaves no thread busy."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.server import LiveServer

pytestmark = pytest.mark.slow

TRIALS = 100


async def _create_then_cancel(http: httpx.AsyncClient, index: int) -> tuple[str, str, str, int]:
    thread = await http.post("/threads", json={})
    assert thread.status_code == 200, thread.text
    tid = thread.json()["thread_id"]
    created = await http.post(
        f"/threads/{tid}/runs", json={"assistant_id": "slow", "input": {"seconds": 60}}
    )
    assert created.status_code == 200, created.text
    run = created.json()
    action = "interrupt" if index % 2 else "rollback"
    # No pause between creating and cancelling: the cancel often reaches the worker before the
    # run's task has taken its first step. The run would nap a minute: every cancel lands.
    cancelled = await http.post(
        f"/threads/{tid}/runs/{run['run_id']}/cancel", params={"action": action, "wait": "true"}
    )
    return tid, run["run_id"], action, cancelled.status_code


async def test_concurrent_cancels_all_take_effect(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: LiveServer = server_factory()
    # Idle connections are dropped before the server's 5 s keep-alive ends, so a request never
    # races the server closing its connection.
    limits = httpx.Limits(max_connections=TRIALS * 2, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
        trials = await asyncio.gather(*(_create_then_cancel(http, i) for i in range(TRIALS)))
        assert [status for *_, status in trials] == [200] * TRIALS
        for tid, run_id, action, _ in trials:
            thread = (await http.get(f"/threads/{tid}")).json()
            assert thread["status"] in ("idle", "interrupted"), thread
            got = await http.get(f"/threads/{tid}/runs/{run_id}")
            if action == "rollback":
                assert got.status_code == 404, (got.text, server.log()[-4000:])
            else:
                assert got.json()["status"] == "interrupted"
        busy = (await http.post("/threads/search", json={"status": "busy"})).json()
        assert busy == []
        # The workers hold nothing: a fresh run on any of the threads starts and ends at once.
        tid = trials[0][0]
        waited = await http.post(
            f"/threads/{tid}/runs/wait", json={"assistant_id": "slow", "input": {"seconds": 0}}
        )
        assert waited.json()["log"][-1] == "done"
    assert "Traceback" not in server.log()
