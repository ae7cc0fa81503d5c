"""HTTP behaviour shared by every route: CORS for Studio, JSON bodies, the body size limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from server.config import CorsConfig
from server.middleware import cors_options
from tests.support.server import REPO, LiveServer, fresh_database, start_server

CORS_CONFIG = REPO / "tests" / "support" / "langgraph_cors.json"
STUDIO = "https://smith.langchain.com"
STUDIO_HOSTS = [STUDIO, "https://eu.smith.langchain.com", "https://dev.smith.langchain.com"]
# What Studio's browser asks for before a JSON POST to a server on localhost.
STUDIO_PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type,x-api-key,x-auth-scheme,last-event-id",
    "access-control-request-private-network": "true",
}
EXPOSED = "x-pagination-total, x-pagination-next, content-location"
SMALL_LIMIT = 4096


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def studio_server(database_url: str) -> Iterator[LiveServer]:
    """``http.cors.allow_origins`` lists Studio's hosts; bodies limited to 4 KiB."""
    server = start_server(
        env={
            "DATABASE_URL": fresh_database(database_url),
            "STAFFGRAPH_MAX_BODY_BYTES": str(SMALL_LIMIT),
            # http.cors.allow_origins takes precedence over the environment.
            "CORS_ALLOW_ORIGINS": "https://ignored.example",
        },
        config=CORS_CONFIG,
    )
    try:
        yield server
    finally:
        server.stop()


def _item_body(namespace: str, size: int = 0) -> dict[str, object]:
    return {"namespace": [namespace], "key": "k", "value": {"pad": "x" * size}}


# --- CORS --------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", STUDIO_HOSTS)
async def test_default_preflight_allows_studio_and_private_network(
    http: httpx.AsyncClient, origin: str
) -> None:
    response = await http.options(
        "/assistants/search", headers={"origin": origin, **STUDIO_PREFLIGHT}
    )
    # The official server answers 400 here, which makes Chrome drop the request.
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-private-network"] == "true"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} <= methods
    assert (
        response.headers["access-control-allow-headers"]
        == (STUDIO_PREFLIGHT["access-control-request-headers"])
    )
    assert "access-control-allow-credentials" not in response.headers


