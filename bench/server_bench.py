"""Benchmark staffgraph's server against the official LangGraph dev server and the in-process floor.

All on the same graph (``bench/graphs.py``: one node, one state key), with the same client, in
the same run:

- **staffgraph**: ``staffgraph serve`` on Postgres (an embedded server the bench starts in a
  temporary home, or ``DATABASE_URL``), ``EMBEDDINGS=hashing`` since the graph embeds nothing;
- **official**: ``langgraph dev`` (langgraph-api, in-memory), when ``langgraph-cli[inmem]`` is
  installed;
- **floor**: the graph compiled in this process with LangGraph's own ``AsyncPostgresSaver`` on
  the server's pool (the same Postgres, the server's serializer), no HTTP: the least any server
  using LangGraph's saver could cost;
- **floor-sg**: the same, with staffgraph's checkpointer (``FencedPostgresSaver``) as the server
  opens it, outside a run (so unfenced: one statement per write): what the graph alone costs
  inside staffgraph;
- **staffgraph@REV** (``--baseline REV``): staffgraph as it was at git revision REV, started from
  that revision's files (``git archive``) with this checkout's Python environment, on its own
  database of the same Postgres: the before of a before/after measured in the same run.

staffgraph (and the baseline) are started once. The official server is started afresh, in a new
working directory, for every round: it keeps every thread and run in memory, and carried over
from round to round its CPU per run grew from 9.8 to 16.1 ms within one bench, which made the
ratio to it look better with every round (1.80x, 2.50x, 3.88x). Within each round the targets
take turns inside every phase (turns of ten sequential runs, then of ten streams, then of
throughput windows), so a slow spell of a shared machine falls on all of them rather than on
whichever target was being measured then. Each round measures:

- sequential ``POST /threads/{id}/runs/wait`` latency (p50, p95) with ``durability="sync"``
  (floor: ``ainvoke``);
- for the servers, the HTTP round trip alone: sequential ``GET /ok`` (p50), with an httpx
  client set up as the runs' (one kept-alive connection); the floors make none.
  staffgraph's runs.wait p50 less its round trip, over the floor's runs.wait p50, shows how
  much of the ratio to the floor is the request itself (the client's CPU included) rather
  than the run;
- time to the first event of ``POST /threads/{id}/runs/stream`` (p50, p95) (floor: the first
  chunk of ``astream``);
- throughput of runs.wait with N concurrent clients, each on its own thread and with its own
  HTTP connection (:class:`LoadClients`), for D seconds per target, cut into W windows
  (``--windows``, default 3) that the targets take in turn, in alternating order, and errors;
- CPU milliseconds per run over the throughput phase: the server process's CPU time (psutil,
  children included) divided by the runs completed (for the floor: this process's own, not
  the idle servers it started), and for staffgraph and the floor the Postgres server's
  (postmaster and backends) as well; for the servers, also this process's own CPU per run:
  what the load generator (httpx, the same for every server) costs on the cores the server
  shares with it.

Then it prints each figure's median and spread (min–max) over the rounds, and the ratios of
staffgraph's medians to the official server's and to the floor's.

Usage: ``python bench/server_bench.py [--rounds 3] [--sequential 100] [--first-event 100]
[--clients 32] [--duration 15] [--windows 3] [--skip-official] [--skip-floor] [--baseline REV]
[--quick]``
(``--quick``: 1 round, 50 + 50 runs, 5 s of throughput: checks the bench, not the server).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (  # noqa: E402
    BENCH,
    REPO,
    UNREACHED_LIMITS,
    ServerProcess,
    free_port,
    own_cpu_seconds,
    pct,
    run_server,
    spread,
    tree_cpu_seconds,
    wait_for,
)
from state.db import open_persistence  # noqa: E402
from state.embedded import EmbeddedPostgres  # noqa: E402

CONFIG = BENCH / "langgraph.json"
RUN_INPUT = {"n": 0}
RUN_BODY = {"assistant_id": "trivial", "input": RUN_INPUT, "durability": "sync"}
WARM_UP = 10
BATCH = 10
"""Runs (or streams) a target makes in a row before the next target's turn: short enough that
a slow spell of the machine falls on every target, long enough that each is measured warm."""


@dataclass
class Round:
    """One round's figures for one target."""

    seq_ms: list[float] = field(default_factory=list)
    round_trip_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    throughput: float = float("nan")
    errors: int = 0
    cpu_ms_per_run: float = float("nan")
    pg_cpu_ms_per_run: float = float("nan")
    client_cpu_ms_per_run: float = float("nan")
    busy_pct: float = float("nan")
    idle_pct: float = float("nan")
    drain_s: float = 0.0


