"""Cold start of ``staffgraph serve``, and Store API search latency with the local MiniLM model.

Cold start: each round spawns ``staffgraph serve`` (the repo's langgraph.json, embedded
Postgres, ``EMBEDDINGS`` as the environment sets it: by default the local all-MiniLM-L6-v2)
first on a fresh ``STAFFGRAPH_HOME`` (``initdb`` included), then again on that same, now
existing, home, and times from spawning the process to the first 200 from ``/ok`` (liveness:
the port answers it while the app starts behind it), to the API being up (a ``GET /info``
sent right after ``/ok``, which the server holds until its app has started), and to the first
200 from ``/ready`` (which waits for the graphs and the embedding model), and reads the CPU
seconds the server had used when ``/ok`` answered (start-up's cost without the wait for a busy
machine's cores). It also times ``import server.cli`` in a fresh interpreter. Targets: ``/ok``
within 3 s on an existing home, 5 s on a fresh one.

Store search: on the last round's server, ``--items`` texts are stored with
``PUT /store/items`` (each embedded by the server) and ``--queries`` different questions are
sent one after the other to ``POST /store/items/search`` (query embedding, HNSW search and
JSON included): p50 and p95 of the client-side latency, and the CPU milliseconds the server
process spent per search (a figure that waiting for a busy machine's cores does not inflate;
the embedded Postgres runs outside the server's process tree and is not in it). Target:
p95 <= 20 ms.

Usage: ``python bench/startup_bench.py [--rounds 3] [--items 1000] [--queries 200]
[--config langgraph.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (  # noqa: E402
    REPO,
    UNREACHED_LIMITS,
    free_port,
    pct,
    run_server,
    spread,
    tree_cpu_seconds,
    wait_for,
)

OK_TARGET_S = {"existing": 3.0, "fresh": 5.0}
SEARCH_P95_TARGET_MS = 20.0

_SUBJECTS = [
    "The finance team",
    "Our Berlin office",
    "The support desk",
    "Maria",
    "The CTO",
    "The design guild",
    "Customer Acme",
    "The night shift",
    "Legal",
    "The data team",
]
_VERBS = [
    "prefers",
    "asked about",
    "approved",
    "rejected",
    "scheduled",
    "reviewed",
    "needs",
    "complained about",
    "budgeted for",
    "is migrating",
]
_OBJECTS = [
    "quarterly invoices",
    "the new onboarding guide",
    "weekly status calls",
    "dark-mode dashboards",
    "a Postgres upgrade",
    "travel expenses",
    "the vendor contract",
    "on-call rotations",
    "Kubernetes costs",
    "the hiring plan",
    "espresso machines",
    "security training",
    "the marketing launch",
    "refund requests",
    "API rate limits",
]
_WHEN = [
    "on Mondays",
    "before the audit",
    "next quarter",
    "every sprint",
    "since March",
    "after the outage",
    "in the morning",
    "for the board meeting",
]


def _sentence(rng: random.Random) -> str:
    return " ".join(
        [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_WHEN)]
    )


def _import_seconds() -> float:
    probe = (
        "import time; t = time.perf_counter(); import server.cli; print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def _serve_argv(port: int, config: Path) -> list[str]:
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


async def _store_search(url: str, pid: int, items: int, queries: int) -> tuple[list[float], float]:
    rng = random.Random(7)
    namespace = ["bench", uuid.uuid4().hex[:8]]
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        texts = [_sentence(rng) for _ in range(items)]

        async def put(batch: list[int]) -> None:
            for i in batch:
                response = await client.put(
                    "/store/items",
                    json={"namespace": namespace, "key": f"m{i}", "value": {"text": texts[i]}},
                )
                response.raise_for_status()

        await asyncio.gather(*(put(list(range(w, items, 8))) for w in range(8)))
        print(
            f"stored {items} items in {time.perf_counter() - started:.1f} s "
            "(each embedded by the server)",
            flush=True,
        )
        samples = []
        cpu_before = 0.0
        for i in range(queries + 10):
            if i == 10:
                cpu_before = tree_cpu_seconds(pid)
            question = f"who {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}?"
            start = time.perf_counter()
            response = await client.post(
                "/store/items/search",
                json={"namespace_prefix": namespace, "query": question, "limit": 10},
            )
            elapsed = (time.perf_counter() - start) * 1000
            response.raise_for_status()
            if len(response.json()["items"]) != 10:
                raise RuntimeError(f"search returned {len(response.json()['items'])} items")
            if i >= 10:  # warm-up: pool connections, first forward passes
                samples.append(elapsed)
        cpu_ms = (tree_cpu_seconds(pid) - cpu_before) * 1000 / max(1, len(samples))
        return samples, cpu_ms


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--config", type=Path, default=REPO / "langgraph.json")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()

    imports: list[float] = []
    ok: dict[str, list[float]] = {"fresh": [], "existing": []}
    ok_cpu: dict[str, list[float]] = {"fresh": [], "existing": []}
    api: dict[str, list[float]] = {"fresh": [], "existing": []}
    ready: dict[str, list[float]] = {"fresh": [], "existing": []}
    search_ms: list[float] = []
    search_cpu_ms = float("nan")
    for number in range(1, args.rounds + 1):
        imports.append(_import_seconds())
        home = Path(tempfile.mkdtemp(prefix="bench-startup-home-"))
        try:
            for kind in ("fresh", "existing"):
                port = free_port()
                env = {
                    "STAFFGRAPH_HOME": str(home),
                    "STAFFGRAPH_LOG_LEVEL": "warning",
                    **UNREACHED_LIMITS,
                }
                with run_server("staffgraph", _serve_argv(port, args.config), env, port) as server:
                    # Held by the server until its app is up (right away where /ok waited).
                    info = httpx.get(f"{server.url}/info", timeout=300)
                    if info.status_code != 200:
                        raise RuntimeError(f"/info answered {info.status_code}: {info.text}")
                    api[kind].append(time.perf_counter() - server.spawned_at)
                    wait_for(
                        server.url,
                        "/ready",
                        process=server.process,
                        name="staffgraph",
                        timeout=300,
                        log_path=server.log_path,
                    )
                    ready_after = time.perf_counter() - server.spawned_at
                    ok[kind].append(server.ok_after_s)
                    ok_cpu[kind].append(server.ok_cpu_s)
                    ready[kind].append(ready_after)
                    print(
                        f"[round {number}] {kind} home: /ok after {server.ok_after_s:.2f} s "
                        f"({server.ok_cpu_s:.2f} s of server CPU), "
                        f"API up after {api[kind][-1]:.2f} s, "
                        f"/ready after {ready_after:.2f} s",
                        flush=True,
                    )
                    last = number == args.rounds and kind == "existing"
                    if last and not args.skip_search:
                        search_ms, search_cpu_ms = asyncio.run(
                            _store_search(server.url, server.process.pid, args.items, args.queries)
                        )
        finally:
            shutil.rmtree(home, ignore_errors=True)

    print()
    print(f"{args.rounds} round(s), config {args.config}; median (min–max)")
    print(f"import server.cli           {spread(imports, ' s')}")
    for kind in ("existing", "fresh"):
        print(
            f"/ok, {kind + ' home':<14}     {spread(ok[kind], ' s'):<24} "
            f"target <= {OK_TARGET_S[kind]:.0f} s: "
            f"{'met' if statistics.median(ok[kind]) <= OK_TARGET_S[kind] else 'NOT met'}"
        )
        print(f"  server CPU to /ok         {spread(ok_cpu[kind], ' s')}")
        print(f"API up, {kind + ' home':<14}  {spread(api[kind], ' s')}")
        print(f"/ready, {kind + ' home':<14}  {spread(ready[kind], ' s')}")
    if search_ms:
        p95 = pct(search_ms, 0.95)
        print(
            f"Store API search, {args.items} items, {len(search_ms)} queries: "
            f"p50 {pct(search_ms, 0.5):.2f} ms, p95 {p95:.2f} ms "
            f"(target p95 <= {SEARCH_P95_TARGET_MS:.0f} ms: "
            f"{'met' if p95 <= SEARCH_P95_TARGET_MS else 'NOT met'})"
        )
        print(f"  server CPU per search      {search_cpu_ms:.2f} ms (the server process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
