"""The isolation matrix: every route of the app, driven as another user and as nobody.

The routes come from the app's own route table (``app.routes``), so a route added later is
covered the moment it exists: without an auth decision it fails
:func:`routes_without_decision`; with one it is called here like every other route. Request
bodies come from :data:`TEMPLATES` where a route needs a meaningful one (aimed at the owner's
resources), else from the route's path parameters alone.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from server.app import create_app
from server.auth import KeysRepo, RouteDecision, app_routes
from server.config import load_config
from server.context import DatabaseTarget
from server.graphs import GraphRegistry
from state.settings import load_settings

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent

MARK = "secret-mark-7f3c1a"
"""Put into everything the owner creates; it must never reach another caller."""


def build_app(config: Path) -> FastAPI:
    """The app a server with ``config`` serves (not started: only its route table is used)."""
    loaded = load_config(config)
    graphs = GraphRegistry.from_config(loaded)
    return create_app(
        load_settings(), loaded, graphs, DatabaseTarget("postgresql://unused/", embedded=False)
    )


def routes_without_decision(app: FastAPI) -> list[str]:
    """Routes that declare no auth decision, or more than one (should be empty)."""
    problems = []
    for route in app_routes(app):
        if not route.api_route:
            problems.append(f"{route.path}: not a FastAPI route, so it carries no auth decision")
        elif len(route.guards) != 1:
            problems.append(
                f"{sorted(route.methods)} {route.path}: {len(route.guards)} auth decisions"
            )
    return problems


def operations(app: FastAPI) -> list[tuple[str, str, RouteDecision]]:
    """``(method, path, route)`` of every operation the app serves."""
    found = []
    for route in app_routes(app):
        for method in sorted(route.methods - {"HEAD"}):
            found.append((method, route.path, route))
    return found


def is_public(route: RouteDecision) -> bool:
    """Whether the route's decision opens it to anyone (always, or by a setting)."""
    return route.guards[0].resource is None


def create_key(database_url: str, user: str, role: str = "member") -> str:
    """A key for ``user``, made with the server's own key store (what the CLI calls)."""

    async def make() -> str:
        async with AsyncConnectionPool(
            database_url, min_size=1, max_size=1, kwargs={"row_factory": dict_row}, open=False
        ) as pool:
            return (await KeysRepo(pool).create(user, role=role)).key

    return asyncio.run(make())


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``staffgraph <args>`` against the server's database."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Owned:
    """The owner's resources, which the other callers aim at."""

    user: str
    thread: str
    run: str
    assistant: str
    checkpoint: str
    namespace: list[str]
    extra: dict[str, str] = field(default_factory=dict)

    def ids(self) -> list[str]:
        return [self.thread, self.run, self.assistant, *self.extra.values()]


def seed(client: httpx.Client, user: str) -> Owned:
    """Create a thread with a finished run, an assistant and a store item as ``user``."""
    thread = client.post("/threads", json={"metadata": {"mark": MARK}})
    assert thread.status_code == 200, thread.text
    thread_id = thread.json()["thread_id"]
    run = client.post(
        f"/threads/{thread_id}/runs/wait",
        json={"assistant_id": "whoami", "input": {"note": MARK}, "metadata": {"mark": MARK}},
    )
    assert run.status_code == 200, run.text
    runs = client.get(f"/threads/{thread_id}/runs").json()
    state = client.get(f"/threads/{thread_id}/state").json()
    assistant = client.post(
        "/assistants", json={"graph_id": "whoami", "name": MARK, "metadata": {"mark": MARK}}
    )
    assert assistant.status_code == 200, assistant.text
    namespace = [user, "notes"]
    put = client.put(
        "/store/items", json={"namespace": namespace, "key": "k", "value": {"mark": MARK}}
    )
    assert put.status_code == 204, put.text
    cron = client.post(
        "/runs/crons",
        json={"assistant_id": "whoami", "schedule": "0 0 1 1 *", "metadata": {"mark": MARK}},
    )
    assert cron.status_code == 200, cron.text
    return Owned(
        extra={"cron_id": cron.json()["cron_id"]},
        user=user,
        thread=thread_id,
        run=runs[0]["run_id"],
        assistant=assistant.json()["assistant_id"],
        checkpoint=state["checkpoint"]["checkpoint_id"],
        namespace=namespace,
    )


Body = Callable[[Owned], Any]

