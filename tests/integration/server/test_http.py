"""HTTP behaviour shared by every route: CORS for Studio, JSON bodies, the body size limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from server.config import CorsConfig
from server.origins import LOOPBACK_ORIGIN_REGEX, CorsRefused, allowed_origins, cors_options
from tests.support.server import REPO, LiveServer, fresh_database, start_server

CORS_CONFIG = REPO / "tests" / "support" / "langgraph_cors.json"
STUDIO = "https://smith.langchain.com"
STUDIO_ORIGINS = [STUDIO, "https://eu.smith.langchain.com"]
# tests/support/langgraph_cors.json
CONFIGURED_ORIGINS = [*STUDIO_ORIGINS, "https://dev.smith.langchain.com"]
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


# --- CORS and allowed origins ------------------------------------------------------------

LOOPBACK_ORIGINS = [
    "http://localhost:3000",
    "http://127.0.0.1:8123",
    "http://[::1]:5173",
    "http://localhost",
]
# Each is refused by the default configuration: not Studio's, not loopback, or a look-alike.
FOREIGN_ORIGINS = [
    "https://evil.example",
    "http://smith.langchain.com",  # Studio is https only
    "https://smith.langchain.com.evil.example",
    "https://evilsmith.langchain.com",
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example:8123",
    "http://localhost:3000/path",
    "null",  # sandboxed iframes, file:// pages
]


async def _thread_count(client: httpx.AsyncClient) -> int:
    response = await client.post("/threads/count", json={})
    assert response.status_code == 200
    return int(response.json())


@pytest.mark.parametrize("origin", [*STUDIO_ORIGINS, *LOOPBACK_ORIGINS])
async def test_default_preflight_allows_studio_and_loopback_with_private_network(
    http: httpx.AsyncClient, origin: str
) -> None:
    response = await http.options(
        "/assistants/search", headers={"origin": origin, **STUDIO_PREFLIGHT}
    )
    # The official server answers 400 here, which makes Chrome drop the request.
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-private-network"] == "true"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} <= methods
    assert (
        response.headers["access-control-allow-headers"]
        == (STUDIO_PREFLIGHT["access-control-request-headers"])
    )
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("origin", [STUDIO, "http://localhost:3000"])
async def test_default_simple_request_from_an_allowed_origin(
    http: httpx.AsyncClient, origin: str
) -> None:
    response = await http.post(
        "/store/namespaces",
        content=b'{"limit": 1}',
        headers={"origin": origin, "content-type": "text/plain"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-expose-headers"] == EXPOSED


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
async def test_default_refuses_other_origins_whatever_the_request(
    http: httpx.AsyncClient, origin: str
) -> None:
    before = await _thread_count(http)
    # A web page's "simple" request: no preflight, text/plain body read as JSON.
    simple = await http.post(
        "/threads", content=b"{}", headers={"origin": origin, "content-type": "text/plain"}
    )
    assert simple.status_code == 403, simple.text
    assert simple.json()["detail"].startswith(f"Origin {origin} is not allowed")
    assert "access-control-allow-origin" not in simple.headers
    assert await _thread_count(http) == before
    for method, path in (("GET", "/info"), ("PUT", "/store/items"), ("DELETE", "/threads/x")):
        refused = await http.request(method, path, headers={"origin": origin})
        assert refused.status_code == 403, (method, path)
    preflight = await http.options("/threads", headers={"origin": origin, **STUDIO_PREFLIGHT})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-private-network" not in preflight.headers


async def test_requests_without_origin_are_not_affected(http: httpx.AsyncClient) -> None:
    before = await _thread_count(http)
    made = await http.post("/threads", content=b"{}", headers={"content-type": "text/plain"})
    assert made.status_code == 200
    assert await _thread_count(http) == before + 1


@pytest.mark.parametrize("origin", CONFIGURED_ORIGINS)
async def test_configured_origins_allow_each_listed_host(
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
    "origin",
    [
        "https://evil.example",
        "https://ignored.example",  # CORS_ALLOW_ORIGINS: http.cors wins
        "http://smith.langchain.com",
        "http://localhost:3000",  # configured origins replace the defaults
    ],
)
async def test_configured_origins_refuse_others(studio_server: LiveServer, origin: str) -> None:
    async with httpx.AsyncClient(base_url=studio_server.url) as client:
        preflight = await client.options(
            "/store/items/search", headers={"origin": origin, **STUDIO_PREFLIGHT}
        )
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-private-network" not in preflight.headers
        simple = await client.post(
            "/store/items/search", json={"namespace_prefix": []}, headers={"origin": origin}
        )
        assert simple.status_code == 403
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
        assert refused.status_code == 403


def test_wildcard_origin_with_credentials_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(
        orjson.dumps(
            {
                "dependencies": [str(REPO)],
                "graphs": {"simple": str(REPO / "tests" / "support" / "graphs.py") + ":simple"},
                "http": {"cors": {"allow_origins": ["*"], "allow_credentials": True}},
            }
        ).decode()
    )
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "STAFFGRAPH_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert 'CORS allows every origin ("*") with allow_credentials true' in lines[0]
    assert not (tmp_path / "home" / "pgdata").exists()  # refused before anything started


def test_allowed_origins_precedence_and_defaults() -> None:
    defaults = allowed_origins(None)
    assert defaults.origins == ("https://smith.langchain.com", "https://eu.smith.langchain.com")
    options = cors_options(None, defaults)
    assert options["allow_credentials"] is False
    assert options["allow_private_network"] is True
    assert options["allow_origin_regex"] == LOOPBACK_ORIGIN_REGEX

    from_env = allowed_origins(None, env_origins=" https://a.example ,, https://b.example ")
    assert from_env.origins == ("https://a.example", "https://b.example")
    assert from_env.regex is None
    assert cors_options(None, from_env)["allow_credentials"] is True

    cors = CorsConfig(allow_origins=[STUDIO], allow_methods=["GET"], max_age=5)
    configured = cors_options(cors, allowed_origins(cors, env_origins="https://a.example"))
    assert configured["allow_origins"] == [STUDIO]
    assert configured["allow_origin_regex"] is None
    assert configured["allow_methods"] == ["GET"]
    assert configured["allow_headers"] == ["*"]  # unset keys keep the Studio-friendly defaults
    assert configured["max_age"] == 5
    assert configured["expose_headers"] == EXPOSED.split(", ")

    regex = CorsConfig(allow_origin_regex=r"https://.*\.example")
    regex_only = allowed_origins(regex)
    assert regex_only.origins == () and regex_only.regex == r"https://.*\.example"

    anyone = CorsConfig(allow_origins=["*"])
    assert cors_options(anyone, allowed_origins(anyone))["allow_credentials"] is False
    for bad_env, bad in (
        (None, CorsConfig(allow_origins=["*"], allow_credentials=True)),
        ("*", CorsConfig(allow_credentials=True)),
    ):
        with pytest.raises(CorsRefused, match="allow_credentials"):
            cors_options(bad, allowed_origins(bad, env_origins=bad_env))


def _scope(host: str, scheme: str = "http") -> dict[str, object]:
    return {"type": "http", "scheme": scheme, "headers": [(b"host", host.encode())]}


def test_same_origin_pages_only_with_authentication() -> None:
    # A page served by the server itself under its public name: allowed when requests are
    # authenticated; without auth a DNS-rebound page would pass the same test, so it is not.
    scope = _scope("agents.example.com:8123")
    authed = allowed_origins(None, auth_enabled=True)
    assert authed.allows("http://agents.example.com:8123", scope)
    assert not authed.allows("https://agents.example.com:8123", scope)  # another scheme
    assert not authed.allows("http://other.example.com:8123", scope)
    assert not allowed_origins(None).allows("http://agents.example.com:8123", scope)
    wildcard = allowed_origins(CorsConfig(allow_origins=["*"]))
    assert wildcard.any and wildcard.allows("https://anything.example", scope)


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


@asynccontextmanager
async def _raw_exchange(
    url: str, request: bytes, headers: bytes, body: bytes = b""
) -> AsyncIterator[tuple[bytes, asyncio.StreamReader]]:
    """Send ``request`` (``METHOD /path``) over a connection of its own, exactly as written
    (``headers`` CRLF-separated, then ``body``), and give the status line and the reader."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            request
            + b" HTTP/1.1\r\n"
            + f"Host: {parts.netloc}\r\n".encode()
            + headers
            + b"\r\n\r\n"
            + body
        )
        await writer.drain()
        yield await asyncio.wait_for(reader.readline(), timeout=10), reader
    finally:
        writer.close()


