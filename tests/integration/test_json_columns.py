"""JSON columns come back from the shared pool as ``json.loads`` reads them, parsed by orjson.

Each document is stored as jsonb and as json, read back through the pool (binary and text
results), and compared with ``json.loads`` of the same text: long integers stay exact ints and
out-of-range numbers read as infinity, which orjson alone would not give.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from psycopg.adapt import Loader
from psycopg.types import TypeInfo

from state.db import Persistence
from state.json_columns import load_json, needs_standard_parser

DOCUMENTS = [
    '{"run": {"status": "running", "attempt": 1, "ratio": 0.25}, "ids": [1, 2, 3]}',
    '{"big": 123456789012345678901234567890, "neg": -98765432109876543210}',
    '{"max_u64": 18446744073709551615, "max_i64": 9223372036854775807}',
    '{"id_in_text": "order 12345678901234567890", "n": 7}',
    '{"huge": 1e400, "tiny": -1e400}',
    '{"text": "caf\\u00e9 \\ud83d\\ude00 \\"quoted\\"", "empty": {}, "none": null}',
    '[1.5, true, false, null, "x", 1E+2, 0.1]',
    # Long runs after every byte a number's digits can follow (json keeps the text as written).
    '{"a":12345678901234567890123}',
    "[1,98765432109876543210987]",
    "[-12345678901234567890123, 0.12345678901234567890123, 1e0000000000000000000001]",
    '{"tab":\t12345678901234567890123,"nl":\n12345678901234567890123}',
    "12345678901234567890123",
    "-12345678901234567890123",
    # A checkpoint's channel versions: long runs inside strings, read by orjson.
    '{"channel_versions": {"n": "00000000000000000000000000000183.0.6530154568343116"}}',
]


def _same(got: Any, expected: Any) -> bool:
    """Equal values of equal types all the way down (``1 == 1.0`` is not enough here)."""
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(_same(got[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(_same(g, e) for g, e in zip(got, expected, strict=True))
        )
    if isinstance(expected, float) and math.isinf(expected):
        return isinstance(got, float) and got == expected
    return type(got) is type(expected) and got == expected


@pytest.mark.parametrize("text", DOCUMENTS)
def test_load_json_reads_what_the_standard_library_reads(text: str) -> None:
    assert _same(load_json(text.encode()), json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        "1234567890123456789",
        "-1234567890123456789",
        "[1,1234567890123456789]",
        '{"a":1234567890123456789}',
        '{"a": 1234567890123456789}',
        '{"a":\r\n1234567890123456789}',
        "0.1234567890123456789",
        "1e1234567890123456789",
        "1E+1234567890123456789",
    ],
)
def test_every_number_with_19_digits_takes_the_standard_parser(text: str) -> None:
    assert needs_standard_parser(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        '{"versions_seen": {"__start__": "00000000000000000000000000000202.0.4312593048963843"}}',
        '{"id": "x1234567890123456789012", "n": 123456789012345678}',
        "-123456789012345678",
    ],
)
def test_long_runs_inside_strings_and_shorter_numbers_take_orjson(text: str) -> None:
    assert not needs_standard_parser(text.encode())


def test_long_integers_stay_exact() -> None:
    value = load_json(b'{"n": 123456789012345678901234567890}')
    assert value["n"] == 123456789012345678901234567890
    assert isinstance(value["n"], int)


@pytest.mark.parametrize("column", ["jsonb", "json"])
@pytest.mark.parametrize("binary", [True, False])
async def test_pool_reads_json_columns_like_json_loads(
    persistence: Persistence, column: str, binary: bool
) -> None:
    async with persistence.pool.connection() as conn:
        for text in DOCUMENTS:
            # Postgres normalises jsonb (key order, number spelling): compare with its own text.
            cur = await conn.cursor(binary=binary).execute(
                f"SELECT %s::{column} AS value, %s::{column}::text AS text", (text, text)
            )
            row = await cur.fetchone()
            assert row is not None
            assert _same(row["value"], json.loads(row["text"])), text


async def test_pool_connections_parse_json_with_load_json(persistence: Persistence) -> None:
    async with persistence.pool.connection() as conn:
        for name in ("json", "jsonb"):
            info = await TypeInfo.fetch(conn, name)
            assert info is not None
            for binary in (True, False):
                loader_class = conn.adapters.get_loader(info.oid, 1 if binary else 0)
                assert loader_class is not None
                loader: Loader = loader_class(info.oid, conn)
                assert getattr(loader, "loads", None) is load_json, (name, binary)
