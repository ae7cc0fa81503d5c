"""What an audit entry costs a transaction: latency alone and throughput under concurrency.

Against a fresh database on an embedded Postgres (or a new database on ``DATABASE_URL``'s
server), with migrations applied. Two workloads, each measured with and without
:func:`state.audit.append_entry` in the same run, interleaved so machine load hits both alike:

* **latency**: one client, N transactions that each insert and delete a row of a scratch table
  (the peer), the same plus one ``append_entry`` (audited). Figure: p50 of each and the
  difference.
* **throughput**: C concurrent clients doing the same transactions for N each. Appends
  serialise on the chain head row, so this shows what that lock costs when many changes are
  audited at once. Figure: transactions per second, peer and audited.

Prints each round, then median (min–max) over the rounds.

Usage: ``python bench/audit_bench.py [--rounds 3] [--n 300] [--clients 8]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import pct, spread  # noqa: E402
from state.audit import append_entry, verify_log  # noqa: E402
from state.db import open_persistence  # noqa: E402
from state.embedded import EmbeddedPostgres  # noqa: E402


def _new_database(url: str) -> str:
    name = f"audit_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _one(pool: object, *, audited: bool) -> float:
    started = time.perf_counter()
    async with pool.connection() as conn, conn.transaction():  # type: ignore[attr-defined]
        cur = await conn.execute("INSERT INTO bench_scratch DEFAULT VALUES RETURNING id")
        row = await cur.fetchone()
        await conn.execute("DELETE FROM bench_scratch WHERE id = %s", (row["id"],))
        if audited:
            await append_entry(
                conn,
                "thread.deleted",
                actor="bench",
                resource_type="thread",
                resource_id=str(row["id"]),
                details={"reason": "bench"},
            )
    return time.perf_counter() - started


async def _latency(pool: object, n: int) -> tuple[float, float]:
    peer, audited = [], []
    for _ in range(n):
        peer.append(await _one(pool, audited=False))
        audited.append(await _one(pool, audited=True))
    return pct(peer, 0.5) * 1000, pct(audited, 0.5) * 1000


async def _throughput(pool: object, n: int, clients: int, *, audited: bool) -> float:
    async def client() -> None:
        for _ in range(n):
            await _one(pool, audited=audited)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return n * clients / (time.perf_counter() - started)


async def _run(url: str, rounds: int, n: int, clients: int) -> None:
    async with open_persistence(url, max_size=clients + 2) as persistence:
        async with persistence.pool.connection() as conn:
            await conn.execute("CREATE TABLE bench_scratch (id bigserial PRIMARY KEY)")
        pool = persistence.pool
        figures: dict[str, list[float]] = {k: [] for k in ("p50", "p50a", "d", "tps", "tpsa")}
        for round_no in range(1, rounds + 1):
            p50, p50a = await _latency(pool, n)
            tps = await _throughput(pool, n, clients, audited=False)
            tpsa = await _throughput(pool, n, clients, audited=True)
            for key, value in zip(figures, (p50, p50a, p50a - p50, tps, tpsa), strict=True):
                figures[key].append(value)
            print(
                f"round {round_no}: p50 peer {p50:.2f} ms, audited {p50a:.2f} ms "
                f"(+{p50a - p50:.2f}); {clients} clients: peer {tps:.0f} tx/s, "
                f"audited {tpsa:.0f} tx/s"
            )
        async with persistence.pool.connection() as conn:
            report = await verify_log(conn)
        print(f"chain after the bench: {report.checked} entries, broken: {report.broken}")
    print(f"p50 one client, peer:    {spread(figures['p50'], ' ms')}")
    print(f"p50 one client, audited: {spread(figures['p50a'], ' ms')}")
    print(f"p50 difference:          {spread(figures['d'], ' ms')}")
    print(f"{clients} clients, peer:      {spread(figures['tps'], ' tx/s', 0)}")
    print(f"{clients} clients, audited:   {spread(figures['tpsa'], ' tx/s', 0)}")


def main() -> None:
    """Run the bench and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=300, help="transactions per client per round")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    external = os.environ.get("DATABASE_URL")
    embedded: EmbeddedPostgres | None = None
    if external:
        base = external
    else:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="audit-bench-")))
        base = embedded.start()
    try:
        asyncio.run(_run(_new_database(base), args.rounds, args.n, args.clients))
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
