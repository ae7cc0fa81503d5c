"""What LangSmith tracing costs a run: the server bench with tracing off, then on.

Starts ``staffgraph serve`` on ``bench/graphs.py:graph`` twice, the same way
``bench/server_bench.py`` does: once with ``LANGSMITH_TRACING=false``, once tracing to a local
LangSmith collector (``bench/langsmith_collector.py``, which ingests what the
``langsmith`` client sends: zstd multipart, the same path as LangSmith itself). Measures each
with the server bench's own loops (sequential ``runs.wait`` latency, time to the first stream
event, throughput of concurrent clients) and prints both and the differences. ``--rounds N``
alternates off/on N times and keeps every sample, so drift of the machine hits both alike.

Usage: ``python bench/tracing_overhead.py [--sequential 300] [--first-event 50]
[--clients 32] [--duration 5] [--rounds 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from server_bench import CONFIG, Result, _free_port, _measure, _pct, _server  # noqa: E402

from bench.langsmith_collector import LangSmithCollector  # noqa: E402


def _serve_and_measure(name: str, env: dict[str, str], args: argparse.Namespace) -> Result:
    home = tempfile.mkdtemp(prefix="bench-tracing-home-")
    port = _free_port()
    argv = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    try:
        with _server(
            name,
            [*argv, "--config", str(CONFIG)],
            {"STAFFGRAPH_HOME": home, "STAFFGRAPH_LOG_LEVEL": "warning", **env},
            port,
        ) as url:
            return asyncio.run(_measure(name, url, args))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _merge(into: Result, more: Result) -> None:
    into.sequential_ms += more.sequential_ms
    into.first_event_ms += more.first_event_ms
    into.completed += more.completed
    into.errors += more.errors


def main() -> int:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--first-event", type=int, default=50)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    off, on = Result("tracing off"), Result("tracing on")
    spans = 0
    for _ in range(args.rounds):
        _merge(off, _serve_and_measure("tracing-off", {"LANGSMITH_TRACING": "false"}, args))
        with LangSmithCollector() as collector:
            env = {
                "LANGSMITH_TRACING": "true",
                "LANGSMITH_ENDPOINT": collector.url,
                "LANGSMITH_API_KEY": "bench",
                "LANGSMITH_PROJECT": "bench",
            }
            _merge(on, _serve_and_measure("tracing-on", env, args))
            spans += len(collector.runs)
    for result in (off, on):
        result.throughput = result.completed / (args.duration * args.rounds)

    print()
    print(
        f"{'':<12} {'seq p50':>9} {'seq p95':>9} {'seq mean':>9} {'1st ev p50':>11} "
        f"{'runs/s':>8} {'errors':>7}"
    )
    for r in (off, on):
        seq50, seq95 = _pct(r.sequential_ms, 0.5), _pct(r.sequential_ms, 0.95)
        mean, first50 = statistics.fmean(r.sequential_ms), _pct(r.first_event_ms, 0.5)
        print(
            f"{r.name:<12} {seq50:>7.2f}ms {seq95:>7.2f}ms {mean:>7.2f}ms {first50:>9.2f}ms "
            f"{r.throughput:>8.1f} {r.errors:>7}"
        )
    d50 = _pct(on.sequential_ms, 0.5) - _pct(off.sequential_ms, 0.5)
    d95 = _pct(on.sequential_ms, 0.95) - _pct(off.sequential_ms, 0.95)
    ratio = on.throughput / max(off.throughput, 1e-9)
    print()
    print(
        f"tracing overhead: seq p50 {d50:+.2f} ms, seq p95 {d95:+.2f} ms, "
        f"throughput x{ratio:.2f}; the collector received {spans} spans"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
