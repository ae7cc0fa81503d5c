"""What authentication costs a run: runs.wait p50 with built-in API keys versus without.

Starts two ``staffgraph serve`` processes, each with its own embedded Postgres (so neither
one's workers run the other's runs), on the same graph (``bench/graphs.py:graph``): one with
``STAFFGRAPH_AUTH=none``, one with ``STAFFGRAPH_AUTH=keys`` and a key made by
``staffgraph keys create``. Each round measures N sequential
``POST /threads/{id}/runs/wait`` (``durability="sync"``) on both servers,
interleaved request by request (so load on the machine hits both alike); the figure is the
difference of the p50s. Prints each round, then the median and
the spread (min..max) of the differences over the rounds. Target: at most 1 ms.

Usage: ``python bench/auth_bench.py [--rounds 3] [--runs 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (  # noqa: E402
    REPO,
    UNREACHED_LIMITS,
    free_port,
    pct,
    run_server,
    wait_for,
)
from bench.server_bench import CONFIG, RUN_BODY  # noqa: E402


async def _round(servers: dict[str, tuple[str, dict[str, str]]], runs: int) -> dict[str, float]:
    """p50 of runs.wait per server, requests interleaved so that load drift hits both alike."""
    clients = {
        name: httpx.AsyncClient(base_url=url, timeout=30, headers=headers)
        for name, (url, headers) in servers.items()
    }
    try:
        paths = {}
        for name, client in clients.items():
            made = await client.post("/threads", json={})
            made.raise_for_status()
            paths[name] = f"/threads/{made.json()['thread_id']}/runs/wait"
            for _ in range(10):  # warm-up: imports, caches, connection pool
                (await client.post(paths[name], json=RUN_BODY)).raise_for_status()
        samples: dict[str, list[float]] = {name: [] for name in clients}
        names = list(clients)
        for i in range(runs):
            for name in names if i % 2 == 0 else reversed(names):
                start = time.perf_counter()
                response = await clients[name].post(paths[name], json=RUN_BODY)
                samples[name].append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
        return {name: pct(values, 0.5) for name, values in samples.items()}
    finally:
        for client in clients.values():
            await client.aclose()


def _make_key(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "keys", "create", "--user", "bench"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout.splitlines()[0].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200, help="runs.wait per server per round")
    args = parser.parse_args()
    common = {"STAFFGRAPH_LOG_LEVEL": "warning", "EMBEDDINGS": "hashing", **UNREACHED_LIMITS}
    # Each server has its own database, so neither one's workers claim the other's runs.
    homes = {
        name: {"STAFFGRAPH_HOME": tempfile.mkdtemp(prefix=f"staffgraph-auth-bench-{name}-")}
        for name in ("none", "keys")
    }
    database = os.environ.get("DATABASE_URL")
    if database:
        raise SystemExit("unset DATABASE_URL: the bench gives each server its own database")
    argv = [sys.executable, "-m", "server.cli", "serve", "--config", str(CONFIG), "--port"]
    with ExitStack() as stack:
        open_port, keyed_port = free_port(), free_port()
        open_env = {**common, **homes["none"], "STAFFGRAPH_AUTH": "none"}
        opened = stack.enter_context(
            run_server("open", [*argv, str(open_port)], open_env, open_port)
        )
        keyed_env = {**common, **homes["keys"], "STAFFGRAPH_AUTH": "keys"}
        key = _make_key(keyed_env)
        keyed = stack.enter_context(
            run_server("keys", [*argv, str(keyed_port)], keyed_env, keyed_port)
        )
        # /ok answers before the graphs are imported: measure servers that are ready.
        for name, server in (("open", opened), ("keys", keyed)):
            wait_for(server.url, "/ready", process=server.process, name=name, timeout=120)
        open_url, keyed_url = opened.url, keyed.url
        diffs = []
        servers = {"none": (open_url, {}), "keys": (keyed_url, {"x-api-key": key})}
        for round_no in range(1, args.rounds + 1):
            p50 = asyncio.run(_round(servers, args.runs))
            diff = p50["keys"] - p50["none"]
            diffs.append(diff)
            print(
                f"round {round_no}: runs.wait p50 none {p50['none']:.2f} ms, "
                f"keys {p50['keys']:.2f} ms, auth adds {diff:+.2f} ms",
                flush=True,
            )
        print(
            f"auth overhead on runs.wait p50 over {args.rounds} rounds of {args.runs}: "
            f"median {statistics.median(diffs):+.2f} ms, "
            f"spread {min(diffs):+.2f}..{max(diffs):+.2f} ms (target <= 1 ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
