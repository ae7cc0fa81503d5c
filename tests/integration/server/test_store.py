"""Store API against a live server, driven by ``langgraph_sdk`` (and httpx for raw requests)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph.store.postgres import AsyncPostgresStore
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.support.server import REPO, LiveServer, fresh_database, start_server
from tests.support.store_embed import cosine

STORE_CONFIG = REPO / "tests" / "support" / "langgraph_store.json"


@pytest.fixture
def root() -> str:
    """A namespace root no other test uses (the live server is shared by the session)."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(live_server: LiveServer) -> AsyncIterator[LangGraphClient]:
    sdk = get_client(url=live_server.url, api_key=None)
    yield sdk
    await sdk.aclose()


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as raw:
        yield raw


@pytest.fixture(scope="module")
def vector_server(database_url: str) -> Iterator[LiveServer]:
    """A server whose langgraph.json sets ``store.index`` to the deterministic embed function."""
    server = start_server(env={"DATABASE_URL": fresh_database(database_url)}, config=STORE_CONFIG)
    try:
        yield server
    finally:
        server.stop()


async def _expires_at(server: LiveServer, namespace: list[str], key: str) -> dt.datetime | None:
    async with await psycopg.AsyncConnection.connect(server.env["DATABASE_URL"]) as conn:
        cur = await conn.execute(
            "SELECT expires_at FROM store WHERE prefix = %s AND key = %s",
            (".".join(namespace), key),
        )
        row = await cur.fetchone()
    assert row is not None, f"{namespace}/{key} is not in the store table"
    value: dt.datetime | None = row[0]
    return value


# --- items -------------------------------------------------------------------------------


async def test_put_get_replace_delete_through_sdk(client: LangGraphClient, root: str) -> None:
    ns = [root, "users", "u1"]
    await client.store.put_item(ns, key="pref", value={"text": "likes dark roast coffee"})

    item = await client.store.get_item(ns, key="pref")
    assert item["namespace"] == ns
    assert item["key"] == "pref"
    assert item["value"] == {"text": "likes dark roast coffee"}
    created = dt.datetime.fromisoformat(item["created_at"])
    assert created.tzinfo is not None
    assert dt.datetime.fromisoformat(item["updated_at"]) >= created

    await client.store.put_item(ns, key="pref", value={"text": "now prefers tea", "n": 2})
    replaced = await client.store.get_item(ns, key="pref")
    assert replaced["value"] == {"text": "now prefers tea", "n": 2}
    assert replaced["created_at"] == item["created_at"]
    assert dt.datetime.fromisoformat(replaced["updated_at"]) > created

    await client.store.delete_item(ns, key="pref")
    assert await client.store.get_item(ns, key="pref") is None
    # Deleting what is not there is not an error (idempotent, like the official server).
    await client.store.delete_item(ns, key="pref")


async def test_missing_item_is_null_like_the_official_server(
    http: httpx.AsyncClient, root: str
) -> None:
    # The official server answers 200 with `null` (the SDK's get_item then returns None).
    response = await http.get("/store/items", params={"namespace": f"{root}.none", "key": "k"})
    assert response.status_code == 200
    assert response.json() is None


async def test_get_accepts_repeated_namespace_params(
    client: LangGraphClient, http: httpx.AsyncClient, root: str
) -> None:
    await client.store.put_item([root, "a", "b"], key="k", value={"v": 1})
    via_sdk = await client.store.get_item([root, "a", "b"], key="k", refresh_ttl=False)
    response = await http.get(
        "/store/items",
        params=[("namespace", root), ("namespace", "a"), ("namespace", "b"), ("key", "k")],
    )
    assert response.status_code == 200
    assert response.json() == via_sdk


async def test_value_types_round_trip(client: LangGraphClient, root: str) -> None:
    value = {
        "text": "naïve café ☕ 日本",
        "int": 2**62,
        "float": 1.5,
        "bool": False,
        "none": None,
        "list": [1, "two", {"three": [3]}],
    }
    await client.store.put_item([root], key="types", value=value)
    assert (await client.store.get_item([root], key="types"))["value"] == value


# --- search ------------------------------------------------------------------------------


