"""Webhooks against a live server and a loopback receiver (private addresses allowed by setting).

What is posted was compared with the reference server (``langgraph dev`` with loopback
webhooks allowed) on the same graphs: the Run object plus ``status``, ``run_started_at``,
``run_ended_at``, ``webhook_sent_at``, ``values`` (``null`` for a stateless run whose thread is
deleted when it ends) and, for a failed run, ``error``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.support.server import LiveServer, fresh_database, start_server
from tests.support.webhook_receiver import Delivery, WebhookReceiver

HUMAN = {"messages": [{"role": "user", "content": "hi"}]}
SECRET = "test-webhook-secret"
PAYLOAD_KEYS = {
    "run_id",
    "thread_id",
    "assistant_id",
    "created_at",
    "updated_at",
    "metadata",
    "kwargs",
    "multitask_strategy",
    "status",
    "langsmith_session_name",
    "run_started_at",
    "run_ended_at",
    "webhook_sent_at",
    "values",
}


@pytest.fixture(scope="module")
def hook_server(database_url: str) -> Iterator[LiveServer]:
    """A server that may call loopback webhooks, signs them, and retries quickly."""
    server = start_server(
        env={
            "DATABASE_URL": fresh_database(database_url),
            "STAFFGRAPH_WEBHOOK_ALLOW_PRIVATE": "true",
            "STAFFGRAPH_WEBHOOK_SECRET": SECRET,
            "STAFFGRAPH_WEBHOOK_BACKOFF_SECONDS": "0.1",
            "STAFFGRAPH_WEBHOOK_MAX_ATTEMPTS": "3",
        }
    )
    try:
        yield server
    finally:
        server.stop()


def _verify(delivery: Delivery) -> None:
    """The signature header is HMAC-SHA256(secret, "<t>." + body), as the README says."""
    fields = dict(
        part.split("=", 1) for part in delivery.headers["X-Staffgraph-Signature"].split(",")
    )
    expected = hmac.new(
        SECRET.encode(), fields["t"].encode() + b"." + delivery.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(int(fields["t"]) - time.time()) < 120


async def _delivery_record(http: httpx.AsyncClient, thread_id: str, run_id: str) -> Any:
    answer = await http.get(f"/threads/{thread_id}/runs/{run_id}/webhook")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_cron_with_webhook_delivers_a_signed_payload(
    hook_server: LiveServer, webhook_receiver: WebhookReceiver
) -> None:
    client = get_client(url=hook_server.url)
    tid = (await client.threads.create())["thread_id"]
    cron = await client.crons.create_for_thread(
        tid,
        "simple",
        schedule="* * * * * *",
        input=HUMAN,
        metadata={"cm": "y"},
        webhook=f"{webhook_receiver.url}/cron",
    )
    delivery = await webhook_receiver.next()
    await client.crons.delete(cron["cron_id"])
    _verify(delivery)
    assert delivery.path == "/cron"
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-Staffgraph-Attempt"] == "1"
    body = delivery.json()
    assert set(body) == PAYLOAD_KEYS
    assert delivery.headers["X-Staffgraph-Delivery"] == body["run_id"]
    assert body["status"] == "success" and body["thread_id"] == tid
    assert body["metadata"]["cm"] == "y"
    assert body["kwargs"]["config"]["configurable"]["cron_id"] == cron["cron_id"]
    assert body["values"]["messages"][-1]["content"] == "echo: hi"
    assert body["run_started_at"] <= body["run_ended_at"] <= body["webhook_sent_at"]
    async with httpx.AsyncClient(base_url=hook_server.url) as http:
        record = await _wait_settled(http, tid, body["run_id"])
    assert record["status"] == "delivered" and record["attempts"] == 1
    assert record["last_status_code"] == 200 and record["url"] == f"{webhook_receiver.url}/cron"
    assert record["delivered_at"] is not None and record["next_attempt_at"] is None


async def test_run_webhooks_stateful_stateless_and_batch(
    hook_server: LiveServer, webhook_receiver: WebhookReceiver
) -> None:
    client = get_client(url=hook_server.url)
    tid = (await client.threads.create())["thread_id"]
    hook = f"{webhook_receiver.url}/runs"
    await client.runs.wait(tid, "simple", input=HUMAN, webhook=hook, metadata={"m": 1})
    stateful = (await webhook_receiver.next()).json()
    assert stateful["thread_id"] == tid and stateful["metadata"]["m"] == 1
    assert stateful["values"]["count"] == 1

    await client.runs.wait(None, "simple", input=HUMAN, webhook=hook)
    stateless = (await webhook_receiver.next()).json()
    assert stateless["status"] == "success"
    assert stateless["values"] is None  # the thread went with the run, as in the reference

    async with httpx.AsyncClient(base_url=hook_server.url) as http:
        batch = await http.post(
            "/runs/batch",
            json=[{"assistant_id": "simple", "input": HUMAN, "webhook": hook} for _ in range(2)],
        )
        assert batch.status_code == 200
        got = {(await webhook_receiver.next()).json()["run_id"] for _ in range(2)}
        assert got == {run["run_id"] for run in batch.json()}
        gone = await _wait_settled(http, stateless["thread_id"], stateless["run_id"])
        assert gone["status"] == "delivered"  # kept after the stateless thread is deleted
        none = await http.get(f"/threads/{tid}/runs/{stateful['run_id']}x/webhook")
        assert none.status_code == 422


async def test_failures_are_retried_recorded_and_never_fail_the_run(
    hook_server: LiveServer, webhook_receiver: WebhookReceiver
) -> None:
    client = get_client(url=hook_server.url)
    webhook_receiver.answer("/flaky", 500, 503)
    webhook_receiver.answer("/down", 500, 500, 500)
    webhook_receiver.answer("/gone", 404)
    async with httpx.AsyncClient(base_url=hook_server.url, timeout=30) as http:
        tid = (await client.threads.create())["thread_id"]
        failing = await client.runs.wait(
            tid, "failing", input=HUMAN, webhook=f"{webhook_receiver.url}/flaky", raise_error=False
        )
        assert "__error__" in failing
        attempts = [await webhook_receiver.next() for _ in range(3)]
        assert [d.headers["X-Staffgraph-Attempt"] for d in attempts] == ["1", "2", "3"]
        body = attempts[-1].json()
        assert body["status"] == "error"
        assert body["error"] == {
            "error": "ValueError",
            "message": "intentional failure for testing",
        }
        for delivery in attempts:
            _verify(delivery)
        record = await _wait_settled(http, tid, body["run_id"])
        assert (record["status"], record["attempts"], record["last_status_code"]) == (
            "delivered",
            3,
            200,
        )

        down = (await client.threads.create())["thread_id"]
        await client.runs.wait(down, "simple", input=HUMAN, webhook=f"{webhook_receiver.url}/down")
        run_id = [(await webhook_receiver.next()).json()["run_id"] for _ in range(3)][0]
        assert (await client.runs.get(down, run_id))["status"] == "success"
        record = await _wait_settled(http, down, run_id)
        assert (record["status"], record["attempts"], record["last_status_code"]) == (
            "failed",
            3,
            500,
        )
        assert record["last_error"] == "the receiver answered 500"

        gone = (await client.threads.create())["thread_id"]
        await client.runs.wait(gone, "simple", input=HUMAN, webhook=f"{webhook_receiver.url}/gone")
        run_id = (await webhook_receiver.next()).json()["run_id"]
        record = await _wait_settled(http, gone, run_id)
        assert (record["status"], record["attempts"]) == ("failed", 1)  # a 404 is not retried
        assert (await client.threads.get(gone))["status"] == "idle"


async def _wait_settled(http: httpx.AsyncClient, thread_id: str, run_id: str) -> Any:
    """The delivery once its last attempt is recorded (just after the receiver answered it)."""
    deadline = time.monotonic() + 10
    while True:
        record = await _delivery_record(http, thread_id, run_id)
        if record["status"] in ("delivered", "failed") or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.05)  # the record is written right after the receiver answers
