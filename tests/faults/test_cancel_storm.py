"""100 concurrent interrupt / rollback cancels, many of them landing before the run's task
starts: every cancel returns, takes effect, and leaves no thread busy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import FAST_LEASES
from tests.support.server import LiveServer

pytestmark = pytest.mark.slow

TRIALS = 100
STUBBORN_CONFIG = Path(__file__).with_name("stubborn_langgraph.json")


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


RACE_ROUNDS = 3
RACE_TRIALS = 100
STUBBORN_CONFIG = Path(__file__).with_name("stubborn_langgraph.json")
RACE_SECONDS = (0.0, 0.005, 0.02, 0.05, 0.1)
"""Runs about as long as a cancel takes to arrive: cancels race the claim, the start and the
end of their run."""


async def _race(http: httpx.AsyncClient, index: int) -> tuple[str, str, str, int]:
    tid = (await http.post("/threads", json={})).json()["thread_id"]
    seconds = RACE_SECONDS[index % len(RACE_SECONDS)]
    created = await http.post(
        f"/threads/{tid}/runs", json={"assistant_id": "slow", "input": {"seconds": seconds}}
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["run_id"]
    action = "interrupt" if index % 2 else "rollback"
    cancelled = await http.post(
        f"/threads/{tid}/runs/{run_id}/cancel", params={"action": action, "wait": "true"}
    )
    return tid, run_id, action, cancelled.status_code


async def _verdict(http: httpx.AsyncClient, trial: tuple[str, str, str, int]) -> str | None:
    """What is wrong with one trial's end, or None.

    A cancel that returned 200 was accepted while the run was queued or running, so it must
    have taken effect; one that returned 404 came after the run ended, which then succeeded.
    """
    tid, run_id, action, status = trial
    thread = (await http.get(f"/threads/{tid}")).json()
    got = await http.get(f"/threads/{tid}/runs/{run_id}")
    run = got.json() if got.status_code == 200 else None
    if thread["status"] == "busy":
        return f"thread {tid} left busy"
    if status == 404:
        ok = run is not None and run["status"] == "success"
    elif status != 200:
        ok = False
    elif action == "rollback":
        ok = got.status_code == 404
    else:
        ok = run is not None and run["status"] == "interrupted"
    if ok:
        return None
    shown = run["status"] if run is not None else got.status_code
    return f"{action} answered {status} but the run is {shown} ({tid} {run_id})"


async def test_cancels_racing_start_and_finish_take_effect(server_factory) -> None:  # type: ignore[no-untyped-def]
    """Cancels of runs that last from 0 to 0.1 s: each lands while the run is claimed, starting,
    executing or finishing. An accepted cancel always takes effect; none leaves a thread busy."""
    server: LiveServer = server_factory()
    limits = httpx.Limits(max_connections=RACE_TRIALS * 2, keepalive_expiry=2.0)
    wrong: list[str] = []
    answers: list[int] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
        for _ in range(RACE_ROUNDS):
            trials = await asyncio.gather(*(_race(http, i) for i in range(RACE_TRIALS)))
            answers += [status for *_, status in trials]
            verdicts = await asyncio.gather(*(_verdict(http, trial) for trial in trials))
            wrong += [v for v in verdicts if v is not None]
        busy = (await http.post("/threads/search", json={"status": "busy"})).json()
    assert wrong == [], (wrong, server.log()[-4000:])
    assert busy == []
    assert set(answers) <= {200, 404}, answers
    assert "Traceback" not in server.log()


async def test_a_cancel_the_graph_swallows_is_delivered_again(server_factory) -> None:  # type: ignore[no-untyped-def]
    """A node that catches the run's cancellation and works on: the heartbeat that finds the
    run still executing cancels it again, so the cancel takes effect in seconds, not when the
    node is done (30 s)."""
    server: LiveServer = server_factory(env=FAST_LEASES, config=STUBBORN_CONFIG)
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        created = await http.post(
            f"/threads/{tid}/runs", json={"assistant_id": "stubborn", "input": {"seconds": 30}}
        )
        run_id = created.json()["run_id"]
        started = time.monotonic()
        cancelled = await http.post(f"/threads/{tid}/runs/{run_id}/cancel", params={"wait": "true"})
        took = time.monotonic() - started
        assert cancelled.status_code == 200, cancelled.text
        assert (await http.get(f"/threads/{tid}/runs/{run_id}")).json()["status"] == "interrupted"
    assert took < 15, (took, server.log()[-3000:])
    assert "still executes after its cancel" in server.log()
