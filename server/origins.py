"""Which web origins may call the server: CORS options and the guard that refuses the rest.

CORS alone does not protect a server: a browser still *sends* a "simple" cross-origin request
(a ``POST`` with ``Content-Type: text/plain``, which this server reads as JSON, as the
LangGraph Server does for Studio) and only withholds the answer from the page. So a request
that carries an ``Origin`` the server does not allow is refused here with 403 before any route
runs, whatever its method or content type; a preflight from such an origin gets the same 403
(and no Private Network Access grant). Requests without ``Origin`` (SDKs, curl, servers) are
not affected.

Allowed by default: LangGraph Studio's origins (:data:`STUDIO_ORIGINS`) and loopback origins
(``http://localhost:*``, ``http://127.0.0.1:*``, ``http://[::1]:*``). Anything else only by
configuration: ``http.cors.allow_origins`` / ``allow_origin_regex`` in langgraph.json (which
then replace the defaults), else ``CORS_ALLOW_ORIGINS``. With authentication on, a page served
by this server itself (``Origin`` equal to the request's own scheme and ``Host``) is allowed
too; without it, a DNS-rebound page could pass that test, so it is not.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from server.config import CorsConfig, LangGraphConfig
from state.settings import Settings

__all__ = [
    "DEFAULT_EXPOSE_HEADERS",
    "LOOPBACK_ORIGIN_REGEX",
    "STUDIO_ORIGINS",
    "AllowedOrigins",
    "CorsRefused",
    "OriginGuardMiddleware",
    "allowed_origins",
    "check_cors",
    "cors_options",
]

STUDIO_ORIGINS = ("https://smith.langchain.com", "https://eu.smith.langchain.com")
"""Where hosted LangGraph Studio runs (the US and EU LangSmith regions)."""
LOOPBACK_ORIGIN_REGEX = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?"
"""Pages served from this machine: any port of localhost, 127.0.0.1 or [::1]."""
DEFAULT_EXPOSE_HEADERS = ("x-pagination-total", "x-pagination-next", "content-location")

_MAX_SHOWN = 200  # characters of a refused Origin echoed in the 403


class CorsRefused(ValueError):
    """A CORS configuration the server will not start with; the message is one line."""


class AllowedOrigins:
    """The origins a browser may call the server from."""

    def __init__(
        self,
        *,
        origins: tuple[str, ...],
        regex: str | None,
        same_origin: bool,
        configured: bool = True,
    ) -> None:
        """Args:
        origins: exact origins (``"*"``: every origin).
        regex: a pattern an origin may match in full instead.
        same_origin: also allow a page whose origin is the request's own scheme and ``Host``.
        configured: False for the built-in defaults (Studio and loopback).
        """
        self.origins = origins
        self.regex = regex
        self.same_origin = same_origin
        self.configured = configured
        self._exact = frozenset(origins)
        self._pattern = re.compile(regex) if regex else None

    @property
    def any(self) -> bool:
        """Whether every origin is allowed (``"*"`` configured)."""
        return "*" in self._exact

    def allows(self, origin: str, scope: Scope) -> bool:
        """Whether a request from ``origin`` (the header's value) may proceed."""
        if self.any or origin in self._exact:
            return True
        if self._pattern is not None and self._pattern.fullmatch(origin):
            return True
        return self.same_origin and origin == _own_origin(scope)


def _own_origin(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"host":
            return f"{scope.get('scheme', 'http')}://{value.decode('latin-1').lower()}"
    return None


def allowed_origins(
    cors: CorsConfig | None, *, env_origins: str | None = None, auth_enabled: bool = False
) -> AllowedOrigins:
    """The allowed origins: ``http.cors`` if it names any, else ``CORS_ALLOW_ORIGINS``, else
    Studio's and loopback origins.

    Args:
        cors: ``http.cors`` from langgraph.json, if any.
        env_origins: the value of ``CORS_ALLOW_ORIGINS``, if set.
        auth_enabled: whether requests are authenticated (enables the same-origin rule).
    """
    if cors is not None and (cors.allow_origins is not None or cors.allow_origin_regex):
        origins = tuple(cors.allow_origins or ())
        regex = cors.allow_origin_regex
    elif env_origins and env_origins.strip():
        origins = tuple(o.strip() for o in env_origins.split(",") if o.strip())
        regex = None
    else:
        return AllowedOrigins(
            origins=STUDIO_ORIGINS,
            regex=LOOPBACK_ORIGIN_REGEX,
            same_origin=auth_enabled,
            configured=False,
        )
    return AllowedOrigins(origins=origins, regex=regex, same_origin=auth_enabled)


def cors_options(cors: CorsConfig | None, allowed: AllowedOrigins) -> dict[str, Any]:
    """Keyword arguments for Starlette's ``CORSMiddleware``.

    Every method and header (Studio sends ``x-api-key``, ``x-auth-scheme``,
    ``last-event-id``), the pagination and ``Content-Location`` headers exposed, credentials
    only for listed origins; ``http.cors`` overrides each option it sets. Private Network
    Access preflights are answered for allowed origins (the guard refuses the others first),
    so hosted Studio can reach a server on localhost.

    Raises:
        CorsRefused: every origin (``"*"``) with ``allow_credentials: true``: any web page
            could then make credentialed requests.
    """
    c = cors or CorsConfig()
    if allowed.any and c.allow_credentials:
        raise CorsRefused(
            'refusing to start: CORS allows every origin ("*") with allow_credentials true, '
            "so any web page could call this server with the visitor's credentials; list the "
            "origins in http.cors.allow_origins (or CORS_ALLOW_ORIGINS) instead"
        )

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return {
        "allow_origins": list(allowed.origins),
        "allow_origin_regex": allowed.regex,
        "allow_methods": list(pick(c.allow_methods, ["*"])),
        "allow_headers": list(pick(c.allow_headers, ["*"])),
        # Browsers refuse credentials with a wildcard origin, so only configured origins get
        # them (Studio sends its key as a header, no cookies).
        "allow_credentials": pick(c.allow_credentials, allowed.configured and not allowed.any),
        "expose_headers": list(pick(c.expose_headers, DEFAULT_EXPOSE_HEADERS)),
        "max_age": pick(c.max_age, 600),
        "allow_private_network": True,
    }


def check_cors(settings: Settings, config: LangGraphConfig) -> None:
    """Refuse, before anything starts, a CORS configuration :func:`cors_options` refuses.

    Raises:
        CorsRefused: with the one line to print.
    """
    cors = config.http.cors if config.http is not None else None
    cors_options(cors, allowed_origins(cors, env_origins=settings.server.cors_allow_origins))


class OriginGuardMiddleware:
    """Answer 403 to any HTTP request whose ``Origin`` header is not an allowed origin."""

    def __init__(self, app: ASGIApp, *, allowed: AllowedOrigins) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allowed.any:
            origin = _header(scope, b"origin")
            if origin is not None and not self.allowed.allows(origin, scope):
                await _refuse(send, origin)
                return
        await self.app(scope, receive, send)


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


async def _refuse(send: Send, origin: str) -> None:
    shown = origin if len(origin) <= _MAX_SHOWN else origin[:_MAX_SHOWN] + "..."
    body = orjson.dumps(
        {
            "detail": f"Origin {shown} is not allowed to call this server; add it to "
            "http.cors.allow_origins in langgraph.json or to CORS_ALLOW_ORIGINS"
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"vary", b"Origin"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