async def test_search_lists_newest_first_with_filter_and_pages(
    client: LangGraphClient, root: str
) -> None:
    ns = [root, "notes"]
    for i in range(5):
        kind = "todo" if i % 2 == 0 else "fact"
        await client.store.put_item(ns, key=f"n{i}", value={"kind": kind, "i": i})
    await client.store.put_item([root, "notes", "deep"], key="d", value={"kind": "todo", "i": 9})
    await client.store.put_item([f"{root}x"], key="sibling", value={"kind": "todo", "i": 9})

    everything = await client.store.search_items([root], limit=100)
    assert [i["key"] for i in everything["items"]] == ["d", "n4", "n3", "n2", "n1", "n0"]
    assert all(i["score"] is None for i in everything["items"])

    only_notes = await client.store.search_items(ns, limit=100)
    assert {i["namespace"][-1] for i in only_notes["items"]} == {"notes", "deep"}

    todos = await client.store.search_items(ns, filter={"kind": "todo"}, limit=100)
    assert [i["key"] for i in todos["items"]] == ["d", "n4", "n2", "n0"]
    not_todo = await client.store.search_items(ns, filter={"kind": {"$ne": "todo"}}, limit=100)
    assert [i["key"] for i in not_todo["items"]] == ["n3", "n1"]
    both = await client.store.search_items(ns, filter={"kind": "todo", "i": {"$eq": 2}})
    assert [i["key"] for i in both["items"]] == ["n2"]

    pages = [
        [i["key"] for i in (await client.store.search_items(ns, limit=2, offset=o))["items"]]
        for o in (0, 2, 4, 6)
    ]
    assert pages == [["d", "n4"], ["n3", "n2"], ["n1", "n0"], []]


async def test_scores_are_null_without_query(client: LangGraphClient, root: str) -> None:
    # The session server indexes "$" with the default embedder: a query ranks, no query lists.
    await client.store.put_item([root], key="k", value={"text": "hello"})
    listed = await client.store.search_items([root])
    assert [i["score"] for i in listed["items"]] == [None]
    ranked = await client.store.search_items([root], query="hello")
    assert isinstance(ranked["items"][0]["score"], float)


async def test_vector_search_orders_by_score(vector_server: LiveServer) -> None:
    ns = ["docs", uuid.uuid4().hex[:8]]
    texts = {
        "a": "likes dark roast coffee",
        "b": "has a cat named Tom",
        "c": "espresso for my cat",
        "f": "snow and rain all week",
    }
    async with get_client(url=vector_server.url, api_key=None) as sdk:
        for key, text in texts.items():
            await sdk.store.put_item(ns, key=key, value={"text": text, "topic": key})
        # index=False: stored, listed, never embedded; index=[...]: embeds that field instead.
        await sdk.store.put_item(ns, key="d", value={"text": "coffee coffee"}, index=False)
        await sdk.store.put_item(
            ns, key="e", value={"text": "nothing", "title": "latte"}, index=["title"]
        )
        embedded = {**texts, "e": "latte"}

        result = await sdk.store.search_items(ns, query="coffee", limit=10)
        keys = [i["key"] for i in result["items"]]
        expected = sorted(embedded, key=lambda k: cosine("coffee", embedded[k]), reverse=True)
        assert keys == expected == ["e", "a", "c", "b", "f"]
        for item in result["items"]:
            assert item["score"] == pytest.approx(cosine("coffee", embedded[item["key"]]))

        first = await sdk.store.search_items(ns, query="coffee", limit=2)
        second = await sdk.store.search_items(ns, query="coffee", limit=2, offset=2)
        assert [i["key"] for i in first["items"] + second["items"]] == expected[:4]

        cats = await sdk.store.search_items(ns, query="cat", filter={"topic": {"$ne": "b"}})
        assert [i["key"] for i in cats["items"]][:1] == ["c"]
        assert "b" not in [i["key"] for i in cats["items"]]

        listed = await sdk.store.search_items(ns, limit=10)
        assert {i["key"] for i in listed["items"]} == {"a", "b", "c", "d", "e", "f"}
        assert all(i["score"] is None for i in listed["items"])


# --- namespaces --------------------------------------------------------------------------


async def test_list_namespaces(client: LangGraphClient, root: str) -> None:
    for ns in ([root, "a", "x"], [root, "a", "y"], [root, "b"], [root, "c", "y"]):
        await client.store.put_item(ns, key="k", value={"v": 1})

    listed = await client.store.list_namespaces(prefix=[root])
    assert listed == {
        "namespaces": [[root, "a", "x"], [root, "a", "y"], [root, "b"], [root, "c", "y"]]
    }
    depth2 = await client.store.list_namespaces(prefix=[root], max_depth=2)
    assert depth2["namespaces"] == [[root, "a"], [root, "b"], [root, "c"]]
    ending_y = await client.store.list_namespaces(prefix=[root], suffix=["y"])
    assert ending_y["namespaces"] == [[root, "a", "y"], [root, "c", "y"]]
    wildcard = await client.store.list_namespaces(prefix=[root, "*", "y"])
    assert wildcard["namespaces"] == [[root, "a", "y"], [root, "c", "y"]]
    paged = await client.store.list_namespaces(prefix=[root], limit=2, offset=1)
    assert paged["namespaces"] == [[root, "a", "y"], [root, "b"]]


