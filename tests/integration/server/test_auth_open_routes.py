"""What stays open with auth on, and what a key leaves in the database.

``/ok`` and ``/info`` are open as in the reference; ``/metrics`` and ``/docs`` +
``/openapi.json`` are open by default and need a key once ``STAFFGRAPH_METRICS_PUBLIC`` /
``STAFFGRAPH_DOCS_PUBLIC`` are false. A key is stored only as its SHA-256.
"""

from __future__ import annotations

import hashlib

import httpx
import psycopg

from tests.support.auth.matrix import HERE, create_key
from tests.support.server import fresh_database, start_server


def test_metrics_and_docs_need_a_key_when_configured_closed(database_url: str) -> None:
    url = fresh_database(database_url)
    server = start_server(
        env={
            "DATABASE_URL": url,
            "STAFFGRAPH_AUTH": "keys",
            "STAFFGRAPH_METRICS_PUBLIC": "false",
            "STAFFGRAPH_DOCS_PUBLIC": "false",
        },
        config=HERE / "langgraph.json",
    )
    try:
        key = create_key(url, "alice")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for path in ("/ok", "/info"):
                assert client.get(path).status_code == 200, path
            for path in ("/metrics", "/docs", "/openapi.json"):
                closed = client.get(path)
                assert closed.status_code == 401, path
                assert "detail" in closed.json()
                assert client.get(path, headers={"x-api-key": key}).status_code == 200, path
    finally:
        server.stop()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT key_id, key_hash, user_id FROM api_keys").fetchall()
    assert rows == [(key[3:15], hashlib.sha256(key.encode()).hexdigest(), "alice")]
    with psycopg.connect(url) as conn:
        dump = conn.execute("SELECT row_to_json(k)::text FROM api_keys k").fetchone()
    assert dump is not None and key[16:] not in dump[0]  # the secret is nowhere
