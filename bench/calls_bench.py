"""Python function calls a run costs the server: a figure that a busy machine does not move.

``bench/server_bench.py`` measures the server's CPU milliseconds per run. On this project's
shared two-core machine that figure moves by up to a tenth from one run of the bench to the
next with the same code (the client, the server and Postgres contend for the cores), which
hides any change smaller than that. The number of Python function calls the server makes per
run depends on the code and the load's shape only, so it shows a change of a few percent, and
which part of the stack it came from.

Each target is ``staffgraph serve`` (one process) started by a small bootstrap
(:data:`BOOTSTRAP`) that turns :mod:`cProfile` on in the event loop's thread on ``SIGUSR1``
and writes its statistics on ``SIGUSR2``: start-up, warm-up and shutdown are not counted, and
no other thread is. With ``--baseline REV`` the same is measured for the revision ``REV``
(its files from ``git archive``, this checkout's Python environment, its own database of the
same Postgres), in the same run.

Each round, per target: ``--clients`` concurrent clients (one thread each) make
``--runs-per-client`` runs each of the bench's one-node graph with ``POST
/threads/{id}/runs/wait`` (``durability="sync"``), as the throughput phase of
``server_bench.py`` does, with the profiler on. It prints per target the calls per run
(cProfile counts a coroutine's every resumption as a call, for every target alike), the
median and spread over the rounds, the packages that make most of them, and the ratio of
staffgraph's median to the baseline's.

Usage: ``python bench/calls_bench.py [--rounds 3] [--clients 32] [--runs-per-client 20]
[--baseline REV] [--keep-stats DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (  # noqa: E402
    REPO,
    ServerProcess,
    free_port,
    run_server,
    spread,
    wait_for,
)
from bench.server_bench import (  # noqa: E402
    CONFIG,
    RUN_BODY,
    _baseline_database,
    _baseline_tree,
    _database,
    _graph_workdir,
    _staffgraph_env,
)

STATS_ENV = "STAFFGRAPH_BENCH_CALLS_OUT"
"""Where the bootstrap writes its statistics (``.on`` beside it once profiling is on)."""

BOOTSTRAP = f"""
import cProfile, os, runpy, signal, sys
out = os.environ[{STATS_ENV!r}]
profiler = cProfile.Profile()
def on(*_):
    global profiler
    profiler = cProfile.Profile()  # each round counts its own calls only
    profiler.enable()
    open(out + ".on", "w").close()
def off(*_):
    profiler.disable()
    profiler.dump_stats(out + ".tmp")
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR1, on)
signal.signal(signal.SIGUSR2, off)
sys.argv = ["server.cli", *sys.argv[1:]]
runpy.run_module("server.cli", run_name="__main__", alter_sys=True)
"""
"""Runs the server's CLI with the profiler switched by signals. Given with ``-c``, so the
working directory (this checkout, or the baseline's tree) is first on ``sys.path``: a script
in ``bench/`` would put ``bench/graphs.py`` ahead of the product's ``graphs`` package."""

WARM_UP = 5
"""Runs each client makes before the profiler is on (graph loaded, caches filled)."""


def _argv(port: int, config: Path) -> list[str]:
    return [sys.executable, "-c", BOOTSTRAP, "serve", "--port", str(port), "--config", str(config)]


async def _runs(url: str, clients: int, per_client: int, threads: list[str] | None) -> list[str]:
    """``per_client`` runs on each of ``clients`` threads at once (new threads unless given)."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        if threads is None:
            threads = []
            for _ in range(clients):
                answer = await client.post("/threads", json={})
                answer.raise_for_status()
                threads.append(str(answer.json()["thread_id"]))

        async def one_client(thread_id: str) -> None:
            for _ in range(per_client):
                answer = await client.post(f"/threads/{thread_id}/runs/wait", json=RUN_BODY)
                if answer.status_code != 200 or "__error__" in answer.json():
                    raise RuntimeError(f"run failed: {answer.status_code} {answer.text[:200]}")

        await asyncio.gather(*(one_client(t) for t in threads))
    return threads


def _wait_for_file(path: Path, server: ServerProcess, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not {what}; log in {server.log_path}")
        time.sleep(0.01)  # the server's only sign is the file


def _profiled_round(
    server: ServerProcess, out: Path, clients: int, per_client: int, threads: list[str]
) -> pstats.Stats:
    """One round's statistics: the profiler on, the runs made, the statistics written."""
    for stale in (out, out.with_name(out.name + ".on")):
        stale.unlink(missing_ok=True)
    os.kill(server.process.pid, signal.SIGUSR1)
    _wait_for_file(out.with_name(out.name + ".on"), server, "turn its profiler on")
    asyncio.run(_runs(server.url, clients, per_client, threads))
    os.kill(server.process.pid, signal.SIGUSR2)
    _wait_for_file(out, server, "write its profile")
    return pstats.Stats(str(out))


def _package(filename: str, root: Path) -> str:
    """The package a profiled function of the server in ``root`` belongs to (``builtins``
    for functions written in C)."""
    if filename == "~":
        return "builtins"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    path = Path(filename)
    if path.is_relative_to(root):
        return "staffgraph:" + path.relative_to(root).parts[0]
    return "stdlib and others"


def _calls(stats: pstats.Stats, root: Path) -> tuple[int, collections.Counter[str]]:
    """All calls, and the calls per package."""
    by_package: collections.Counter[str] = collections.Counter()
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename, root)] += row[1]
    return sum(by_package.values()), by_package


