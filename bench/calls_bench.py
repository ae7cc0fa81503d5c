"""Function calls a run costs the server: a figure that a busy machine hardly moves.

``bench/server_bench.py`` measures the server's CPU milliseconds per run. On this project's
shared two-core machine that figure moves by up to a tenth from one run of the bench to the
next with the same code (the client, the server and Postgres contend for the cores), which
hides any change smaller than that. The number of function calls the server makes per run
(cProfile's count: Python functions, and the built-in ones they call) depends on the code and
the load's shape, and only a little on time (the background loops, heartbeats and sweeps,
count per second rather than per run), so it shows a change of a few percent, and which part
of the stack it came from. It does not see what a call costs, nor system calls: a change that
saves a round trip to Postgres saves CPU this figure misses.

Each target is ``staffgraph serve`` (one process) started by a small bootstrap
(:data:`BOOTSTRAP`) that turns :mod:`cProfile` on in the event loop's thread on ``SIGUSR1``
and writes its statistics on ``SIGUSR2``: start-up, warm-up and shutdown are not counted, and
on Python 3.11 (the project's) no other thread is (from 3.12 cProfile sees every thread).
With ``--baseline REV`` the same is measured for the revision ``REV`` (its files from ``git
archive``, this checkout's Python environment, its own database of the same Postgres), in the
same run; both serve the bench graph from a working directory of their own.

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
from dataclasses import dataclass
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
    _baseline_database,
    _baseline_tree,
    _database,
    _graph_workdir,
    _staffgraph_env,
    http_target,
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


@dataclass
class Target:
    """A server to profile: how to start it, and which files are its own code and the graph."""

    name: str
    env: dict[str, str]
    cwd: Path
    """Where it runs from (its code's root: this checkout, or the baseline's tree)."""
    config: Path
    """Its ``langgraph.json``, in a working directory of its own with the bench graph."""


async def _wait_for_file(path: Path, server: ServerProcess, what: str) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not {what}; log in {server.log_path}")
        await asyncio.sleep(0.01)  # the server's only sign is the file


async def _measure(
    server: ServerProcess, out: Path, args: argparse.Namespace
) -> list[pstats.Stats]:
    """Each round's statistics, all with one client (its connections opened in the warm-up,
    before the profiler is first on): the profiler on, the runs made, the statistics written."""
    clients = args.clients
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        target = http_target("server", client, cpu_pid=server.process.pid)  # the server bench's
        threads = [await target.new_thread() for _ in range(clients)]

        async def runs(count: int) -> None:
            async def one_client(thread_id: str) -> None:
                for _ in range(count):
                    if not await target.wait_run(thread_id):
                        raise RuntimeError(f"a run failed; log in {server.log_path}")

            await asyncio.gather(*(one_client(t) for t in threads))

        await runs(WARM_UP)
        rounds = []
        switched_on = out.with_name(out.name + ".on")
        for _ in range(args.rounds):
            out.unlink(missing_ok=True)
            switched_on.unlink(missing_ok=True)
            os.kill(server.process.pid, signal.SIGUSR1)
            await _wait_for_file(switched_on, server, "turn its profiler on")
            await runs(args.runs_per_client)
            os.kill(server.process.pid, signal.SIGUSR2)
            await _wait_for_file(out, server, "write its profile")
            rounds.append(pstats.Stats(str(out)))
    return rounds


def _package(filename: str, target: Target) -> str:
    """The package a profiled function of ``target`` belongs to: ``builtins`` for functions
    written in C, ``graph`` for the bench graph's module."""
    if filename == "~":
        return "builtins"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    path = Path(filename)
    if path.is_relative_to(target.config.parent):
        return "graph"
    if path.is_relative_to(target.cwd):
        return "staffgraph:" + path.relative_to(target.cwd).parts[0]
    return "stdlib and others"


def _calls(stats: pstats.Stats, target: Target) -> collections.Counter[str]:
    """The calls per package."""
    by_package: collections.Counter[str] = collections.Counter()
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename, target)] += row[1]
    return by_package


def measure(
    target: Target, scratch: Path, args: argparse.Namespace
) -> tuple[list[float], collections.Counter[str]]:
    """Calls per run in each round, and the calls per run by package over all rounds."""
    out = scratch / f"{target.name}.prof"
    # One process, whatever the cores: the signals reach the process that serves. (An
    # environment variable, not `--processes`, which older revisions do not take.)
    env = {**target.env, STATS_ENV: str(out), "STAFFGRAPH_PROCESSES": "1"}
    port = free_port()
    with run_server(target.name, _argv(port, target.config), env, port, cwd=target.cwd) as server:
        wait_for(server.url, "/ready", process=server.process, name=target.name, timeout=120)
        rounds = asyncio.run(_measure(server, out, args))
    if args.keep_stats is not None:
        args.keep_stats.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, args.keep_stats / out.name)
    runs = args.clients * args.runs_per_client
    per_run: list[float] = []
    total: collections.Counter[str] = collections.Counter()
    for number, stats in enumerate(rounds, 1):
        by_package = _calls(stats, target)
        per_run.append(by_package.total() / runs)
        total.update(by_package)
        print(
            f"[round {number} {target.name}] {per_run[-1]:,.0f} calls a run over {runs} runs",
            flush=True,
        )
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
    for option in ("rounds", "clients", "runs_per_client"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    results: dict[str, tuple[list[float], collections.Counter[str]]] = {}
    with ExitStack() as stack:
        database_url, _ = _database(stack)
        scratch = Path(tempfile.mkdtemp(prefix="bench-calls-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        # Both run the bench graph from a working directory of their own, so its calls are
        # told apart alike; paths resolved, as the profiled process sees them.
        workdir = _graph_workdir(stack, "bench-calls-graph-").resolve()
        targets = [
            Target("staffgraph", _staffgraph_env(database_url), REPO, workdir / "langgraph.json")
        ]
        if args.baseline:
            short, tree = _baseline_tree(stack, args.baseline)
            workdir = _graph_workdir(stack, f"bench-baseline-{short}-graph-").resolve()
            env = _staffgraph_env(_baseline_database(stack, database_url, short))
            targets.append(
                Target(
                    f"staffgraph@{short}",
                    {**env, "PYTHONPATH": str(tree.resolve())},
                    tree.resolve(),
                    workdir / "langgraph.json",
                )
            )
        # One server at a time: the other's idle work is not in this one's profile anyway,
        # but its start-up would slow this one's rounds for nothing.
        for target in targets:
            results[target.name] = measure(target, scratch, args)
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
