"""Migrations run outside a transaction: how their statements are split and what they must say."""

from __future__ import annotations

from pathlib import Path

import pytest

import state.schema
from state.schema import OUTSIDE_TRANSACTION, outside_transaction_statements

_MARKED = OUTSIDE_TRANSACTION + "\n"


def test_statements_outside_a_transaction_are_sent_one_by_one() -> None:
    text = (
        _MARKED + "-- why\nCREATE INDEX CONCURRENTLY IF NOT EXISTS a\n  ON t (x) WHERE x > 0;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t (y);\n"
    )
    assert outside_transaction_statements("m", text) == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a\n  ON t (x) WHERE x > 0",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t (y)",
    ]
    assert outside_transaction_statements("m", "CREATE INDEX a ON t (x);\n") is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("DO $$ BEGIN END $$;\n", "dollar quotes"),
        ("SELECT 1; SELECT 2;\n", "ended by ';'"),
        ("CREATE INDEX CONCURRENTLY a ON t (x);\n", "IF NOT EXISTS"),
        ("create unique index concurrently on t (x);\n", "IF NOT EXISTS"),
    ],
)
def test_a_migration_outside_a_transaction_that_breaks_the_rules_is_refused(
    body: str, error: str
) -> None:
    with pytest.raises(RuntimeError, match=error):
        outside_transaction_statements("m", _MARKED + body)


def test_every_shipped_migration_outside_a_transaction_follows_the_rules() -> None:
    folder = Path(state.schema.__file__).with_name("migrations")
    marked = {
        path.name: outside_transaction_statements(path.name, path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*.sql"))
    }
    assert marked["0150_runs_thread_ended.sql"] == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_thread_ended\n"
        "    ON runs (thread_id, ended_at) WHERE ended_at IS NOT NULL"
    ]
