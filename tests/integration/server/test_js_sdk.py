"""The LangGraph JS SDK (``@langchain/langgraph-sdk``, installed in tests/js by ``make test``)
works against a server with API keys: it sends the key as ``x-api-key``, runs carry the key's
user, and a bad key is refused with 401."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.auth.matrix import HERE, create_key
from tests.support.server import REPO, LiveServer, fresh_database, start_server

SCRIPT = REPO / "tests" / "js" / "whoami.mjs"


@pytest.fixture(scope="module")
def keyed(database_url: str) -> Iterator[tuple[LiveServer, str]]:
    url = fresh_database(database_url)
    server = start_server(
        env={"DATABASE_URL": url, "STAFFGRAPH_AUTH": "keys"}, config=HERE / "langgraph.json"
    )
    try:
        yield server, url
    finally:
        server.stop()


def test_js_sdk_with_an_api_key(keyed: tuple[LiveServer, str]) -> None:
    server, url = keyed
    key = create_key(url, "alice")
    done = subprocess.run(
        ["node", str(SCRIPT)],
        cwd=SCRIPT.parent,
        env={**os.environ, "STAFFGRAPH_URL": server.url, "STAFFGRAPH_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["thread"]["metadata"]["owner"] == "alice"
    assert seen["waited"]["seen"]["user_id"] == "alice"
    assert seen["waited"]["seen"]["server_info_identity"] == "alice"
    assert seen["events"][0] == "metadata" and "values" in seen["events"]
    assert seen["threads"] == [seen["thread"]["thread_id"]]
    assert seen["refused"] is not None and seen["refused"]["status"] == 401, seen["refused"]