@dataclass
class Target:
    """Something to measure: how to run one run, stream one run, and whose CPU to count."""

    name: str
    new_thread: Callable[[], Awaitable[str]]
    wait_run: Callable[[str], Awaitable[bool]]
    first_event: Callable[[str], Awaitable[float | None]]
    cpu_pid: int | None
    """The server process whose CPU (its children's included) the runs cost; ``None`` for a
    target run in this process (the floors), whose CPU is this process's own."""
    pg_pid: int | None = None
    round_trip: Callable[[], Awaitable[None]] | None = None
    """One request that does nothing (``GET /ok``); ``None`` where there is no HTTP."""
    rounds: list[Round] = field(default_factory=list)


# -- HTTP targets -------------------------------------------------------------------------------


class LoadClients:
    """The throughput phase's clients: one HTTP client, with one connection, per LangGraph
    thread the phase runs on (each concurrent client of the phase has a thread of its own).

    Shared by the phase's concurrent requests, one httpx connection pool cost this process CPU
    that depended on the server measured: with runs that end quickly, httpcore's pool handed
    one idle connection to several waiting requests, all but one of which then tried again, and
    it scanned its connections at each try. In one run of this bench that was 2.2 ms of client
    CPU a run against staffgraph@50b7272 and 5.7 ms against staffgraph, on the two cores the
    server shares with the client. With a connection of its own, a client costs about the same
    whichever server it calls.
    """

    def __init__(self, count: int, base_url: str = "") -> None:
        """``count`` clients (the phase's ``--clients``) for the server at ``base_url``."""
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._clients = [
            httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) for _ in range(count)
        ]
        self._assigned: dict[str, httpx.AsyncClient] = {}

    def for_thread(self, thread_id: str) -> httpx.AsyncClient:
        """The client of ``thread_id``: the next one in turn at its first request, so that any
        ``count`` threads used one after the other have a client each."""
        client = self._assigned.get(thread_id)
        if client is None:
            client = self._clients[len(self._assigned) % len(self._clients)]
            self._assigned[thread_id] = client
        return client

    def point_at(self, url: str) -> None:
        """Send every later request to the server at ``url`` (the official server of a round)."""
        for client in self._clients:
            client.base_url = httpx.URL(url)

    async def aclose(self) -> None:
        """Close every client and its connection."""
        for client in self._clients:
            await client.aclose()


def http_target(
    name: str,
    client: httpx.AsyncClient,
    *,
    cpu_pid: int,
    pg_pid: int | None = None,
    load: LoadClients | None = None,
) -> Target:
    """A server measured over HTTP with ``client``, and runs.wait with ``load``'s client of the
    thread where it is given (else with ``client`` too: one connection pool for every phase)."""

    async def new_thread() -> str:
        response = await client.post("/threads", json={})
        response.raise_for_status()
        return str(response.json()["thread_id"])

    async def wait_run(thread_id: str) -> bool:
        sender = client if load is None else load.for_thread(thread_id)
        response = await sender.post(f"/threads/{thread_id}/runs/wait", json=RUN_BODY)
        return response.status_code == 200 and "__error__" not in response.json()

    async def first_event(thread_id: str) -> float | None:
        start = time.perf_counter()
        first = None
        async with client.stream(
            "POST",
            f"/threads/{thread_id}/runs/stream",
            json={**RUN_BODY, "stream_mode": "values"},
        ) as response:
            async for line in response.aiter_lines():
                if first is None and line.startswith("event:"):
                    first = (time.perf_counter() - start) * 1000
                # read to the end so the next run does not meet a busy thread
        return first

    async def round_trip() -> None:
        response = await client.get("/ok")
        response.raise_for_status()

    return Target(
        name,
        new_thread,
        wait_run,
        first_event,
        cpu_pid=cpu_pid,
        pg_pid=pg_pid,
        round_trip=round_trip,
    )


# -- the in-process floor -----------------------------------------------------------------------


