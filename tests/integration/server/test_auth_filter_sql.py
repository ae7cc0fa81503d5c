"""Authorization filters mean one thing wherever they are applied.

The same filter is matched in Python (``server.auth.filters.matches``, a row already read), as
a WHERE clause (``filter_sql``: searches, counts) and by ``staffgraph_auth_matches`` inside the
SQL that creates a run (migration 0090). Each case is run through all three.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from server.auth.filters import filter_sql, matches
from state.db import Persistence

META = {
    "owner": "alice",
    "tags": ["a", "b"],
    "n": 3,
    "nested": {"x": 1},
    "flag": True,
    "none": None,
}

CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, META),
    ({"owner": "alice"}, META),
    ({"owner": "bob"}, META),
    ({"owner": "alice"}, {}),
    (
        {"owner": {"$eq": "alice"}},
        META,
    ),
    ({"owner": {"$eq": "bob"}}, META),
    ({"missing": "x"}, META),
    ({"none": None}, META),
    ({"none": "x"}, META),
    ({"n": 3}, META),
    ({"n": 3.0}, META),
    ({"n": "3"}, META),
    ({"nested": {"$eq": {"x": 1}}}, META),
    ({"nested": {"$eq": {"x": 2}}}, META),
    ({"tags": {"$contains": "a"}}, META),
    ({"tags": {"$contains": "z"}}, META),
    ({"tags": {"$contains": ["a", "b"]}}, META),
    ({"tags": {"$contains": ["a", "z"]}}, META),
    ({"owner": {"$contains": "a"}}, META),  # not an array
    ({"tags": {"$eq": ["a", "b"], "$contains": "a"}}, META),
    ({"owner": "alice", "n": 3}, META),
    ({"owner": "alice", "n": 4}, META),
    ({"$or": [{"owner": "bob"}, {"created_by": "system"}]}, META),
    ({"$or": [{"owner": "bob"}, {"created_by": "system"}]}, {"created_by": "system"}),
    ({"$or": [{"owner": "bob"}, {"owner": "alice"}]}, META),
    ({"$or": [{"owner": "alice"}], "n": 4}, META),
    ({"$or": [{"$or": [{"n": 3}]}]}, META),
    ({"flag": True}, META),
    ({"flag": False}, META),
]


@pytest.mark.parametrize(("flt", "metadata"), CASES)
async def test_python_where_clause_and_run_creation_agree(
    persistence: Persistence, flt: dict[str, Any], metadata: dict[str, Any]
) -> None:
    expected = matches(flt, metadata)
    params: dict[str, Any] = {"m": Jsonb(metadata), "f": Jsonb(flt)}
    where = filter_sql(flt, params)
    # A WHERE condition may be NULL where the others say False: both leave the row out.
    query = sql.SQL(
        "SELECT staffgraph_auth_matches(%(m)s, %(f)s) AS in_run_sql, "
        "coalesce({}, false) AS in_where FROM (SELECT %(m)s::jsonb AS metadata) AS resource"
    ).format(where)
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
    assert row is not None
    assert (row["in_run_sql"], row["in_where"]) == (expected, expected)


async def test_no_filter_matches_everything(persistence: Persistence) -> None:
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT staffgraph_auth_matches(NULL, NULL) AS a, "
            "staffgraph_auth_matches('{}'::jsonb, '{}'::jsonb) AS b, "
            "staffgraph_auth_matches(NULL, '{}'::jsonb) AS c"
        )
        row = await cur.fetchone()
    assert row == {"a": True, "b": True, "c": True}
