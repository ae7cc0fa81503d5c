"""HTTP middleware: allowed origins and CORS, then the request's checks (body size, NUL
characters in parameters) and JSON request bodies.

All of them are plain ASGI callables (no ``BaseHTTPMiddleware``): they touch only the scope and
the receive/send channels, so they add no task or copy per request and never buffer a body.

Order, outermost first: the origin guard (a request from an origin that is not allowed is
refused before anything else runs; see :mod:`server.origins`), CORS (so that every other
answer, 413 and 422 included, carries the CORS headers a browser needs to read it), then the
request's checks and content-type fix-up (:class:`RequestGate`).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import LangGraphConfig
from server.origins import OriginGuardMiddleware, allowed_origins, cors_options
from state.settings import Settings

__all__ = ["RequestBodyTooLarge", "RequestGate", "install_middleware"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON = b"application/json"
# Bodies with these media types mean something other than JSON; everything else is read as
# JSON, as the LangGraph Server does (Studio posts JSON as text/plain to avoid a preflight).
_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class RequestBodyTooLarge(HTTPException):
    """The request body is over the limit (raised from ``receive`` while the body is read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large_detail(limit))


def _too_large_detail(limit: int) -> str:
    return (
        f"Request body is larger than {limit} bytes; send less or raise STAFFGRAPH_MAX_BODY_BYTES"
    )


class RequestGate:
    """Checks each HTTP request's parameters and body size, and marks its body as JSON.

    In this order:

    * a ``Content-Length`` over ``max_bytes`` is answered 413 before the app runs;
    * a path or query parameter holding a NUL character (``%00``) is answered 422, naming the
      parameter: Postgres text cannot hold NUL, so such a value would fail deep in a query;
    * the body of a POST/PUT/PATCH/DELETE is marked as JSON whatever ``Content-Type`` says
      (form uploads keep theirs; the body is not read here, so a body that is not JSON still
      gets FastAPI's 422 "JSON decode error"), as the LangGraph Server reads it;
    * a body sent without a length (chunked) is counted as it arrives, and reading it stops
      with :class:`RequestBodyTooLarge` at the first chunk past the limit; FastAPI turns that
      into the same JSON 413. A body with a length is at most that long (the HTTP server reads
      no more, and refuses a request that declares chunks beside a length), so its channels
      are passed on untouched.

    One middleware rather than one per check: each layer of pure ASGI middleware costs every
    request a call and, where it watches the response, a wrapped ``send``.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_too_large(send, self.max_bytes)
            return
        where = _nul_parameter(scope)
        if where is not None:
            await _send_json(send, 422, _nul_body(where))
            return
        if scope["method"] in _BODY_METHODS:
            _mark_json(scope)
        if declared is not None:
            await self.app(scope, receive, send)
        else:
            await self._counting(scope, receive, send)

    async def _counting(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, its body counted against the limit as it is read."""
        limit = self.max_bytes
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestBodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestBodyTooLarge:
            # Reached here only when the body was read outside FastAPI's parsing (which
            # answers the error itself); once a response has begun it cannot be replaced.
            if started:
                raise
            await _send_too_large(send, limit)


def _mark_json(scope: Scope) -> None:
    """Set the request's ``Content-Type`` to JSON unless it is JSON or a form already.

    The scope is changed in place, not copied: the router records the matched route in the
    scope it is given, and the middlewares outside this one (metrics, the access log) read it
    from theirs once the response starts. A copy would leave them without a route.
    """
    headers: list[tuple[bytes, bytes]] = list(scope["headers"])
    for i, (name, value) in enumerate(headers):
        if name != b"content-type":
            continue
        media = value.split(b";", 1)[0].strip().lower()
        if media == _JSON or media.endswith(b"+json") or media in _FORM_TYPES:
            return
        headers[i] = (b"content-type", _JSON)
        break
    else:
        headers.append((b"content-type", _JSON))
    scope["headers"] = headers


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server rejects a malformed length itself
    return None


async def _send_too_large(send: Send, limit: int) -> None:
    body = orjson.dumps({"detail": _too_large_detail(limit)})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", _JSON),
                (b"content-length", str(len(body)).encode()),
                # The unread rest of the body is still on the wire: do not reuse the connection.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _nul_body(where: str) -> bytes:
    return orjson.dumps(
        {
            "detail": f"{where}: must not contain NUL characters (%00)",
            "errors": [
                {
                    "loc": where.split(".", 1),
                    "msg": "must not contain NUL characters (%00)",
                    "type": "string_nul",
                }
            ],
        }
    )


def _nul_parameter(scope: Scope) -> str | None:
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for pair in query.split(b"&"):
            if b"%00" in pair or b"\x00" in pair:
                name = unquote_to_bytes(pair.partition(b"=")[0]).decode("utf-8", "replace")
                return f"query.{name.replace(chr(0), '%00')}"
    if "\x00" in scope.get("path", ""):
        return "path"
    return None


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install_middleware(
    app: FastAPI, settings: Settings, config: LangGraphConfig, *, auth_enabled: bool
) -> None:
    """Install the origin guard, CORS, the request body limit and JSON body handling on ``app``.

    Args:
        app: the application.
        settings: validated settings (``server.max_body_bytes``, ``CORS_ALLOW_ORIGINS``).
        config: langgraph.json (``http.cors``).
        auth_enabled: whether requests are authenticated (see :mod:`server.origins`).

    Raises:
        CorsRefused: the CORS configuration allows every origin with credentials.
    """
    cors = config.http.cors if config.http is not None else None
    allowed = allowed_origins(
        cors, env_origins=settings.server.cors_allow_origins, auth_enabled=auth_enabled
    )
    options = cors_options(cors, allowed)
    # Starlette runs the last added middleware outermost.
    app.add_middleware(RequestGate, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(CORSMiddleware, **options)
    app.add_middleware(OriginGuardMiddleware, allowed=allowed)
