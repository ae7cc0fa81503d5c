"""Every commit of a run waits for the WAL to reach disk, observed in Postgres.

Triggers record ``synchronous_commit`` as each row is written, in the writing transaction:
``on`` means its commit waits for the flush. A run's creation, checkpoints, pending writes and
end, and writes outside runs (``update_state``), all wait: a Postgres crash loses nothing a
client was told of, and no checkpoint a later one builds on. Committing pending writes without
the flush was tried: measured against the flushed commit on the same server, its latency gain
did not outlast a shared machine's noise, so the guarantee stays whole. This test keeps any
change to it deliberate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.server import LiveServer

HUMAN = {"messages": [{"role": "user", "content": "hi"}]}

_RECORD = """
CREATE TABLE test_commit_modes (
    n bigserial, what text, thread_id text, mode text, xact bigint DEFAULT txid_current()
);
CREATE FUNCTION test_record_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_commit_modes (what, thread_id, mode)
    VALUES (TG_TABLE_NAME || ':' || lower(TG_OP)
                || CASE WHEN TG_TABLE_NAME = 'runs' AND TG_OP = 'UPDATE'
                        THEN ':' || (to_jsonb(NEW) ->> 'status') ELSE '' END,
            NEW.thread_id::text, current_setting('synchronous_commit'));
    RETURN NULL;
END;
$$;
CREATE TRIGGER test_commit_mode AFTER INSERT ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION test_record_commit_mode();
CREATE TRIGGER test_commit_mode AFTER INSERT ON checkpoint_writes
    FOR EACH ROW EXECUTE FUNCTION test_record_commit_mode();
CREATE TRIGGER test_commit_mode AFTER INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION test_record_commit_mode();
CREATE TRIGGER test_commit_mode_end AFTER UPDATE ON runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION test_record_commit_mode();
"""

_FORGET = """
DROP FUNCTION IF EXISTS test_record_commit_mode() CASCADE;  -- its triggers with it
DROP TABLE IF EXISTS test_commit_modes;
"""


@pytest.fixture
def recorded(live_server: LiveServer) -> Iterator[str]:
    """The live server's database URL, with commit modes recorded while the test runs."""
    url = live_server.env["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_FORGET)
        conn.execute(_RECORD)
    try:
        yield url
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_FORGET)


def _written(
    url: str, thread_id: str, *, after: int = 0, until: int | None = None
) -> list[tuple[str, str]]:
    """What was written for ``thread_id`` and the commit mode of each, in the order their
    triggers fired; only by the transactions after ``after`` and up to ``until``."""
    with psycopg.connect(url) as conn:
        return [
            (str(what), str(mode))
            for what, mode in conn.execute(
                "SELECT what, mode FROM test_commit_modes WHERE thread_id = %s AND xact > %s "
                "AND (%s::bigint IS NULL OR xact <= %s::bigint) ORDER BY n",
                (thread_id, after, until, until),
            ).fetchall()
        ]


def _transaction_of(url: str, thread_id: str, what: str) -> int:
    """The transaction that wrote ``what`` for ``thread_id``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT xact FROM test_commit_modes WHERE thread_id = %s AND what = %s",
            (thread_id, what),
        ).fetchone()
    assert row is not None, what
    return int(row[0])


def _modes(written: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Each kind of write, with the commit modes it was written under."""
    modes: dict[str, set[str]] = {}
    for what, mode in written:
        modes.setdefault(what, set()).add(mode)
    return modes


async def _thread(http: httpx.AsyncClient) -> str:
    response = await http.post("/threads", json={})
    response.raise_for_status()
    return str(response.json()["thread_id"])


def _body(durability: str, **extra: Any) -> dict[str, Any]:
    return {"assistant_id": "simple", "input": HUMAN, "durability": durability, **extra}


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_every_write_of_a_run_waits_for_the_flush(
    live_server: LiveServer, recorded: str, durability: str
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        waited, background, streamed = [await _thread(http) for _ in range(3)]
        response = await http.post(f"/threads/{waited}/runs/wait", json=_body(durability))
        assert response.status_code == 200, response.text
        assert len(response.json().get("messages", [])) == 2, response.text
        created = await http.post(f"/threads/{background}/runs", json=_body(durability))
        assert created.status_code == 200
        joined = await http.get(f"/threads/{background}/runs/{created.json()['run_id']}/join")
        assert joined.status_code == 200
        async with http.stream(
            "POST", f"/threads/{streamed}/runs/stream", json=_body(durability)
        ) as response:
            assert response.status_code == 200
            assert [line async for line in response.aiter_lines() if line.startswith("event:")]

    expected = {
        "runs:insert": {"on"},
        "checkpoint_writes:insert": {"on"},
        "checkpoints:insert": {"on"},
        "runs:update:success": {"on"},
    }
    if durability == "exit":
        del expected["checkpoint_writes:insert"]  # LangGraph saves no pending writes then
    for thread_id in (waited, background, streamed):
        assert _modes(_written(recorded, thread_id)) == expected, thread_id


async def test_writes_outside_runs_wait_for_the_flush(
    live_server: LiveServer, recorded: str
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        thread_id = await _thread(http)
        response = await http.post(
            f"/threads/{thread_id}/runs/wait",
            json={**_body("sync"), "interrupt_before": ["b"]},
        )
        assert response.status_code == 200
        updated = await http.post(
            f"/threads/{thread_id}/state", json={"values": {"count": 7}, "as_node": "a"}
        )
        assert updated.status_code == 200, updated.text
    # The run's writes: up to its end's transaction, which commits its last checkpoint writes
    # (an AFTER trigger of a write made in the end's own statement fires after the end's).
    end = _transaction_of(recorded, thread_id, "runs:update:interrupted")
    assert _modes(_written(recorded, thread_id, until=end)) == {
        "runs:insert": {"on"},
        "checkpoint_writes:insert": {"on"},
        "checkpoints:insert": {"on"},
        "runs:update:interrupted": {"on"},
    }
    # update_state writes outside any run: answered once its writes are on disk.
    assert _modes(_written(recorded, thread_id, after=end)) == {
        "checkpoint_writes:insert": {"on"},
        "checkpoints:insert": {"on"},
    }
