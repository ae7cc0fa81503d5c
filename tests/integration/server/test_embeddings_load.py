"""The local embedding model loads after the server answers: ``/ok`` first, ``/ready`` after.

Loading the model (ONNX Runtime's session on it, or torch and sentence-transformers where
onnxruntime is missing) takes from a second to many; the server must not pay for it before it
answers. These tests check that nothing on the start-up import path pulls a runtime in,
that ``/ready`` reports the model until it is loaded (and a failed load), and that a Store
API search sent as soon as the server answers waits for the model instead of failing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from langgraph_sdk import get_client

from nodes.embeddings import LocalEmbeddings
from server.config import LangGraphConfig
from server.context import AppContext, DatabaseTarget
from server.graphs import GraphRegistry
from server.routes import health
from state.db import Persistence
from state.settings import Settings
from tests.support.imports import modules_loaded_by
from tests.support.server import LiveServer

HEAVY = ("torch", "sentence_transformers", "transformers", "onnxruntime", "tokenizers")


def test_importing_the_cli_imports_no_model_runtime() -> None:
    assert modules_loaded_by("import server.cli", HEAVY) == []


def ready_app(persistence: Persistence, database_url: str, embeddings: LocalEmbeddings) -> FastAPI:
    app = FastAPI()
    app.include_router(health.router)
    app.state.ctx = AppContext(
        settings=Settings(),
        config=LangGraphConfig(graphs={}),
        graphs=GraphRegistry({}),
        database=DatabaseTarget(url=database_url, embedded=False),
        persistence=persistence,
        embeddings=embeddings,
    )
    return app


async def test_ready_reports_the_model_until_it_is_loaded(
    persistence: Persistence, database_url: str
) -> None:
    embeddings = LocalEmbeddings()
    transport = httpx.ASGITransport(app=ready_app(persistence, database_url, embeddings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        before = await client.get("/ready")
        assert before.status_code == 503
        assert before.json()["checks"]["embeddings"] == {"ok": False, "error": "loading"}
        assert before.json()["checks"]["postgres"]["ok"] is True
        await asyncio.to_thread(embeddings.load)
        after = await client.get("/ready")
    assert after.status_code == 200, after.text
    assert after.json()["checks"]["embeddings"] == {"ok": True}


async def test_ready_reports_a_model_that_failed_to_load(
    persistence: Persistence, database_url: str, tmp_path: Path
) -> None:
    embeddings = LocalEmbeddings(model_path=str(tmp_path / "no-model-here"))
    with pytest.raises(Exception):  # noqa: B017  (whatever sentence-transformers raises)
        await asyncio.to_thread(embeddings.load)
    assert embeddings.status == "failed"
    transport = httpx.ASGITransport(app=ready_app(persistence, database_url, embeddings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["embeddings"] == {"ok": False, "error": "failed"}


async def test_server_answers_first_and_a_search_waits_for_the_model(
    server_factory: Callable[..., LiveServer],
) -> None:
    server = server_factory(env={"EMBEDDINGS": "local"})
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        # The server answered /ok (server_factory waited for it) while the model's imports
        # still take seconds: readiness says so.
        first = await http.get("/ready")
        assert first.status_code == 503, first.text
        assert first.json()["checks"]["embeddings"] == {"ok": False, "error": "loading"}
        info = (await http.get("/info")).json()
        assert info["embeddings"]["provider"] == "local"
        assert info["embeddings"]["runtime"] == "onnxruntime"

        # Writes and a semantic search sent now wait for the model rather than failing.
        client = get_client(url=server.url, timeout=120)
        ns = ["embeddings-load", uuid.uuid4().hex]
        await client.store.put_item(ns, key="coffee", value={"text": "She drinks espresso daily"})
        await client.store.put_item(ns, key="invoice", value={"text": "Invoice 12 is overdue"})
        found = await client.store.search_items(ns, query="a caffeinated beverage", limit=2)
        assert [item["key"] for item in found["items"]] == ["coffee", "invoice"]

        # The searches above needed the model, so it is loaded now.
        ready = await http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["embeddings"] == {"ok": True}
