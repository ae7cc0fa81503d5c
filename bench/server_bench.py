"""Benchmark staffgraph's server against the official LangGraph dev server on the same graph.

Starts ``staffgraph serve`` (Postgres checkpoints: the embedded server unless ``DATABASE_URL`` is
set) and, when ``langgraph-cli[inmem]`` is installed, ``langgraph dev`` (in-memory), both on
``bench/graphs.py:graph``, then measures for each, in the same run:

- sequential ``POST /threads/{id}/runs/wait`` latency (p50, p95) with ``durability="sync"``;
- time to the first stream event of ``POST /threads/{id}/runs/stream`` (p50, p95);
- throughput of runs.wait with N concurrent clients for D seconds, and errors;

and prints the figures and the ratios staffgraph / official.

Usage: ``python bench/server_bench.py [--sequential 300] [--first-event 200] [--clients 32]
[--duration 20] [--skip-official]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONFIG = BENCH / "langgraph.json"
RUN_BODY = {"assistant_id": "trivial", "input": {"n": 0}, "durability": "sync"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(
    name: str, argv: list[str], env: dict[str, str], port: int, *, cwd: Path = REPO
) -> Iterator[str]:
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early; log in {log.name}")
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in 120 s; log in {log.name}")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Result:
    """Figures for one server."""

    name: str
    sequential_ms: list[float] = field(default_factory=list)
    first_event_ms: list[float] = field(default_factory=list)
    throughput: float = 0.0
    completed: int = 0
    errors: int = 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _new_thread(client: httpx.AsyncClient) -> str:
    response = await client.post("/threads", json={})
    response.raise_for_status()
    return str(response.json()["thread_id"])


async def _wait_run(client: httpx.AsyncClient, thread_id: str) -> bool:
    response = await client.post(f"/threads/{thread_id}/runs/wait", json=RUN_BODY)
    return response.status_code == 200 and "__error__" not in response.json()


async def _sequential(url: str, count: int) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        thread_id = await _new_thread(client)
        for _ in range(10):  # warm-up: imports, caches, connection pool
            await _wait_run(client, thread_id)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            ok = await _wait_run(client, thread_id)
            samples.append((time.perf_counter() - start) * 1000)
            if not ok:
                raise RuntimeError("a sequential run failed")
        return samples


async def _first_event(url: str, count: int) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        thread_id = await _new_thread(client)
        samples = []
        for i in range(count + 5):
            start = time.perf_counter()
            async with client.stream(
                "POST",
                f"/threads/{thread_id}/runs/stream",
                json={**RUN_BODY, "stream_mode": "values"},
            ) as response:
                first = None
                async for line in response.aiter_lines():
                    if first is None and line.startswith("event:"):
                        first = (time.perf_counter() - start) * 1000
                    # read to the end so the next run does not meet a busy thread
            if i >= 5 and first is not None:
                samples.append(first)
        return samples


async def _throughput(url: str, clients: int, duration: float) -> tuple[int, int]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        threads = [await _new_thread(client) for _ in range(clients)]
        completed = errors = 0
        stop_at = time.perf_counter() + duration

        async def worker(thread_id: str) -> None:
            nonlocal completed, errors
            while time.perf_counter() < stop_at:
                try:
                    if await _wait_run(client, thread_id):
                        completed += 1
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1

        await asyncio.gather(*(worker(t) for t in threads))
        return completed, errors


async def _measure(name: str, url: str, args: argparse.Namespace) -> Result:
    result = Result(name)
    print(f"[{name}] sequential runs.wait x{args.sequential} …", flush=True)
    result.sequential_ms = await _sequential(url, args.sequential)
    seq50, seq95 = _pct(result.sequential_ms, 0.5), _pct(result.sequential_ms, 0.95)
    print(f"[{name}]   p50 {seq50:.2f} ms, p95 {seq95:.2f} ms", flush=True)
    print(f"[{name}] first stream event x{args.first_event} …", flush=True)
    result.first_event_ms = await _first_event(url, args.first_event)
    first50, first95 = _pct(result.first_event_ms, 0.5), _pct(result.first_event_ms, 0.95)
    print(f"[{name}]   p50 {first50:.2f} ms, p95 {first95:.2f} ms", flush=True)
    print(f"[{name}] {args.clients} clients for {args.duration:.0f} s …", flush=True)
    result.completed, result.errors = await _throughput(url, args.clients, args.duration)
    result.throughput = result.completed / args.duration
    print(f"[{name}]   {result.throughput:.1f} runs/s, {result.errors} errors", flush=True)
    return result


def _report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"{'server':<12} {'seq p50':>9} {'seq p95':>9} {'1st ev p50':>11} {'1st ev p95':>11} "
        f"{'runs/s':>9} {'errors':>7}"
    )
    for r in results:
        seq50, seq95 = _pct(r.sequential_ms, 0.5), _pct(r.sequential_ms, 0.95)
        first50, first95 = _pct(r.first_event_ms, 0.5), _pct(r.first_event_ms, 0.95)
        print(
            f"{r.name:<12} {seq50:>7.2f}ms {seq95:>7.2f}ms {first50:>9.2f}ms {first95:>9.2f}ms "
            f"{r.throughput:>9.1f} {r.errors:>7}"
        )
    ours = results[0]
    seq50, first50 = _pct(ours.sequential_ms, 0.5), _pct(ours.first_event_ms, 0.5)
    print()
    print(
        f"targets (staffgraph): seq p50 <= 8 ms: {seq50:.2f} ms; "
        f"first event p50 <= 5 ms: {first50:.2f} ms; errors 0: {ours.errors}"
    )
    if len(results) > 1:
        peer = results[1]
        print(
            "ratios staffgraph/official: "
            f"seq p50 {seq50 / _pct(peer.sequential_ms, 0.5):.2f}x, "
            f"first event p50 {first50 / _pct(peer.first_event_ms, 0.5):.2f}x, "
            f"throughput {ours.throughput / max(peer.throughput, 1e-9):.2f}x (target >= 2.5x)"
        )
    mean = statistics.fmean(ours.sequential_ms)
    print(f"(mean seq {mean:.2f} ms over {len(ours.sequential_ms)} runs)")


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--first-event", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--skip-official", action="store_true")
    args = parser.parse_args()

    results: list[Result] = []
    home = tempfile.mkdtemp(prefix="bench-staffgraph-home-")
    port = _free_port()
    env = {"STAFFGRAPH_HOME": home, "STAFFGRAPH_LOG_LEVEL": "warning", "LANGSMITH_TRACING": "false"}
    try:
        with _server(
            "staffgraph",
            [
                sys.executable,
                "-m",
                "server.cli",
                "serve",
                "--port",
                str(port),
                "--config",
                str(CONFIG),
            ],
            env,
            port,
        ) as url:
            results.append(asyncio.run(_measure("staffgraph", url, args)))
    finally:
        shutil.rmtree(home, ignore_errors=True)

    langgraph_cli = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    if args.skip_official:
        print("official dev server skipped (--skip-official)")
    elif langgraph_cli is None:
        print("official dev server not measured: install langgraph-cli[inmem] for the comparison")
    else:
        port = _free_port()
        with _server(
            "official",
            [
                langgraph_cli,
                "dev",
                "--no-browser",
                "--no-reload",
                "--port",
                str(port),
                "--config",
                str(CONFIG),
            ],
            {"LANGSMITH_TRACING": "false", "LOG_LEVEL": "WARNING"},
            port,
            # `langgraph dev` resolves graph paths against its working directory.
            cwd=BENCH,
        ) as url:
            results.append(asyncio.run(_measure("official", url, args)))
    _report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