# --- TTL ---------------------------------------------------------------------------------


async def test_item_with_ttl_expires_at_the_sweep(
    client: LangGraphClient, live_server: LiveServer, root: str
) -> None:
    ns = [root, "ttl"]
    await client.store.put_item(ns, key="short", value={"v": 1}, ttl=0.0001)  # 6 ms
    await client.store.put_item(ns, key="long", value={"v": 2}, ttl=60)
    await client.store.put_item(ns, key="forever", value={"v": 3})
    assert await _expires_at(live_server, ns, "forever") is None
    short_expiry = await _expires_at(live_server, ns, "short")
    assert short_expiry is not None

    # Expiry is a moment on the database clock, not an event: wait until it has passed.
    remaining = (short_expiry - dt.datetime.now(dt.UTC)).total_seconds()
    if remaining > 0:
        await asyncio.sleep(remaining + 0.001)
    async with AsyncPostgresStore.from_conn_string(live_server.env["DATABASE_URL"]) as store:
        assert await store.sweep_ttl() >= 1

    assert await client.store.get_item(ns, key="short") is None
    assert (await client.store.get_item(ns, key="long"))["value"] == {"v": 2}
    left = await client.store.search_items(ns)
    assert sorted(i["key"] for i in left["items"]) == ["forever", "long"]


async def test_refresh_ttl_on_get_and_search(
    client: LangGraphClient, live_server: LiveServer, root: str
) -> None:
    ns = [root, "refresh"]
    await client.store.put_item(ns, key="k", value={"v": 1}, ttl=30)
    put_expiry = await _expires_at(live_server, ns, "k")
    assert put_expiry is not None

    await client.store.get_item(ns, key="k", refresh_ttl=False)
    await client.store.search_items(ns, refresh_ttl=False)
    assert await _expires_at(live_server, ns, "k") == put_expiry

    await client.store.get_item(ns, key="k", refresh_ttl=True)
    after_get = await _expires_at(live_server, ns, "k")
    assert after_get is not None and after_get > put_expiry

    await client.store.search_items(ns, refresh_ttl=True)
    after_search = await _expires_at(live_server, ns, "k")
    assert after_search is not None and after_search > after_get

    # Without refresh_ttl the store's default applies: reads refresh.
    await client.store.get_item(ns, key="k")
    assert (await _expires_at(live_server, ns, "k") or put_expiry) > after_search


# --- bad input ---------------------------------------------------------------------------

_DEEP: Any = {"v": 1}
for _ in range(80):
    _DEEP = {"v": _DEEP}

BAD_PUTS: list[tuple[str, dict[str, Any] | bytes, str]] = [
    ("dot in label", {"namespace": ["a.b"], "key": "k", "value": {}}, "must not contain '.'"),
    ("empty label", {"namespace": ["ok", ""], "key": "k", "value": {}}, "non-empty"),
    ("empty namespace", {"namespace": [], "key": "k", "value": {}}, "body.namespace"),
    ("label not a string", {"namespace": [1], "key": "k", "value": {}}, "body.namespace.0"),
    ("reserved root", {"namespace": ["langgraph"], "key": "k", "value": {}}, "reserved"),
    ("too deep", {"namespace": ["a"] * 33, "key": "k", "value": {}}, "body.namespace"),
    ("long label", {"namespace": ["a" * 257], "key": "k", "value": {}}, "256"),
    ("empty key", {"namespace": ["ok"], "key": "", "value": {}}, "body.key"),
    ("long key", {"namespace": ["ok"], "key": "k" * 1025, "value": {}}, "body.key"),
    ("NUL in key", {"namespace": ["ok"], "key": "a\x00", "value": {}}, "NUL"),
    ("value not object", {"namespace": ["ok"], "key": "k", "value": [1]}, "body.value"),
    ("missing value", {"namespace": ["ok"], "key": "k"}, "body.value"),
    ("NUL in value", {"namespace": ["ok"], "key": "k", "value": {"t": "\x00"}}, "NUL"),
    ("NUL in value key", {"namespace": ["ok"], "key": "k", "value": {"\x00": 1}}, "NUL"),
    ("huge int", {"namespace": ["ok"], "key": "k", "value": {"n": 2**64}}, "64-bit"),
    ("too nested", {"namespace": ["ok"], "key": "k", "value": _DEEP}, "nested deeper"),
    ("too big", {"namespace": ["ok"], "key": "k", "value": {"t": "x" * 1_100_000}}, "bytes"),
    ("index true", {"namespace": ["ok"], "key": "k", "value": {}, "index": True}, "body.index"),
    ("ttl zero", {"namespace": ["ok"], "key": "k", "value": {}, "ttl": 0}, "body.ttl"),
    ("ttl negative", {"namespace": ["ok"], "key": "k", "value": {}, "ttl": -5}, "body.ttl"),
    ("ttl huge", {"namespace": ["ok"], "key": "k", "value": {}, "ttl": 1e12}, "body.ttl"),
    (
        "NaN",
        b'{"namespace": ["ok"], "key": "k", "value": {"x": NaN}}',
        "body.value.x: Number must be finite",
    ),
    (
        "lone surrogate",
        b'{"namespace": ["ok"], "key": "k", "value": {"x": "\\ud800"}}',
        "surrogate",
    ),
    ("not JSON", b"namespace=ok&key=k", "JSON decode error"),
]


