"""Token usage and cost of finished runs, summed in SQL (``GET /usage``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg_pool import AsyncConnectionPool

__all__ = ["USER_SQL", "UsageTotals", "usage_totals"]

USER_SQL = (
    "coalesce("
    "nullif(kwargs #>> '{config,configurable,langgraph_auth_user_id}', ''), "
    "nullif(kwargs #>> '{config,configurable,user_id}', ''), "
    "nullif(kwargs #>> '{config,metadata,user_id}', ''))"
)
"""SQL for the user a run belongs to: the same rule as ``server.runtime.run_config.run_user``."""

_GROUPS = {"assistant": "assistant_id::text", "user": USER_SQL, "graph": "metadata ->> 'graph_id'"}
_MAX_GROUPS = 1000


@dataclass(frozen=True)
class UsageTotals:
    """Token usage and cost summed over finished runs (``GET /usage``)."""

    totals: dict[str, Any]
    """``runs``, token counts, ``calls``, ``estimated``, ``cost_usd``, ``cost_estimated``."""
    by_role: dict[str, dict[str, Any]]
    """The same sums per role."""
    groups: list[dict[str, Any]]
    """Per assistant, user or graph when asked for (``key`` names it)."""


_TOKEN_FIELDS = ("input_tokens", "output_tokens", "total_tokens", "calls", "estimated_calls")


def _sums(usage: str) -> str:
    """SELECT list summing the usage JSON ``usage`` (a SQL expression) over the rows."""
    columns = ["count(*) AS runs"]
    columns += [f"coalesce(sum(({usage} ->> '{f}')::numeric), 0) AS {f}" for f in _TOKEN_FIELDS]
    columns.append(f"coalesce(sum(({usage} ->> 'cost_usd')::numeric), 0) AS cost_usd")
    for flag in ("estimated", "cost_estimated"):
        columns.append(f"coalesce(bool_or(({usage} ->> '{flag}')::boolean), false) AS {flag}")
    return ", ".join(columns)


def _totals(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": int(row["runs"])}
    out.update({f: int(row[f]) for f in _TOKEN_FIELDS})
    out["estimated"] = bool(row["estimated"])
    # Summed from the costs stored with each run, i.e. priced when that run ended.
    out["cost_usd"] = float(row["cost_usd"])
    out["cost_estimated"] = bool(row["cost_estimated"])
    return out


async def usage_totals(
    pool: AsyncConnectionPool[Any],
    *,
    assistant_id: str | None = None,
    user_id: str | None = None,
    graph_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    group_by: Literal["assistant", "user", "graph"] | None = None,
) -> UsageTotals:
    """Sum ``runs.usage`` of finished runs in SQL, optionally grouped.

    Args:
        pool: the server's connection pool.
        assistant_id: only this assistant's runs.
        user_id: only this user's runs (see :data:`USER_SQL`).
        graph_id: only runs of this graph.
        since: runs that ended at or after this time.
        until: runs that ended before this time.
        group_by: also sum per assistant, user or graph (at most 1000 groups, largest
            token count first).
    """
    clauses = ["usage <> '{}'::jsonb"]
    params: list[Any] = []
    for clause, value in (
        ("assistant_id = %s", assistant_id),
        (f"{USER_SQL} = %s", user_id),
        ("metadata ->> 'graph_id' = %s", graph_id),
        ("ended_at >= %s", since),
        ("ended_at < %s", until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = " AND ".join(clauses)
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_sums('usage')} FROM runs WHERE {where}", params)
        totals = _totals(await cur.fetchone())
        roles = (
            "CASE WHEN jsonb_typeof(usage -> 'by_role') = 'object' "
            "THEN usage -> 'by_role' ELSE '{}'::jsonb END"
        )
        cur = await conn.execute(
            f"SELECT r.key AS key, {_sums('r.value')} FROM runs, jsonb_each({roles}) AS r "
            f"WHERE {where} GROUP BY r.key ORDER BY r.key LIMIT {_MAX_GROUPS}",
            params,
        )
        by_role = {row["key"]: _totals(row) for row in await cur.fetchall()}
        groups: list[dict[str, Any]] = []
        if group_by is not None:
            cur = await conn.execute(
                f"SELECT {_GROUPS[group_by]} AS key, {_sums('usage')} FROM runs "
                f"WHERE {where} GROUP BY 1 ORDER BY total_tokens DESC, 1 LIMIT {_MAX_GROUPS}",
                params,
            )
            groups = [{"key": row["key"], **_totals(row)} for row in await cur.fetchall()]
    return UsageTotals(totals=totals, by_role=by_role, groups=groups)