def _bench_builder() -> Any:
    # Loaded by path: `graphs` is also the name of the product's package.
    spec = importlib.util.spec_from_file_location("bench_trivial_graph", BENCH / "graphs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.builder


def floor_target(checkpointer: Any, *, pg_pid: int | None, name: str = "floor") -> Target:
    """The same graph compiled here with ``checkpointer``: no HTTP, no queue."""
    graph = _bench_builder().compile(checkpointer=checkpointer, name="trivial")

    async def new_thread() -> str:
        return str(uuid.uuid4())

    async def wait_run(thread_id: str) -> bool:
        config = {"configurable": {"thread_id": thread_id}}
        result = await graph.ainvoke(RUN_INPUT, config, durability="sync")
        return isinstance(result, dict) and "n" in result

    async def first_event(thread_id: str) -> float | None:
        config = {"configurable": {"thread_id": thread_id}}
        start = time.perf_counter()
        first = None
        async for _ in graph.astream(RUN_INPUT, config, stream_mode="values", durability="sync"):
            if first is None:
                first = (time.perf_counter() - start) * 1000
        return first

    return Target(name, new_thread, wait_run, first_event, cpu_pid=None, pg_pid=pg_pid)


# -- phases -------------------------------------------------------------------------------------


def _batches(count: int) -> list[int]:
    """``count`` split into turns of :data:`BATCH` (the last may be shorter)."""
    return [min(BATCH, count - start) for start in range(0, count, BATCH)]


async def _sequential(targets: list[Target], count: int) -> list[list[float]]:
    """runs.wait latencies, the targets taking turns of :data:`BATCH` runs (each target on
    its own thread)."""
    threads = [await target.new_thread() for target in targets]
    for target, thread_id in zip(targets, threads, strict=True):
        for _ in range(WARM_UP):  # imports, caches, connection pool
            await target.wait_run(thread_id)
    samples: list[list[float]] = [[] for _ in targets]
    for batch in _batches(count):
        for target, thread_id, mine in zip(targets, threads, samples, strict=True):
            for _ in range(batch):
                start = time.perf_counter()
                ok = await target.wait_run(thread_id)
                mine.append((time.perf_counter() - start) * 1000)
                if not ok:
                    raise RuntimeError(f"{target.name}: a sequential run failed")
    return samples


async def _round_trips(targets: list[Target], count: int) -> list[list[float]]:
    """``GET /ok`` latencies of the targets that serve HTTP, in turns of :data:`BATCH`."""
    samples: list[list[float]] = [[] for _ in targets]
    for batch in _batches(count):
        for target, mine in zip(targets, samples, strict=True):
            if target.round_trip is None:
                continue
            for _ in range(batch):
                start = time.perf_counter()
                await target.round_trip()
                mine.append((time.perf_counter() - start) * 1000)
    return samples


async def _first_events(targets: list[Target], count: int) -> list[list[float]]:
    """Times to the first streamed event, the targets taking turns of :data:`BATCH` streams."""
    threads = [await target.new_thread() for target in targets]
    for target, thread_id in zip(targets, threads, strict=True):
        for _ in range(WARM_UP // 2):
            await target.first_event(thread_id)
    samples: list[list[float]] = [[] for _ in targets]
    for batch in _batches(count):
        for target, thread_id, mine in zip(targets, threads, samples, strict=True):
            for _ in range(batch):
                first = await target.first_event(thread_id)
                if first is not None:
                    mine.append(first)
    return samples


@dataclass
class _Tally:
    """What a target's throughput windows of one round added up to."""

    completed: int = 0
    errors: int = 0
    elapsed: float = 0.0
    drain: float = 0.0
    cpu: float = 0.0
    client_cpu: float = 0.0
    pg_cpu: float = 0.0
    machine: float = 0.0
    machine_idle: float = 0.0


def _machine_seconds() -> tuple[float, float]:
    """CPU seconds of every core so far: ``(all, idle)``, idle counting I/O wait too.

    Guest time is already inside user time, so it is left out of the sum.
    """
    times = psutil.cpu_times()
    counted = [
        value for name, value in times._asdict().items() if name not in ("guest", "guest_nice")
    ]
    return sum(counted), times.idle + getattr(times, "iowait", 0.0)


async def _window(target: Target, threads: list[str], duration: float, tally: _Tally) -> None:
    """One client per thread of ``threads`` on ``target`` for ``duration`` seconds.

    The window ends when the runs in flight at ``duration`` have finished: they count, and so
    does the time they took (``tally.drain``), so a server with slow runs is not credited with
    work it had not finished.
    """
    cpu_before = tree_cpu_seconds(target.cpu_pid) if target.cpu_pid else 0.0
    own_before = own_cpu_seconds()
    pg_before = tree_cpu_seconds(target.pg_pid) if target.pg_pid else 0.0
    machine_before, idle_before = _machine_seconds()
    started = time.perf_counter()
    stop_at = started + duration

    async def worker(thread_id: str) -> None:
        while time.perf_counter() < stop_at:
            try:
                if await target.wait_run(thread_id):
                    tally.completed += 1
                else:
                    tally.errors += 1
            except Exception:  # any failure of a run counts, whatever raised it
                tally.errors += 1

    await asyncio.gather(*(worker(t) for t in threads))
    ended = time.perf_counter()
    own = own_cpu_seconds() - own_before
    if target.cpu_pid is None:  # run in this process: its CPU is the target's
        tally.cpu += own
    else:  # the load generator's, for a server
        tally.client_cpu += own
    machine_after, idle_after = _machine_seconds()
    tally.machine += machine_after - machine_before
    tally.machine_idle += idle_after - idle_before
    tally.elapsed += ended - started
    tally.drain += max(0.0, ended - stop_at)
    if target.cpu_pid:
        tally.cpu += tree_cpu_seconds(target.cpu_pid) - cpu_before
    if target.pg_pid:
        tally.pg_cpu += tree_cpu_seconds(target.pg_pid) - pg_before


async def _throughput(
    targets: list[Target], clients: int, duration: float, windows: int, results: list[Round]
) -> None:
    """``clients`` concurrent clients per target, each on its own thread, for ``duration``
    seconds per target, cut into ``windows`` windows that the targets take in turn, in
    alternating order (A B C, C B A, A B C, ...).

    Measured one after the other in one window each, the targets met different spells of a
    shared machine: the ratio to the official server came out 1.44x, 2.12x and 5.20x in three
    rounds of one run. Interleaved, a slow spell falls on every target, and the alternating
    order cancels a steady drift within the round.
    """
    threads = [[await target.new_thread() for _ in range(clients)] for target in targets]
    tallies = [_Tally() for _ in targets]
    turns = list(range(len(targets)))
    for window in range(windows):
        for index in turns if window % 2 == 0 else reversed(turns):
            await _window(targets[index], threads[index], duration / windows, tallies[index])
    for target, tally, result in zip(targets, tallies, results, strict=True):
        result.throughput = tally.completed / tally.elapsed
        result.errors = tally.errors
        result.drain_s = tally.drain
        if tally.completed and target.cpu_pid != 0:  # 0: a server whose process is not known
            result.cpu_ms_per_run = tally.cpu * 1000 / tally.completed
            result.busy_pct = tally.cpu * 100 / tally.elapsed
        if tally.completed and target.cpu_pid is not None:
            result.client_cpu_ms_per_run = tally.client_cpu * 1000 / tally.completed
        if tally.machine:
            result.idle_pct = tally.machine_idle * 100 / tally.machine
        if tally.completed and target.pg_pid:
            result.pg_cpu_ms_per_run = tally.pg_cpu * 1000 / tally.completed


async def measure_round(targets: list[Target], args: argparse.Namespace, number: int) -> None:
    """Measure one round of every phase, the targets taking turns within each, and print it."""
    results = [Round() for _ in targets]
    for result, samples in zip(results, await _sequential(targets, args.sequential), strict=True):
        result.seq_ms = samples
    for result, samples in zip(results, await _round_trips(targets, args.sequential), strict=True):
        result.round_trip_ms = samples
    for result, samples in zip(
        results, await _first_events(targets, args.first_event), strict=True
    ):
        result.first_ms = samples
    await _throughput(targets, args.clients, args.duration, args.windows, results)
    for target, result in zip(targets, results, strict=True):
        target.rounds.append(result)
        print(
            f"[round {number} {target.name}] seq p50 {pct(result.seq_ms, 0.5):.2f} ms "
            f"p95 {pct(result.seq_ms, 0.95):.2f} ms; "
            + (
                f"GET /ok p50 {pct(result.round_trip_ms, 0.5):.2f} ms; "
                if result.round_trip_ms
                else ""
            )
            + f"first event p50 {pct(result.first_ms, 0.5):.2f} ms "
            f"p95 {pct(result.first_ms, 0.95):.2f} ms; {result.throughput:.1f} runs/s with "
            f"{args.clients} clients, {result.errors} errors "
            f"({result.drain_s:.2f} s of it finishing runs in flight); "
            f"CPU {result.cpu_ms_per_run:.2f} ms/run"
            + (
                f" (+ Postgres {result.pg_cpu_ms_per_run:.2f} ms/run)"
                if result.pg_cpu_ms_per_run == result.pg_cpu_ms_per_run
                else ""
            )
            + (
                f"; bench client {result.client_cpu_ms_per_run:.2f} ms/run"
                if result.client_cpu_ms_per_run == result.client_cpu_ms_per_run
                else ""
            )
            + f"; process {result.busy_pct:.0f}% of a core, machine {result.idle_pct:.0f}% idle",
            flush=True,
        )


# -- report -------------------------------------------------------------------------------------


def _wait_p50(result: Round) -> float:
    return pct(result.seq_ms, 0.5)


def _round_trip_p50(result: Round) -> float:
    return pct(result.round_trip_ms, 0.5)


FIGURES: list[tuple[str, str, Callable[[Round], float]]] = [
    ("runs.wait p50", " ms", _wait_p50),
    ("runs.wait p95", " ms", lambda r: pct(r.seq_ms, 0.95)),
    ("HTTP round trip p50", " ms", _round_trip_p50),
    ("first event p50", " ms", lambda r: pct(r.first_ms, 0.5)),
    ("first event p95", " ms", lambda r: pct(r.first_ms, 0.95)),
    ("runs/s, N clients", "", lambda r: r.throughput),
    ("errors", "", lambda r: float(r.errors)),
    ("CPU ms per run", " ms", lambda r: r.cpu_ms_per_run),
    ("+ Postgres CPU ms/run", " ms", lambda r: r.pg_cpu_ms_per_run),
    ("bench client CPU ms/run", " ms", lambda r: r.client_cpu_ms_per_run),
    ("process busy (1 core)", "%", lambda r: r.busy_pct),
    ("machine idle", "%", lambda r: r.idle_pct),
]
UNRATIOED = (
    "errors",
    "+ Postgres CPU ms/run",
    "bench client CPU ms/run",
    "process busy (1 core)",
    "machine idle",
)
"""Figures printed for every target but not divided: they say why, not how fast."""


def _median(target: Target, figure: Callable[[Round], float]) -> float:
    values = [v for v in (figure(r) for r in target.rounds) if v == v]  # NaN-free
    return statistics.median(values) if values else float("nan")


def report(targets: list[Target], args: argparse.Namespace) -> None:
    """Print every figure's median (min–max) per target, then staffgraph's ratios."""
    rounds = len(targets[0].rounds)
    print()
    print(
        f"{rounds} round(s); {args.sequential} sequential runs, {args.first_event} streams, "
        f"{args.clients} clients for {args.duration:.0f} s per round; median (min–max)"
    )
    width = 34
    print(f"{'figure':<24}" + "".join(f"{t.name:>{width}}" for t in targets))
    for label, unit, figure in FIGURES:
        label = label.replace("N clients", f"{args.clients} clients")
        cells = [
            spread([figure(r) for r in t.rounds], unit, 0 if label == "errors" else 2)
            for t in targets
        ]
        print(f"{label:<24}" + "".join(f"{c:>{width}}" for c in cells))
    ours = targets[0]
    for peer in targets[1:]:
        print()
        print(f"ratios staffgraph / {peer.name} (medians):")
        for label, _, figure in FIGURES:
            if label in UNRATIOED:
                continue
            mine, theirs = _median(ours, figure), _median(peer, figure)
            if theirs != theirs:  # a figure the peer has not (a floor makes no HTTP request)
                continue
            ratio = mine / theirs if theirs else float("nan")
            print(f"  {label.replace('N clients', f'{args.clients} clients'):<26} {ratio:.2f}x")
        if peer.round_trip is None:
            net = _median(ours, _wait_p50) - _median(ours, _round_trip_p50)
            floor = _median(peer, _wait_p50)
            print(f"  {'runs.wait p50 less GET /ok':<26} {net / floor:.2f}x")
        # A peer whose speed drifts from round to round shows here rather than hiding behind
        # the medians.
        per_round = [
            f"{mine.throughput / theirs.throughput:.2f}x" if theirs.throughput else "n/a"
            for mine, theirs in zip(ours.rounds, peer.rounds, strict=True)
        ]
        print(f"  {'runs/s round by round':<26} {', '.join(per_round)}")


# -- main ---------------------------------------------------------------------------------------


def _database(stack: ExitStack) -> tuple[str, int | None]:
    """``DATABASE_URL``, or an embedded Postgres in a temporary home (stopped with ``stack``).

    Returns:
        The URL, and the postmaster's pid when the bench started it (for its CPU time).
    """
    external = os.environ.get("DATABASE_URL")
    if external:
        return external, None
    home = Path(tempfile.mkdtemp(prefix="bench-staffgraph-home-"))
    stack.callback(shutil.rmtree, home, ignore_errors=True)
    embedded = EmbeddedPostgres(home)
    url = embedded.start()
    stack.callback(embedded.stop)
    pid_file = embedded.pgdata / "postmaster.pid"
    return url, int(pid_file.read_text().split()[0])


def _staffgraph_argv(port: int, config: Path = CONFIG) -> list[str]:
    return [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--port",
        str(port),
        "--config",
        str(config),
    ]


def _staffgraph_env(database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "EMBEDDINGS": "hashing",
        "STAFFGRAPH_LOG_LEVEL": "warning",
        "LANGSMITH_TRACING": "false",
        **UNREACHED_LIMITS,
    }


def _graph_workdir(stack: ExitStack, prefix: str) -> Path:
    """A fresh working directory holding the bench graph and its ``langgraph.json``.

    The official dev server keeps its in-memory state in ``.langgraph_api`` under its working
    directory and reloads it at start: run from ``bench/``, every bench started it with all
    earlier benches' threads and runs (44 MB after a few), which slowed it run after run, while
    staffgraph starts on an empty database each time. A baseline revision's server runs this
    checkout's graph from here too, whatever its own ``bench/`` held.
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    for name in ("graphs.py", "langgraph.json"):
        shutil.copy(BENCH / name, workdir / name)
    return workdir


def _baseline_tree(stack: ExitStack, rev: str) -> tuple[str, Path]:
    """The files of git revision ``rev`` of this repository in a temporary directory.

    Returns:
        The revision's short hash and the directory.

    Raises:
        SystemExit: ``rev`` is not a revision of this repository.
    """
    try:
        short = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", f"{rev}^{{commit}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", short],
            check=True,
            capture_output=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--baseline {rev}: {exc.stderr.strip() or exc}") from exc
    tree = Path(tempfile.mkdtemp(prefix=f"bench-baseline-{short}-"))
    stack.callback(shutil.rmtree, tree, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return short, tree


def _baseline_database(stack: ExitStack, database_url: str, short: str) -> str:
    """A new, empty database beside ``database_url``'s (a ``postgresql://`` URL) for the
    baseline, dropped at the end: its revision's migrations are not this checkout's."""
    name = f"{conninfo_to_dict(database_url).get('dbname') or 'staffgraph'}_baseline_{short}"
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))

    def drop() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(statement)

    drop()  # a bench killed before its clean-up left it behind
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    stack.callback(drop)
    # A URL again, with only the database changed: servers' settings take URLs.
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


def _start_baseline(
    stack: ExitStack, rev: str, database_url: str, pg_pid: int | None
) -> tuple[str, ServerProcess, int | None]:
    """staffgraph at revision ``rev``, serving this checkout's bench graph on its own database."""
    short, tree = _baseline_tree(stack, rev)
    config = _graph_workdir(stack, f"bench-baseline-{short}-graph-") / "langgraph.json"
    env = _staffgraph_env(_baseline_database(stack, database_url, short))
    name = f"staffgraph@{short}"
    # The revision's packages, not this checkout's (installed in editable mode), come first.
    server = stack.enter_context(
        run_server(
            name,
            _staffgraph_argv(port := free_port(), config),
            {**env, "PYTHONPATH": str(tree)},
            port,
            cwd=tree,
        )
    )
    wait_for(server.url, "/ready", process=server.process, name=name, timeout=120)
    return name, server, pg_pid


def _official_argv(cli: str, port: int, workdir: Path) -> list[str]:
    config = str(workdir / "langgraph.json")
    return [cli, "dev", "--no-browser", "--no-reload", "--port", str(port), "--config", config]


def _official_starter(cli: str) -> Callable[[ExitStack], ServerProcess]:
    """Start ``langgraph dev`` in a fresh working directory, stopped with the given stack."""

    def start(stack: ExitStack) -> ServerProcess:
        workdir = _graph_workdir(stack, "bench-official-")
        port = free_port()
        return stack.enter_context(
            run_server(
                "official",
                _official_argv(cli, port, workdir),
                {"LANGSMITH_TRACING": "false", "LOG_LEVEL": "WARNING"},
                port,
                # `langgraph dev` resolves graph paths against its working directory.
                cwd=workdir,
            )
        )

    return start


async def _measure_all(
    servers: list[tuple[str, ServerProcess, int | None]],
    database_url: str,
    args: argparse.Namespace,
    official: Callable[[ExitStack], ServerProcess] | None,
) -> list[Target]:
    """Measure every round. ``servers`` run for the whole bench; ``official`` starts the
    official server anew for every round (see :func:`main`)."""
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with AsyncExitStack() as stack:
        targets = []
        for name, server, pg_pid in servers:
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits)
            )
            load = LoadClients(args.clients, server.url)
            stack.push_async_callback(load.aclose)
            targets.append(
                http_target(name, client, cpu_pid=server.process.pid, pg_pid=pg_pid, load=load)
            )
        if official is not None:
            # One client for every round's official server: its base URL and the process
            # whose CPU counts change as each round starts one.
            official_client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=60, limits=limits)
            )
            official_load = LoadClients(args.clients)
            stack.push_async_callback(official_load.aclose)
            targets.insert(
                1, http_target("official", official_client, cpu_pid=0, load=official_load)
            )
        if not args.skip_floor:
            # The server's pool size (DATABASE_POOL_MAX_SIZE's default) and checkpointer.
            persistence = await stack.enter_async_context(open_persistence(database_url))
            langgraph_saver = AsyncPostgresSaver(
                persistence.pool,  # type: ignore[arg-type]  # a pool of dict-row connections
                serde=persistence.checkpointer.serde,
            )
            targets.append(floor_target(langgraph_saver, pg_pid=servers[0][2]))
            targets.append(
                floor_target(persistence.checkpointer, pg_pid=servers[0][2], name="floor-sg")
            )
        for number in range(1, args.rounds + 1):
            with ExitStack() as round_servers:
                if official is not None:
                    server = official(round_servers)
                    print(
                        f"official started for round {number}: /ok after {server.ok_after_s:.2f} s",
                        flush=True,
                    )
                    official_client.base_url = httpx.URL(server.url)
                    official_load.point_at(server.url)
                    targets[1].cpu_pid = server.process.pid
                await measure_round(targets, args, number)
        return targets


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    # The official server answers each runs.wait and stream in ~1 s (it polls for the run's
    # end), so 100 of each per round keeps three rounds of all targets near ten minutes.
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--first-event", type=int, default=100)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument(
        "--windows",
        type=int,
        default=3,
        help="windows the throughput phase of each target is cut into, taken in turn",
    )
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure staffgraph as it was at git revision REV (e.g. a commit before a "
        "change), started from that revision's files with this environment",
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 50+50 runs, 5 s")
    args = parser.parse_args()
    if args.windows < 1:
        parser.error("--windows must be at least 1")
    if args.quick:
        args.rounds, args.sequential, args.first_event, args.duration = 1, 50, 50, 5.0

    official_cli = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    if args.skip_official:
        print("official dev server skipped (--skip-official)")
    elif official_cli is None:
        print("official dev server not measured: install langgraph-cli[inmem] for the comparison")
    with ExitStack() as stack:
        database_url, pg_pid = _database(stack)
        ours = stack.enter_context(
            run_server(
                "staffgraph",
                _staffgraph_argv(port := free_port()),
                _staffgraph_env(database_url),
                port,
            )
        )
        wait_for(ours.url, "/ready", process=ours.process, name="staffgraph", timeout=120)
        servers = [("staffgraph", ours, pg_pid)]
        if args.baseline:
            servers.append(_start_baseline(stack, args.baseline, database_url, pg_pid))
        print(f"staffgraph answered /ok {ours.ok_after_s:.2f} s after it was spawned", flush=True)
        official = (
            _official_starter(official_cli)
            if official_cli is not None and not args.skip_official
            else None
        )
        targets = asyncio.run(_measure_all(servers, database_url, args, official))
    report(targets, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
