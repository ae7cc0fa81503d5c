"""The packed array parameters (state.pg_arrays) read back from Postgres as what was sent."""

from __future__ import annotations

from typing import Any

import pytest

from state.db import Persistence
from state.pg_arrays import ByteaArray, Int4Array, TextArray


@pytest.mark.parametrize(
    ("value", "cast"),
    [
        (TextArray(["channel", "é ünïcode ✓", ""]), "text[]"),
        (TextArray([]), "text[]"),
        (ByteaArray([b"\x00\x01\xff", b"", None]), "bytea[]"),
        (ByteaArray([]), "bytea[]"),
        (Int4Array([0, -1, -4, 2_147_483_647, -2_147_483_648]), "int[]"),
        (Int4Array([]), "int[]"),
    ],
)
async def test_an_array_reads_back_as_sent(persistence: Persistence, value: Any, cast: str) -> None:
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT %b::{cast} AS value, cardinality(%b::{cast}) AS n", (value, value)
        )
        row = await cur.fetchone()
    assert row is not None
    assert row["value"] == list(value)
    assert row["n"] == len(value)


async def test_text_with_a_nul_is_refused_by_postgres(persistence: Persistence) -> None:
    import psycopg

    async with persistence.pool.connection() as conn:
        with pytest.raises(psycopg.DataError):
            await conn.execute("SELECT %b::text[]", (TextArray(["a\x00b"]),))
