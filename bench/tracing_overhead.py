"""What LangSmith tracing costs a run: the server bench with tracing off, then on.

Starts ``staffgraph serve`` on ``bench/graphs.py:graph`` twice on the same Postgres, the way
``bench/server_bench.py`` does: once with ``LANGSMITH_TRACING=false``, once tracing to a local
LangSmith collector (``bench/langsmith_collector.py``, which ingests what the ``langsmith``
client sends: zstd multipart, the same path as LangSmith itself). Both are measured with the
server bench's own round (sequential ``runs.wait`` latency, time to the first stream event,
throughput of concurrent clients, CPU per run), alternating off/on round after round so drift
of the machine hits both alike; then each figure's median (min–max) and the on/off ratio.

Usage: ``python bench/tracing_overhead.py [--rounds 3] [--sequential 100] [--first-event 100]
[--clients 32] [--duration 15] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import ServerProcess, free_port, run_server, spread, wait_for  # noqa: E402
from bench.langsmith_collector import LangSmithCollector  # noqa: E402
from bench.server_bench import (  # noqa: E402
    FIGURES,
    Target,
    _database,
    _median,
    _staffgraph_argv,
    http_target,
    measure_round,
)


def _server(stack: ExitStack, name: str, database_url: str, env: dict[str, str]) -> ServerProcess:
    server = stack.enter_context(
        run_server(
            name,
            _staffgraph_argv(port := free_port()),
            {
                "DATABASE_URL": database_url,
                "EMBEDDINGS": "hashing",
                "STAFFGRAPH_LOG_LEVEL": "warning",
                **env,
            },
            port,
        )
    )
    wait_for(server.url, "/ready", process=server.process, name=name, timeout=120)
    return server


async def _measure(
    servers: list[tuple[str, ServerProcess]], pg_pid: int | None, args: argparse.Namespace
) -> list[Target]:
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with AsyncExitStack() as stack:
        targets = []
        for name, server in servers:
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits)
            )
            targets.append(http_target(name, client, cpu_pid=server.process.pid, pg_pid=pg_pid))
        for number in range(1, args.rounds + 1):
            for target in targets:
                await measure_round(target, args, number)
        return targets


def _report(off: Target, on: Target, spans: int, args: argparse.Namespace) -> None:
    print()
    print(
        f"{len(off.rounds)} round(s); {args.sequential} sequential runs, {args.first_event} "
        f"streams, {args.clients} clients for {args.duration:.0f} s per round; median (min–max)"
    )
    print(f"{'figure':<24}{'tracing off':>28}{'tracing on':>28}{'on / off':>10}")
    for label, unit, figure in FIGURES:
        label = label.replace("N clients", f"{args.clients} clients")
        digits = 0 if label == "errors" else 2
        cells = [spread([figure(r) for r in t.rounds], unit, digits) for t in (off, on)]
        before, after = _median(off, figure), _median(on, figure)
        ratio = after / before if before == before and before else float("nan")
        shown = "" if label == "errors" else f"{ratio:.2f}x"
        print(f"{label:<24}{cells[0]:>28}{cells[1]:>28}{shown:>10}")
    print()
    print(f"the collector received {spans} spans")


def main() -> int:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--first-event", type=int, default=100)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="1 round, 50+50 runs, 5 s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.sequential, args.first_event, args.duration = 1, 50, 50, 5.0

    with ExitStack() as stack:
        database_url, pg_pid = _database(stack)
        collector = stack.enter_context(LangSmithCollector())
        off = _server(stack, "tracing-off", database_url, {"LANGSMITH_TRACING": "false"})
        tracing = {
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_ENDPOINT": collector.url,
            "LANGSMITH_API_KEY": "bench",
            "LANGSMITH_PROJECT": "bench",
        }
        on = _server(stack, "tracing-on", database_url, tracing)
        targets = asyncio.run(_measure([("tracing off", off), ("tracing on", on)], pg_pid, args))
        spans = len(collector.runs)
    _report(targets[0], targets[1], spans, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
