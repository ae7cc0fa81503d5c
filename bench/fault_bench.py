"""Fault bench: runs survive crashes, outages, cancels and shutdown; tool effects happen once.

Each scenario starts real processes (``staffgraph serve`` / ``worker``, an embedded Postgres, a
``redis-server``), runs the five-step fault graph (``bench/fault_graph.py``: every step makes
one plain side effect and one through the effect ledger), breaks something, and counts:

- started / completed / lost runs, runs that ended in ``error``, HTTP 500 answers;
- duplicate side effects without the ledger (plain) and with it (ledgered);
- recovery: seconds from the fault until every affected run was running again.

    .venv/bin/python bench/fault_bench.py                 # every scenario (about 10 minutes)
    .venv/bin/python bench/fault_bench.py --only cancels sigterm
    .venv/bin/python bench/fault_bench.py --rounds 3      # each round's table, then medians

With ``--rounds N`` every scenario runs N times; the last table gives each figure as
``median (min–max)`` over the rounds, with the load average before and after each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_env import (  # noqa: E402  (the repo root goes on the path first)
    STEPS,
    Effects,
    Postgres,
    Redis,
    Server,
    busy_threads,
    run_rows,
    start,
    unknown_effects,
)

LEASE = {"STAFFGRAPH_LEASE_SECONDS": "10", "STAFFGRAPH_HEARTBEAT_SECONDS": "3"}
DONE = [f"s{i}" for i in range(1, STEPS + 1)]


@dataclass
class Row:
    fault: str
    started: int = 0
    completed: int = 0
    errored: int = 0
    http_500: int = 0
    dup_plain: int = 0
    dup_ledger: int = 0
    recovery: float | None = None
    note: str = ""

    @property
    def lost(self) -> int:
        return self.started - self.completed


class Http:
    """httpx with every 5xx counted."""

    def __init__(self, url: str) -> None:
        self.errors_500 = 0
        self.client = httpx.AsyncClient(
            base_url=url,
            timeout=300,
            limits=httpx.Limits(max_connections=400, keepalive_expiry=2.0),
            event_hooks={"response": [self._count]},
        )

    async def _count(self, response: httpx.Response) -> None:
        if response.status_code >= 500 and response.status_code != 503:
            self.errors_500 += 1

    async def runs(self, count: int, step_seconds: float) -> list[tuple[str, str]]:
        out = []
        for _ in range(count):
            tid = (await self.client.post("/threads", json={})).json()["thread_id"]
            run = await self.client.post(
                f"/threads/{tid}/runs",
                json={"assistant_id": "faulty", "input": {"step_seconds": step_seconds}},
            )
            out.append((tid, run.json()["run_id"]))
        return out

    async def join(self, tid: str, rid: str) -> bool:
        """Whether the run completed every step (503s while a service is down are retried)."""
        for _ in range(120):
            response = await self.client.get(f"/threads/{tid}/runs/{rid}/join")
            if response.status_code != 503:
                done = response.json().get("done") if response.status_code == 200 else None
                return sorted(done or []) == DONE
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        return False

    async def close(self) -> None:
        await self.client.aclose()


async def _until(check: Callable[[], bool], timeout: float = 300) -> None:
    # The processes under test write files and rows; nothing here can await those.
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.1)


def _tally(row: Row, effects: Effects, database_url: str, http: Http, joined: list[bool]) -> Row:
    row.completed = sum(joined)
    row.errored = sum(r["status"] == "error" for r in run_rows(database_url))
    row.http_500 = http.errors_500
    row.dup_plain = effects.duplicates("plain.log")
    row.dup_ledger = effects.duplicates("ledgered.log")
    threads = {str(r["thread_id"]) for r in run_rows(database_url)}
    expected = {f"{t} {s}" for t in threads for s in DONE}
    unknown = unknown_effects(database_url)
    if unknown:
        row.note += f"; {len(unknown)} ledgered calls killed mid-call (unknown, not repeated)"
    for name, known in (("plain.log", set()), ("ledgered.log", unknown)):
        missing = len(expected - set(effects.lines(name)) - known)
        if missing:
            row.note += f"; {missing} effects missing from {name}"
    busy = busy_threads(database_url)
    if busy:
        row.note += f"; {busy} threads left busy"
    return row


async def kill_worker(pg: Postgres, redis: Redis, runs: int = 50) -> Row:
    effects, db = Effects(), pg.database()
    env = {"DATABASE_URL": db, "REDIS_URL": redis.url, "FAULT_EFFECTS_DIR": str(effects.path)}
    env |= LEASE
    api = start(env, args=("--no-workers",))
    workers = [start(env, command="worker") for _ in range(2)]
    http = Http(api.url)
    try:
        made = await http.runs(runs, 1.0)
        await _until(lambda: effects.threads_started() >= runs // 2)
        owners = [str(r["lease_owner"]) for r in run_rows(db) if r["status"] == "running"]
        victim = max(workers, key=lambda w: sum(f":{w.process.pid}:" in o for o in owners))
        mark = f":{victim.process.pid}:"
        victim.kill()
        killed = time.monotonic()
        await _until(lambda: not any(mark in str(r["lease_owner"]) for r in run_rows(db)))
        row = Row(f"kill -9 a worker ({runs} runs)", started=runs)
        row.recovery = time.monotonic() - killed
        joined = await asyncio.gather(*(http.join(t, r) for t, r in made))
        row.note = f"lease {LEASE['STAFFGRAPH_LEASE_SECONDS']} s"
        return _tally(row, effects, db, http, joined)
    finally:
        await http.close()
        for server in (*workers, api):
            server.stop()


async def kill_server(pg: Postgres, runs: int = 20) -> Row:
    effects, db = Effects(), pg.database()
    env = {"DATABASE_URL": db, "FAULT_EFFECTS_DIR": str(effects.path)} | LEASE
    first = start(env)
    http = Http(first.url)
    made = await http.runs(runs, 1.0)
    await http.close()
    await _until(lambda: effects.threads_started() >= runs // 2)
    mark = f":{first.process.pid}:"
    first.kill()
    killed = time.monotonic()
    second = start(env)
    http = Http(second.url)
    try:
        await _until(lambda: not any(mark in str(r["lease_owner"]) for r in run_rows(db)))
        row = Row(f"kill -9 the all-in-one server, restart ({runs} runs)", started=runs)
        row.recovery = time.monotonic() - killed
        joined = await asyncio.gather(*(http.join(t, r) for t, r in made))
        return _tally(row, effects, db, http, joined)
    finally:
        await http.close()
        second.stop()


async def _poll(http: Http, made: list[tuple[str, str]], stop: asyncio.Event) -> int:
    """API calls during an outage; returns how many were answered."""
    answered = 0
    while not stop.is_set():
        tid, rid = made[answered % len(made)]
        for call in (
            http.client.get(f"/threads/{tid}"),
            http.client.get(f"/threads/{tid}/runs/{rid}"),
            http.client.post("/threads", json={}),
        ):
            await call
            answered += 1
        await asyncio.sleep(0.5)
    return answered


async def postgres_down(pg: Postgres, seconds: float, runs: int = 20) -> Row:
    effects, db = Effects(), pg.database()
    server = start({"DATABASE_URL": db, "FAULT_EFFECTS_DIR": str(effects.path)} | LEASE)
    http = Http(server.url)
    try:
        made = await http.runs(runs, 2.0)
        await _until(lambda: effects.threads_started() >= runs)
        joins = [asyncio.create_task(http.join(t, r)) for t, r in made]
        stop = asyncio.Event()
        poller = asyncio.create_task(_poll(http, made, stop))
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(pg.start)
        restarted = time.monotonic()
        stop.set()
        calls = await poller
        joined = await asyncio.gather(*joins)
        row = Row(f"Postgres down {seconds:.0f} s ({runs} runs in flight)", started=runs)
        row.recovery = time.monotonic() - restarted
        row.note = f"{calls} API calls during the outage; recovery = last run done after restart"
        return _tally(row, effects, db, http, joined)
    finally:
        await http.close()
        server.stop()


async def redis_down(pg: Postgres, redis: Redis, seconds: float, runs: int = 20) -> Row:
    effects, db = Effects(), pg.database()
    env = {"DATABASE_URL": db, "REDIS_URL": redis.url, "FAULT_EFFECTS_DIR": str(effects.path)}
    server = start(env | LEASE)
    http = Http(server.url)

    async def stream(tid: str) -> Any:
        body = {"assistant_id": "faulty", "input": {"step_seconds": 2.0}, "stream_mode": "values"}
        last = None
        async with http.client.stream("POST", f"/threads/{tid}/runs/stream", json=body) as res:
            async for line in res.aiter_lines():
                if line.startswith("data: "):
                    last = line[6:]
        return last

    try:
        threads = [
            (await http.client.post("/threads", json={})).json()["thread_id"] for _ in range(runs)
        ]
        streams = [asyncio.create_task(stream(t)) for t in threads]
        await _until(lambda: effects.threads_started() >= runs)
        redis.kill()
        await asyncio.sleep(seconds)
        await asyncio.to_thread(redis.start)
        restarted = time.monotonic()
        finals = await asyncio.gather(*streams)
        ended = [f is not None and all(f'"{s}"' in f for s in DONE) for f in finals]
        row = Row(f"Redis down {seconds:.0f} s ({runs} runs streaming)", started=runs)
        row.recovery = time.monotonic() - restarted
        made = [(r["thread_id"], r["run_id"]) for r in run_rows(db)]
        joined = await asyncio.gather(*(http.join(str(t), str(r)) for t, r in made))
        row.note = f"{sum(ended)}/{runs} streams ended with the final state"
        return _tally(row, effects, db, http, joined)
    finally:
        await http.close()
        server.stop()


async def cancels(pg: Postgres, trials: int = 100) -> Row:
    effects, db = Effects(), pg.database()
    server = start({"DATABASE_URL": db, "FAULT_EFFECTS_DIR": str(effects.path)} | LEASE)
    http = Http(server.url)

    async def trial(index: int) -> bool:
        tid = (await http.client.post("/threads", json={})).json()["thread_id"]
        run = await http.client.post(
            f"/threads/{tid}/runs", json={"assistant_id": "faulty", "input": {"step_seconds": 12}}
        )
        rid = run.json()["run_id"]
        action = "interrupt" if index % 2 else "rollback"
        answer = await http.client.post(
            f"/threads/{tid}/runs/{rid}/cancel", params={"action": action, "wait": "true"}
        )
        got = await http.client.get(f"/threads/{tid}/runs/{rid}")
        if action == "rollback":
            took = got.status_code == 404
        else:
            took = got.json()["status"] == "interrupted"
        return answer.status_code == 200 and took

    try:
        started = time.monotonic()
        results = await asyncio.gather(*(trial(i) for i in range(trials)))
        row = Row(f"{trials} concurrent interrupt/rollback cancels", started=trials)
        row.completed = sum(results)
        row.recovery = time.monotonic() - started
        row.http_500 = http.errors_500
        busy = busy_threads(db)
        row.note = f"{busy} threads left busy; completed = cancel returned and took effect"
        return row
    finally:
        await http.close()
        server.stop()


async def sigterm(pg: Postgres, runs: int = 5) -> Row:
    effects, db = Effects(), pg.database()
    env = {"DATABASE_URL": db, "FAULT_EFFECTS_DIR": str(effects.path)}
    server: Server = start(env | {"STAFFGRAPH_SHUTDOWN_GRACE_SECONDS": "30"})
    http = Http(server.url)
    await http.runs(runs, 0.5)
    await http.close()
    await _until(lambda: effects.threads_started() >= runs)
    server.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    code = await asyncio.to_thread(server.process.wait, 120)
    rows = run_rows(db)
    row = Row(f"SIGTERM with {runs} runs in flight", started=runs)
    row.completed = sum(r["status"] == "success" for r in rows)
    row.errored = sum(r["status"] == "error" for r in rows)
    row.dup_plain = effects.duplicates("plain.log")
    row.dup_ledger = effects.duplicates("ledgered.log")
    row.recovery = time.monotonic() - sent
    reruns = sum(int(str(r["attempt"])) > 1 for r in rows)
    row.note = f"exit {code}; {reruns} re-executed; recovery = time to exit"
    return row


def _print(rows: list[Row]) -> None:
    head = (
        "| fault | started | completed | lost | errored | HTTP 500 | duplicate effects "
        "without ledger | duplicate effects with ledger | recovery (s) | notes |"
    )
    print(head)
    print("|" + "---|" * 10)
    for r in rows:
        recovery = f"{r.recovery:.1f}" if r.recovery is not None else "-"
        print(
            f"| {r.fault} | {r.started} | {r.completed} | {r.lost} | {r.errored} | "
            f"{r.http_500} | {r.dup_plain} | {r.dup_ledger} | {recovery} | "
            f"{r.note.strip('; ')} |",
            flush=True,
        )


SCENARIOS = ("kill-worker", "kill-server", "postgres", "redis", "cancels", "sigterm")


async def _round(only: list[str]) -> list[Row]:
    pg, redis = Postgres(), Redis()
    plans: dict[str, list[Callable[[], Awaitable[Row]]]] = {
        "kill-worker": [lambda: kill_worker(pg, redis)],
        "kill-server": [lambda: kill_server(pg)],
        "postgres": [lambda: postgres_down(pg, 10), lambda: postgres_down(pg, 40)],
        "redis": [lambda: redis_down(pg, redis, 30)],
        "cancels": [lambda: cancels(pg)],
        "sigterm": [lambda: sigterm(pg)],
    }
    rows: list[Row] = []
    try:
        for name in only:
            for plan in plans[name]:
                rows.append(await plan())
                print(f"done: {rows[-1].fault}", file=sys.stderr, flush=True)
    finally:
        redis.close()
        pg.close()
    return rows


def _spread(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def _print_summary(rounds: list[list[Row]]) -> None:
    print(f"\nMedian (min–max) over {len(rounds)} rounds:\n")
    print(
        "| fault | started | completed | lost | errored | HTTP 500 | duplicate effects "
        "without ledger | duplicate effects with ledger | recovery (s) |"
    )
    print("|" + "---|" * 9)
    for index, first in enumerate(rounds[0]):
        same = [r[index] for r in rounds]

        def col(name: str, rows: list[Row] = same) -> str:
            return _spread([float(getattr(r, name)) for r in rows], 0)

        recoveries = [r.recovery for r in same if r.recovery is not None]
        recovery = _spread(recoveries, 1) if recoveries else "-"
        print(
            f"| {first.fault} | {col('started')} | {col('completed')} | {col('lost')} | "
            f"{col('errored')} | {col('http_500')} | {col('dup_plain')} | {col('dup_ledger')} | "
            f"{recovery} |",
            flush=True,
        )


async def main(only: list[str], rounds: int = 1) -> None:
    results: list[list[Row]] = []
    for number in range(1, rounds + 1):
        before = os.getloadavg()
        rows = await _round(only)
        after = os.getloadavg()
        results.append(rows)
        print(
            f"\nRound {number} of {rounds} (load average 1/5/15 min before "
            f"{before[0]:.1f}/{before[1]:.1f}/{before[2]:.1f}, after "
            f"{after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f}):\n",
            flush=True,
        )
        _print(rows)
    if rounds > 1:
        _print_summary(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=1, help="run every scenario N times")
    parsed = parser.parse_args()
    asyncio.run(main(parsed.only, max(1, parsed.rounds)))