async def test_a_small_length_beside_chunked_encoding_does_not_let_a_large_body_in(
    studio_server: LiveServer,
) -> None:
    # The request gate passes a body with a declared length on uncounted, because the HTTP
    # server reads no more than that length. A request that also says its body comes in chunks
    # would break that: the server must refuse it (uvicorn answers 400) rather than hand the
    # app the chunks under a length it never checks.
    ns = f"t{uuid.uuid4().hex[:12]}"
    body = orjson.dumps(_item_body(ns, SMALL_LIMIT))
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
        for i in range(0, len(body), 1000)
    )
    headers = b"Content-Type: application/json\r\nContent-Length: 10\r\nTransfer-Encoding: chunked"
    async with _raw_exchange(
        studio_server.url, b"PUT /store/items", headers, chunked + b"0\r\n\r\n"
    ) as (status_line, _):
        assert status_line.split()[1] in (b"400", b"413"), status_line
    async with httpx.AsyncClient(base_url=studio_server.url) as client:
        missing = await client.get("/store/items", params={"namespace": ns, "key": "k"})
    assert missing.status_code == 200 and missing.json() is None


async def test_oversize_declared_length_is_refused_before_the_body_arrives(
    live_server: LiveServer,
) -> None:
    # Declare a gigabyte, send none of it: the answer must come without the server waiting.
    headers = b"Content-Type: application/json\r\nContent-Length: 1000000000"
    async with _raw_exchange(live_server.url, b"POST /store/items/search", headers) as (
        status_line,
        reader,
    ):
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert b"content-type: application/json" in head.lower()