def measure(
    name: str, server: ServerProcess, root: Path, out: Path, args: argparse.Namespace
) -> tuple[list[float], collections.Counter[str]]:
    """Calls per run in each round, and the calls per run by package over all rounds."""
    threads = asyncio.run(_runs(server.url, args.clients, WARM_UP, None))
    per_run: list[float] = []
    total: collections.Counter[str] = collections.Counter()
    runs = args.clients * args.runs_per_client
    for number in range(1, args.rounds + 1):
        calls, by_package = _calls(
            _profiled_round(server, out, args.clients, args.runs_per_client, threads), root
        )
        per_run.append(calls / runs)
        total.update(by_package)
        print(f"[round {number} {name}] {calls / runs:,.0f} calls a run over {runs} runs")
    return per_run, collections.Counter(
        {k: round(v / (runs * args.rounds)) for k, v in total.items()}
    )


def main() -> int:
    """Run the bench and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--runs-per-client", type=int, default=20)
    parser.add_argument("--baseline", metavar="REV", help="measure git revision REV as well")
    parser.add_argument(
        "--keep-stats",
        metavar="DIR",
        type=Path,
        help="keep each target's last round as DIR/<target>.prof (pstats), to see which calls",
    )
    args = parser.parse_args()
    results: dict[str, tuple[list[float], collections.Counter[str]]] = {}
    with ExitStack() as stack:
        database_url, _ = _database(stack)
        scratch = Path(tempfile.mkdtemp(prefix="bench-calls-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        targets: list[tuple[str, list[str], dict[str, str], Path]] = []
        port = free_port()
        targets.append(("staffgraph", _argv(port, CONFIG), _staffgraph_env(database_url), REPO))
        if args.baseline:
            short, tree = _baseline_tree(stack, args.baseline)
            config = _graph_workdir(stack, f"bench-baseline-{short}-graph-") / "langgraph.json"
            env = {
                **_staffgraph_env(_baseline_database(stack, database_url, short)),
                "PYTHONPATH": str(tree),
            }
            targets.append((f"staffgraph@{short}", _argv(free_port(), config), env, tree))
        for name, argv, env, cwd in targets:
            # One server at a time: the other's idle work is not in this one's profile anyway,
            # but its start-up would slow this one's rounds for nothing.
            port = int(argv[argv.index("--port") + 1])
            out = scratch / f"{name}.prof"
            # One process, whatever the cores: the signals reach the process that serves. (An
            # environment variable, not `--processes`, which older revisions do not take.)
            env = {**env, STATS_ENV: str(out), "STAFFGRAPH_PROCESSES": "1"}
            with run_server(name, argv, env, port, cwd=cwd) as server:
                wait_for(server.url, "/ready", process=server.process, name=name, timeout=120)
                results[name] = measure(name, server, cwd, out, args)
            if args.keep_stats is not None:
                args.keep_stats.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, args.keep_stats / out.name)
    _report(results, args)
    return 0


def _report(
    results: dict[str, tuple[list[float], collections.Counter[str]]], args: argparse.Namespace
) -> None:
    print(
        f"\n{args.rounds} round(s) of {args.clients} clients x {args.runs_per_client} runs; "
        "calls a run, median (min–max)"
    )
    for name, (per_run, by_package) in results.items():
        print(f"{name:<24} {spread(per_run, digits=0)}")
        top = ", ".join(f"{package} {count:,}" for package, count in by_package.most_common(8))
        print(f"  {'by package':<22} {top}")
    names = list(results)
    if len(names) == 2:
        ours, theirs = (statistics.median(results[n][0]) for n in names)
        print(f"\nratio {names[0]} / {names[1]} (medians): {ours / theirs:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
