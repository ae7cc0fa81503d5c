"""Crons API against a live server, through ``langgraph_sdk`` and raw HTTP.

Expected bodies, statuses and details were taken from the reference server (``langgraph dev``,
langgraph-api 0.16.7) answering the same requests on the same graphs.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from server.graphs import assistant_id_for
from tests.support.server import LiveServer

HUMAN = {"messages": [{"role": "user", "content": "hi"}]}
SIMPLE = assistant_id_for("simple")
CRON_KEYS = [
    "cron_id",
    "assistant_id",
    "thread_id",
    "user_id",
    "end_time",
    "schedule",
    "timezone",
    "payload",
    "next_run_date",
    "metadata",
    "on_run_completed",
    "enabled",
    "created_at",
    "updated_at",
]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _runs_of(client: Any, thread_id: str, *, at_least: int, timeout: float = 30) -> list:
    """The thread's runs once there are ``at_least`` (the scheduler fires on its own clock)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = await client.runs.list(thread_id, limit=100)
        if len(runs) >= at_least or time.monotonic() > deadline:
            return runs
        await asyncio.sleep(0.2)  # a cron's firing has no event a client can subscribe to


async def test_create_stateless_and_thread_crons(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    stateless = await client.crons.create(
        "simple", schedule="0 9 * * *", input=HUMAN, metadata={"k": "v"}
    )
    assert list(stateless) == CRON_KEYS
    assert stateless["assistant_id"] == SIMPLE and stateless["thread_id"] is None
    assert stateless["user_id"] == "" and stateless["end_time"] is None
    assert stateless["timezone"] is None and stateless["enabled"] is True
    assert stateless["on_run_completed"] == "delete" and stateless["metadata"] == {"k": "v"}
    assert stateless["payload"] == {
        "assistant_id": SIMPLE,
        "schedule": "0 9 * * *",
        "input": HUMAN,
        "metadata": {"k": "v"},
        "config": {"configurable": {"cron_id": stateless["cron_id"]}},
    }
    next_run = _at(stateless["next_run_date"])
    assert (next_run.hour, next_run.minute, next_run.second) == (9, 0, 0)
    assert stateless["created_at"] == stateless["updated_at"]

    tid = (await client.threads.create())["thread_id"]
    on_thread = await client.crons.create_for_thread(
        tid,
        "simple",
        schedule="*/5 * * * *",
        timezone="America/New_York",
        end_time=datetime(2030, 1, 1, tzinfo=UTC),
        config={"tags": ["x"]},
        context={"a": 1},
        interrupt_before=["a"],
        multitask_strategy="reject",
        stream_mode=["updates"],
    )
    assert on_thread["thread_id"] == tid and on_thread["on_run_completed"] is None
    assert on_thread["timezone"] == "America/New_York"
    assert _at(on_thread["end_time"]) == datetime(2030, 1, 1, tzinfo=UTC)
    assert _at(on_thread["next_run_date"]).minute % 5 == 0
    payload = on_thread["payload"]
    assert payload["config"] == {"tags": ["x"], "configurable": {"cron_id": on_thread["cron_id"]}}
    assert payload["context"] == {"a": 1} and payload["multitask_strategy"] == "reject"
    assert payload["interrupt_before"] == ["a"] and payload["stream_mode"] == ["updates"]

    keep = await client.crons.create(
        "simple",
        schedule="0 9 * * *",
        on_run_completed="keep",
        enabled=False,
        timezone="Asia/Tokyo",
    )
    assert keep["on_run_completed"] == "keep" and keep["enabled"] is False
    assert keep["payload"]["on_run_completed"] == "keep" and keep["payload"]["enabled"] is False
    assert _at(keep["next_run_date"]).hour == 0  # 09:00 in Tokyo is 00:00 UTC

    async with httpx.AsyncClient(base_url=live_server.url) as http:
        extra = await http.post(
            "/runs/crons", json={"assistant_id": "simple", "schedule": "@daily", "foo": 1}
        )
        assert extra.status_code == 200
        assert extra.json()["payload"]["foo"] == 1  # unknown keys kept, as the reference does
        got = await http.get(f"/runs/crons/{stateless['cron_id']}")
        assert got.status_code == 200 and got.json() == stateless
    info = await client.http.get("/info")
    assert info["flags"]["crons"] is True


async def test_search_count_and_select(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    assistant = await client.assistants.create("simple")
    aid = assistant["assistant_id"]
    tid = (await client.threads.create())["thread_id"]
    first = await client.crons.create(aid, schedule="0 1 * * *", metadata={"tag": "a"})
    second = await client.crons.create(aid, schedule="0 2 * * *", enabled=False)
    third = await client.crons.create_for_thread(tid, aid, schedule="0 3 * * *")

    found = await client.crons.search(assistant_id=aid)
    assert [c["cron_id"] for c in found] == [third["cron_id"], second["cron_id"], first["cron_id"]]
    oldest = await client.crons.search(assistant_id=aid, sort_by="created_at", sort_order="asc")
    assert oldest[0]["cron_id"] == first["cron_id"]
    assert [c["cron_id"] for c in await client.crons.search(thread_id=tid)] == [third["cron_id"]]
    assert [c["cron_id"] for c in await client.crons.search(assistant_id=aid, enabled=False)] == [
        second["cron_id"]
    ]
    by_meta = await client.crons.search(assistant_id=aid, metadata={"tag": "a"})
    assert [c["cron_id"] for c in by_meta] == [first["cron_id"]]
    picked = await client.crons.search(assistant_id=aid, select=["cron_id", "schedule"], limit=1)
    assert picked == [{"cron_id": third["cron_id"], "schedule": "0 3 * * *"}]
    assert await client.crons.count(assistant_id=aid) == 3
    assert await client.crons.count(thread_id=tid) == 1
    assert await client.crons.count(assistant_id=aid, metadata={"tag": "a"}) == 1

    async with httpx.AsyncClient(base_url=live_server.url) as http:
        page = await http.post(
            "/runs/crons/search", json={"assistant_id": aid, "limit": 2, "offset": 0}
        )
        assert page.headers["x-pagination-total"] == "3"
        assert page.headers["x-pagination-next"] == "2"
        by_graph = await http.post("/runs/crons/search", json={"assistant_id": "simple"})
        assert by_graph.status_code == 422
        assert by_graph.json()["detail"] == "Invalid assistant ID: must be a UUID"
        for body in ({"limit": 0}, {"sort_by": "schedule"}, {"select": ["nope"]}):
            bad = await http.post("/runs/crons/search", json=body)
            assert bad.status_code == 422, body


async def test_update_merges_and_reschedules(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    cron = await client.crons.create(
        "simple", schedule="0 9 * * *", input=HUMAN, metadata={"k": "v"}
    )
    updated = await client.crons.update(
        cron["cron_id"],
        schedule="0 10 * * *",
        metadata={"n": 2},
        enabled=False,
        input={"x": 1},
        timezone="Asia/Tokyo",
    )
    assert updated["schedule"] == "0 10 * * *" and updated["timezone"] == "Asia/Tokyo"
    assert updated["metadata"] == {"k": "v", "n": 2}  # merged
    assert updated["enabled"] is False
    assert updated["payload"] == {
        "assistant_id": SIMPLE,
        "schedule": "0 10 * * *",
        "input": {"x": 1},
        "metadata": {"n": 2},  # the payload's own metadata is replaced
        "config": {"configurable": {"cron_id": cron["cron_id"]}},
        "enabled": False,
        "timezone": "Asia/Tokyo",
    }
    assert _at(updated["next_run_date"]).hour == 1  # 10:00 Tokyo
    assert updated["created_at"] == cron["created_at"]
    assert updated["updated_at"] > cron["updated_at"]

    ending = await client.crons.create(
        "simple", schedule="0 9 * * *", end_time=datetime(2030, 1, 1, tzinfo=UTC)
    )
    cleared = await client.crons.update(ending["cron_id"], end_time=None)
    assert cleared["end_time"] is None and cleared["payload"]["end_time"] is None
    kept = await client.crons.update(ending["cron_id"], enabled=True)
    assert kept["end_time"] is None and kept["next_run_date"] == cleared["next_run_date"]

    async with httpx.AsyncClient(base_url=live_server.url) as http:
        empty = await http.patch(f"/runs/crons/{cron['cron_id']}", json={})
        assert (empty.status_code, empty.json()["detail"]) == (400, "Request body cannot be empty")
        bad = await http.patch(f"/runs/crons/{cron['cron_id']}", json={"schedule": "bad"})
        assert bad.status_code == 422 and bad.json()["detail"].startswith(
            "Invalid cron schedule: 'bad'."
        )
        zone = await http.patch(f"/runs/crons/{cron['cron_id']}", json={"timezone": "Bad/Zone"})
        assert zone.status_code == 422
        missing = await http.patch(
            "/runs/crons/00000000-0000-4000-8000-000000000000", json={"enabled": True}
        )
        assert missing.status_code == 404
        assert missing.json()["detail"] == "Cron '00000000-0000-4000-8000-000000000000' not found"


async def test_delete_and_missing(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    cron = await client.crons.create("simple", schedule="0 9 * * *")
    await client.crons.delete(cron["cron_id"])
    with pytest.raises(NotFoundError):
        await client.crons.delete(cron["cron_id"])
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        assert (await http.get(f"/runs/crons/{cron['cron_id']}")).status_code == 404
        bad = await http.get("/runs/crons/not-a-uuid")
        assert (bad.status_code, bad.json()["detail"]) == (422, "Invalid cron ID: must be a UUID")


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (
            {"schedule": "not a cron"},
            422,
            "Invalid cron schedule: 'not a cron'. Reason: Invalid cron schedule. Ensure the "
            "schedule uses the standard cron format (minute hour day_of_month month "
            "day_of_week). Example: '*/5 * * * *' for every 5 minutes.",
        ),
        (
            {"timezone": "Mars/Base"},
            422,
            "Invalid timezone: 'Mars/Base'. Use IANA timezone format (e.g. 'America/New_York').",
        ),
        ({"assistant_id": "nope"}, 404, "Assistant 'nope' not found"),
        (
            {"assistant_id": "00000000-0000-0000-0000-000000000001"},
            404,
            "Assistant '00000000-0000-0000-0000-000000000001' not found",
        ),
        ({"webhook": "not a url"}, 422, "Invalid webhook hostname ''"),
        ({"on_run_completed": "zap"}, 422, None),
    ],
)
async def test_create_errors(
    live_server: LiveServer, body: dict[str, Any], status: int, detail: str | None
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        sent = {"assistant_id": "simple", "schedule": "* * * * *", **body}
        answer = await http.post("/runs/crons", json=sent)
        assert answer.status_code == status
        if detail is None:
            assert answer.json()["detail"].startswith("body.on_run_completed:")
        else:
            assert answer.json()["detail"] == detail


async def test_thread_errors_and_private_webhooks(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        missing = "00000000-0000-0000-0000-000000000009"
        answer = await http.post(
            f"/threads/{missing}/runs/crons",
            json={"assistant_id": "simple", "schedule": "* * * * *"},
        )
        assert answer.status_code == 404
        assert answer.json()["detail"] == (
            f"Thread with ID '{missing}' not found. Please verify the ID is correct and the "
            "thread hasn't been deleted or expired."
        )
        bad = await http.post(
            "/threads/not-a-uuid/runs/crons",
            json={"assistant_id": "simple", "schedule": "* * * * *"},
        )
        assert (bad.status_code, bad.json()["detail"]) == (422, "Invalid thread ID: must be a UUID")

        # Loopback and private webhooks are refused unless the operator allows them.
        loopback = "http://127.0.0.1:9/hook"
        cron = await http.post(
            "/runs/crons",
            json={"assistant_id": "simple", "schedule": "* * * * *", "webhook": loopback},
        )
        assert cron.status_code == 422
        assert cron.json()["detail"].startswith("Webhook host blocked: 127.0.0.1 is a loopback")
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        run = {"assistant_id": "simple", "input": HUMAN, "webhook": "http://10.0.0.7/hook"}
        for path, body in (
            (f"/threads/{tid}/runs", run),
            (f"/threads/{tid}/runs/wait", run),
            ("/runs", run),
            ("/runs/stream", run),
            ("/runs/batch", [run]),
        ):
            refused = await http.post(path, json=body)
            assert refused.status_code == 422, path
            assert "10.0.0.7 is a private address" in refused.json()["detail"]
        assert (await http.get(f"/threads/{tid}/runs")).json() == []  # nothing was created


async def test_thread_cron_fires_on_its_thread(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    idle = (await client.threads.create())["thread_id"]
    ended = (await client.threads.create())["thread_id"]
    cron = await client.crons.create_for_thread(
        tid, "simple", schedule="* * * * * *", input=HUMAN, metadata={"cm": "y"}
    )
    await client.crons.create_for_thread(
        idle, "simple", schedule="* * * * * *", input=HUMAN, enabled=False
    )
    await client.crons.create_for_thread(
        ended,
        "simple",
        schedule="* * * * * *",
        input=HUMAN,
        end_time=datetime.now(UTC) - timedelta(seconds=1),
    )
    runs = await _runs_of(client, tid, at_least=2)
    assert len(runs) >= 2
    for run in runs:
        assert run["metadata"]["cm"] == "y"
        assert run["kwargs"]["config"]["configurable"]["cron_id"] == cron["cron_id"]
        assert run["multitask_strategy"] == "enqueue"
    await client.runs.join(tid, runs[0]["run_id"])
    assert (await client.threads.get_state(tid))["values"]["count"] >= 2
    # Both other crons had the same schedule all along: disabled and ended ones never fire.
    assert await client.runs.list(idle) == [] and await client.runs.list(ended) == []
    searched = await client.crons.search(thread_id=tid)
    assert _at(searched[0]["next_run_date"]) > _at(cron["next_run_date"])

    await client.threads.delete(tid)  # a thread's crons go with it, as in the reference
    assert await client.crons.count(thread_id=tid) == 0


async def test_stateless_cron_keeps_its_threads_when_asked(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    aid = (await client.assistants.create("simple"))["assistant_id"]
    cron = await client.crons.create(
        aid, schedule="* * * * * *", input=HUMAN, on_run_completed="keep"
    )
    deadline = time.monotonic() + 30
    threads: list[Any] = []
    while len(threads) < 2 and time.monotonic() < deadline:
        threads = await client.threads.search(metadata={"assistant_id": aid}, limit=10)
        await asyncio.sleep(0.2)  # no event announces a cron's new thread
    await client.crons.delete(cron["cron_id"])
    assert len(threads) >= 2  # a new thread each firing, kept
    runs = await client.runs.list(threads[0]["thread_id"])
    assert (
        len(runs) == 1
        and runs[0]["kwargs"]["config"]["configurable"]["cron_id"] == (cron["cron_id"])
    )
    await client.assistants.delete(aid)  # an assistant's crons go with it
    assert await client.crons.count(assistant_id=aid) == 0