TEMPLATES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/threads"): {"json": lambda o: {"thread_id": o.thread, "if_exists": "do_nothing"}},
    ("POST", "/threads/search"): {"json": lambda o: {"metadata": {"mark": MARK}}},
    ("POST", "/threads/count"): {"json": lambda o: {"metadata": {"mark": MARK}}},
    ("POST", "/threads/prune"): {"json": lambda o: {"thread_ids": [o.thread]}},
    ("PATCH", "/threads/{thread_id}"): {"json": lambda o: {"metadata": {"taken": True}}},
    ("POST", "/threads/{thread_id}/state"): {"json": lambda o: {"values": {"note": "x"}}},
    ("POST", "/threads/{thread_id}/state/checkpoint"): {
        "json": lambda o: {"checkpoint": {"checkpoint_id": o.checkpoint}}
    },
    ("POST", "/threads/{thread_id}/runs"): {"json": lambda o: {"assistant_id": "whoami"}},
    ("POST", "/threads/{thread_id}/runs/wait"): {"json": lambda o: {"assistant_id": "whoami"}},
    ("POST", "/threads/{thread_id}/runs/stream"): {"json": lambda o: {"assistant_id": "whoami"}},
    ("POST", "/runs"): {"json": lambda o: {"assistant_id": o.assistant, "input": {}}},
    ("POST", "/runs/wait"): {"json": lambda o: {"assistant_id": o.assistant, "input": {}}},
    ("POST", "/runs/stream"): {"json": lambda o: {"assistant_id": o.assistant, "input": {}}},
    ("POST", "/runs/batch"): {"json": lambda o: [{"assistant_id": o.assistant, "input": {}}]},
    ("POST", "/runs/cancel"): {"json": lambda o: {"thread_id": o.thread, "run_ids": [o.run]}},
    ("POST", "/assistants"): {
        "json": lambda o: {
            "graph_id": "whoami",
            "assistant_id": o.assistant,
            "if_exists": "do_nothing",
        }
    },
    ("POST", "/assistants/search"): {"json": lambda o: {"metadata": {"mark": MARK}}},
    ("POST", "/assistants/count"): {"json": lambda o: {"metadata": {"mark": MARK}}},
    ("PATCH", "/assistants/{assistant_id}"): {"json": lambda o: {"name": "taken"}},
    ("POST", "/assistants/{assistant_id}/latest"): {"json": lambda o: {"version": 1}},
    ("PUT", "/store/items"): {
        "json": lambda o: {"namespace": o.namespace, "key": "k", "value": {"taken": True}}
    },
    ("GET", "/store/items"): {"params": lambda o: {"namespace": ".".join(o.namespace), "key": "k"}},
    ("DELETE", "/store/items"): {"json": lambda o: {"namespace": o.namespace, "key": "k"}},
    ("POST", "/store/items/search"): {"json": lambda o: {"namespace_prefix": o.namespace[:1]}},
    ("POST", "/store/namespaces"): {"json": lambda o: {"prefix": o.namespace[:1]}},
    ("GET", "/usage"): {"params": lambda o: {"user_id": o.user}},
    ("GET", "/audit"): {"params": lambda o: {"actor": o.user, "format": "ndjson"}},
    ("POST", "/runs/crons"): {
        "json": lambda o: {"assistant_id": o.assistant, "schedule": "0 0 1 1 *"}
    },
    ("POST", "/threads/{thread_id}/runs/crons"): {
        "json": lambda o: {"assistant_id": "whoami", "schedule": "0 0 1 1 *"}
    },
    ("POST", "/runs/crons/search"): {"json": lambda o: {"metadata": {"mark": MARK}}},
    ("POST", "/runs/crons/count"): {"json": lambda o: {"metadata": {"mark": MARK}}},
    ("PATCH", "/runs/crons/{cron_id}"): {"json": lambda o: {"metadata": {"taken": True}}},
    ("POST", "/mcp"): {
        "json": lambda o: {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        "headers": {"Accept": "application/json, text/event-stream"},
    },
}


def path_for(path: str, owned: Owned) -> str:
    """``path`` with its parameters filled with the owner's resources."""
    values = {
        "thread_id": owned.thread,
        "run_id": owned.run,
        "assistant_id": owned.assistant,
        "checkpoint_id": owned.checkpoint,
        "user_id": owned.user,
        "namespace": "x",
        "path": "index.html",  # a console file (/ui/{path})
        **owned.extra,
    }
    out = path
    for name in _params(path):
        value = values.get(name, str(uuid.uuid4()))
        out = out.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
    return out


def _params(path: str) -> list[str]:
    names = []
    rest = path
    while "{" in rest:
        start = rest.index("{") + 1
        end = rest.index("}", start)
        names.append(rest[start:end].split(":")[0])
        rest = rest[end + 1 :]
    return names


def call(
    client: httpx.Client, method: str, path: str, owned: Owned, headers: dict[str, str]
) -> httpx.Response:
    """One request at the owner's resources through ``route``."""
    template = TEMPLATES.get((method, path), {})
    kwargs: dict[str, Any] = {"headers": {**template.get("headers", {}), **headers}}
    kwargs["timeout"] = 60.0
    if "json" in template:
        kwargs["json"] = template["json"](owned)
    elif method in ("POST", "PUT", "PATCH", "DELETE"):
        kwargs["json"] = {}
    if "params" in template:
        kwargs["params"] = template["params"](owned)
    # httpx's .delete takes no body: build the request explicitly.
    return client.request(method, path_for(path, owned), **kwargs)


DENIED = {401, 403, 404, 405, 409}
"""Answers that reveal nothing: not authenticated, not allowed, "missing", "not offered"
(``GET /mcp``), "already exists"."""


def leaks(response: httpx.Response, owned: Owned) -> list[str]:
    """What of the owner's a response gave away (should be nothing)."""
    found = []
    if MARK in response.text:
        found.append("the owner's data")
    if 200 <= response.status_code < 300:
        found += [f"id {i}" for i in owned.ids() if i in response.text]
    return found


def owner_still_intact(client: httpx.Client, owned: Owned) -> None:
    """The owner's resources are exactly as before the other callers tried."""
    thread = client.get(f"/threads/{owned.thread}")
    assert thread.status_code == 200 and thread.json()["metadata"].get("mark") == MARK
    assert "taken" not in thread.json()["metadata"]
    assert client.get(f"/threads/{owned.thread}/runs/{owned.run}").status_code == 200
    assistant = client.get(f"/assistants/{owned.assistant}")
    assert assistant.status_code == 200 and assistant.json()["name"] == MARK
    item = client.get("/store/items", params={"namespace": ".".join(owned.namespace), "key": "k"})
    assert item.json()["value"] == {"mark": MARK}
