"""What the console's inbox costs: GET /ui/api/inbox against its same-run peer.

    python bench/console_bench.py [--rounds 3] [--pending 20] [--requests 50]

One server (embedded Postgres, offline model, the repo's langgraph.json) with ``--pending``
governance changes waiting for approval. Each round times ``--requests`` calls of the inbox
(which adds each thread's latest run, its graph's tool catalog and the argument schemas) and,
interleaved, of its peer ``POST /threads/search {"status": "interrupted"}`` (the same threads,
nothing added), and prints both p50s and their ratio; then the median (min–max) over rounds.
The inbox is polled once a second per open page, so its p50 is what one page costs the server.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._support import (  # noqa: E402
    REPO,
    UNREACHED_LIMITS,
    free_port,
    pct,
    run_server,
    spread,
    wait_for,
)

TENSION = "Grant the writer the calculator so it can check figures in drafts"


def _pending(client: httpx.Client, count: int) -> None:
    for _ in range(count):
        thread = client.post("/threads", json={}).json()["thread_id"]
        client.post(
            f"/threads/{thread}/runs/wait",
            json={
                "assistant_id": "governance",
                "input": {"messages": [{"role": "user", "content": TENSION}]},
            },
        )


def _round(client: httpx.Client, requests: int) -> tuple[float, float]:
    inbox, search = [], []
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get("/ui/api/inbox")
        inbox.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        started = time.perf_counter()
        client.post("/threads/search", json={"status": "interrupted", "limit": 100})
        search.append((time.perf_counter() - started) * 1000)
    return pct(inbox, 0.5), pct(search, 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pending", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    if os.environ.get("DATABASE_URL"):
        raise SystemExit("unset DATABASE_URL: the bench runs its own embedded Postgres")
    port = free_port()
    env = {
        "STAFFGRAPH_LOG_LEVEL": "warning",
        "EMBEDDINGS": "hashing",
        "STAFFGRAPH_HOME": tempfile.mkdtemp(prefix="staffgraph-console-bench-"),
        **UNREACHED_LIMITS,
    }
    argv = [sys.executable, "-m", "server.cli", "serve", "--config", str(REPO / "langgraph.json")]
    with run_server("console", [*argv, "--port", str(port)], env, port) as server:
        # /ok answers before the graphs are imported: measure a server that is ready.
        wait_for(server.url, "/ready", process=server.process, name="console", timeout=120)
        with httpx.Client(base_url=server.url, timeout=120) as client:
            _pending(client, args.pending)
            listed = len(client.get("/ui/api/inbox").json()["items"])
            assert listed == args.pending, f"{listed} items for {args.pending} pending"
            ratios, inboxes, searches = [], [], []
            for round_no in range(1, args.rounds + 1):
                inbox, search = _round(client, args.requests)
                inboxes.append(inbox)
                searches.append(search)
                ratios.append(inbox / search)
                print(
                    f"round {round_no}: p50 inbox {inbox:.2f} ms, threads/search {search:.2f} ms,"
                    f" ratio {inbox / search:.2f}",
                    flush=True,
                )
    print(
        f"{args.pending} pending approvals, {args.rounds} rounds of {args.requests}: "
        f"inbox p50 {spread(inboxes, ' ms')}, threads/search p50 {spread(searches, ' ms')}, "
        f"ratio {spread(ratios)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