async def test_default_simple_request_exposes_headers(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/store/namespaces", json={"limit": 1}, headers={"origin": "https://any.example"}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-expose-headers"] == EXPOSED


@pytest.mark.parametrize("origin", STUDIO_HOSTS)
async def test_configured_origins_allow_each_studio_host(
    studio_server: LiveServer, origin: str
) -> None:
    async with httpx.AsyncClient(base_url=studio_server.url) as client:
        preflight = await client.options(
            "/store/items/search", headers={"origin": origin, **STUDIO_PREFLIGHT}
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == origin
        assert preflight.headers["access-control-allow-private-network"] == "true"
        assert preflight.headers["access-control-allow-credentials"] == "true"

        simple = await client.post(
            "/store/items/search", json={"namespace_prefix": []}, headers={"origin": origin}
        )
        assert simple.status_code == 200
        assert simple.headers["access-control-allow-origin"] == origin
        assert simple.headers["access-control-expose-headers"] == EXPOSED
        assert "origin" in simple.headers["vary"].lower()


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://ignored.example", "http://smith.langchain.com"]
)
async def test_configured_origins_refuse_others(studio_server: LiveServer, origin: str) -> None:
    async with httpx.AsyncClient(base_url=studio_server.url) as client:
        preflight = await client.options(
            "/store/items/search", headers={"origin": origin, **STUDIO_PREFLIGHT}
        )
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        simple = await client.post(
            "/store/items/search", json={"namespace_prefix": []}, headers={"origin": origin}
        )
        assert simple.status_code == 200  # the browser, not the server, withholds the body
        assert "access-control-allow-origin" not in simple.headers


async def test_cors_allow_origins_from_environment(server_factory: object) -> None:
    server = server_factory(  # type: ignore[operator]
        env={"CORS_ALLOW_ORIGINS": "https://a.example, https://b.example"}
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        for origin in ("https://a.example", "https://b.example"):
            ok = await client.options(
                "/store/namespaces", headers={"origin": origin, **STUDIO_PREFLIGHT}
            )
            assert ok.status_code == 200
            assert ok.headers["access-control-allow-origin"] == origin
        refused = await client.options(
            "/store/namespaces", headers={"origin": STUDIO, **STUDIO_PREFLIGHT}
        )
        assert refused.status_code == 400


def test_cors_options_precedence() -> None:
    defaults = cors_options(None)
    assert defaults["allow_origins"] == ["*"]
    assert defaults["allow_credentials"] is False
    assert defaults["allow_private_network"] is True

    from_env = cors_options(None, env_origins=" https://a.example ,, https://b.example ")
    assert from_env["allow_origins"] == ["https://a.example", "https://b.example"]
    assert from_env["allow_credentials"] is True

    configured = cors_options(
        CorsConfig(allow_origins=[STUDIO], allow_methods=["GET"], max_age=5),
        env_origins="https://a.example",
    )
    assert configured["allow_origins"] == [STUDIO]
    assert configured["allow_methods"] == ["GET"]
    assert configured["allow_headers"] == ["*"]  # unset keys keep the Studio-friendly defaults
    assert configured["max_age"] == 5
    assert configured["expose_headers"] == EXPOSED.split(", ")

    regex_only = cors_options(CorsConfig(allow_origin_regex=r"https://.*\.example"))
    assert regex_only["allow_origin_regex"] == r"https://.*\.example"


# --- JSON bodies whatever the Content-Type -----------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "text/plain", None])
async def test_json_body_accepted_whatever_the_content_type(
    http: httpx.AsyncClient, content_type: str | None
) -> None:
    ns = f"t{uuid.uuid4().hex[:12]}"
    headers = {"content-type": content_type} if content_type else {}
    put = await http.put("/store/items", content=orjson.dumps(_item_body(ns)), headers=headers)
    assert put.status_code == 204, put.text

    search = await http.post(
        "/store/items/search",
        content=orjson.dumps({"namespace_prefix": [ns]}),
        headers=headers,
    )
    assert search.status_code == 200, search.text
    assert [i["key"] for i in search.json()["items"]] == ["k"]

    deleted = await http.request(
        "DELETE",
        "/store/items",
        content=orjson.dumps({"namespace": [ns], "key": "k"}),
        headers=headers,
    )
    assert deleted.status_code == 204
    gone = await http.get("/store/items", params={"namespace": ns, "key": "k"})
    assert gone.status_code == 200 and gone.json() is None


async def test_text_plain_body_that_is_not_json_is_422(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/store/namespaces", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422
    assert "JSON decode error" in response.json()["detail"]


# --- body size limit ---------------------------------------------------------------------


async def test_body_limit_boundary_and_413_json(studio_server: LiveServer) -> None:
    ns = f"t{uuid.uuid4().hex[:12]}"
    at_limit = orjson.dumps(_item_body(ns, 0))
    at_limit = orjson.dumps(_item_body(ns, SMALL_LIMIT - len(at_limit)))
    assert len(at_limit) == SMALL_LIMIT
    over = at_limit.replace(b'"x', b'"xx', 1)
    headers = {"content-type": "application/json", "origin": STUDIO}
    async with httpx.AsyncClient(base_url=studio_server.url) as client:
        refused = await client.put("/store/items", content=over, headers=headers)
        assert refused.status_code == 413
        assert refused.json() == {
            "detail": f"Request body is larger than {SMALL_LIMIT} bytes; "
            "send less or raise STAFFGRAPH_MAX_BODY_BYTES"
        }
        # CORS wraps the limit, so the browser can show Studio the reason.
        assert refused.headers["access-control-allow-origin"] == STUDIO
        missing = await client.get("/store/items", params={"namespace": ns, "key": "k"})
        assert missing.status_code == 200 and missing.json() is None

        accepted = await client.put("/store/items", content=at_limit, headers=headers)
        assert accepted.status_code == 204, accepted.text


async def test_oversize_chunked_body_is_413_json(studio_server: LiveServer) -> None:
    ns = f"t{uuid.uuid4().hex[:12]}"
    body = orjson.dumps(_item_body(ns, SMALL_LIMIT))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with httpx.AsyncClient(base_url=studio_server.url) as client:
        response = await client.put("/store/items", content=chunks())
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert response.status_code == 413
        assert "larger than 4096 bytes" in response.json()["detail"]
        missing = await client.get("/store/items", params={"namespace": ns, "key": "k"})
        assert missing.status_code == 200 and missing.json() is None


async def test_oversize_declared_length_is_refused_before_the_body_arrives(
    live_server: LiveServer,
) -> None:
    # Declare a gigabyte, send none of it: the answer must come without the server waiting.
    parts = urlsplit(live_server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            b"POST /store/items/search HTTP/1.1\r\n"
            + f"Host: {parts.netloc}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert b"content-type: application/json" in head.lower()
    finally:
        writer.close()