@pytest.mark.parametrize(("case", "body", "detail"), BAD_PUTS, ids=[c[0] for c in BAD_PUTS])
async def test_bad_put_is_422_and_changes_nothing(
    client: LangGraphClient,
    http: httpx.AsyncClient,
    root: str,
    case: str,
    body: dict[str, Any] | bytes,
    detail: str,
) -> None:
    await client.store.put_item([root, "ok"], key="k", value={"original": True})
    before = await client.store.search_items([root], limit=100)
    if isinstance(body, dict):
        # Aim every case at the item just written, so a wrongly accepted put would show.
        ns = body["namespace"]
        if ns[:1] == ["ok"]:
            body = {**body, "namespace": [root, *ns]}
        response = await http.put("/store/items", json=body)
    else:
        response = await http.put(
            "/store/items",
            content=body.replace(b'["ok"]', f'["{root}", "ok"]'.encode()),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]
    after = await client.store.search_items([root], limit=100)
    assert after == before
    assert (await client.store.list_namespaces(prefix=[root]))["namespaces"] == [[root, "ok"]]


BAD_READS: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("search limit 0", "POST", "/store/items/search", {"limit": 0}, "body.limit"),
    ("search limit 1001", "POST", "/store/items/search", {"limit": 1001}, "body.limit"),
    ("search offset -1", "POST", "/store/items/search", {"offset": -1}, "body.offset"),
    (
        "search bad operator",
        "POST",
        "/store/items/search",
        {"filter": {"a": {"$regex": ".*"}}},
        "unknown operator '$regex'",
    ),
    (
        "search empty operators",
        "POST",
        "/store/items/search",
        {"filter": {"a": {}}},
        "at least one operator",
    ),
    (
        "search range on object",
        "POST",
        "/store/items/search",
        {"filter": {"a": {"$gt": [1]}}},
        "number or a string",
    ),
    ("search NUL query", "POST", "/store/items/search", {"query": "a\x00"}, "NUL"),
    ("search long query", "POST", "/store/items/search", {"query": "q" * 10_001}, "body.query"),
    ("search dot prefix", "POST", "/store/items/search", {"namespace_prefix": ["a.b"]}, "'.'"),
    ("namespaces depth 0", "POST", "/store/namespaces", {"max_depth": 0}, "body.max_depth"),
    ("namespaces limit", "POST", "/store/namespaces", {"limit": 5000}, "body.limit"),
    ("namespaces bad suffix", "POST", "/store/namespaces", {"suffix": [""]}, "non-empty"),
    ("get no namespace", "GET", "/store/items?key=k", {}, "query.namespace"),
    ("get empty label", "GET", "/store/items?namespace=a..b&key=k", {}, "non-empty"),
    ("get no key", "GET", "/store/items?namespace=a", {}, "query.key"),
    ("get NUL key", "GET", "/store/items?namespace=a&key=%00", {}, "NUL"),
]


@pytest.mark.parametrize(
    ("case", "method", "url", "body", "detail"), BAD_READS, ids=[c[0] for c in BAD_READS]
)
async def test_bad_reads_are_422(
    http: httpx.AsyncClient, case: str, method: str, url: str, body: dict[str, Any], detail: str
) -> None:
    if method == "GET":
        response = await http.get(url)
    else:
        response = await http.post(url, json={"namespace_prefix": ["x"], **body})
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]


async def test_bad_delete_is_422_and_keeps_the_item(
    client: LangGraphClient, http: httpx.AsyncClient, root: str
) -> None:
    await client.store.put_item([root], key="k", value={"v": 1})
    for body in ({"namespace": [f"{root}.x"], "key": "k"}, {"namespace": [root]}, {"key": "k"}):
        response = await http.request("DELETE", "/store/items", json=body)
        assert response.status_code == 422, response.text
    assert (await client.store.get_item([root], key="k"))["value"] == {"v": 1}
