"""Liveness, server information, and the API's own documentation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse

from server.auth import KeyPolicy, public
from server.auth.guard import open_if, policy_of
from server.deps import Ctx
from server.json_body import JsonRoute
from server.openapi_errors import document_errors
from server.versions import LANGGRAPH_VERSION, STAFFGRAPH_VERSION

__all__ = ["router"]

router = APIRouter(tags=["System"], route_class=JsonRoute)


@router.get("/ok", dependencies=[public(limited=False)])
async def ok() -> dict[str, bool]:
    """Liveness: the process is up and serving."""
    return {"ok": True}


@router.get("/info", dependencies=[public()])
async def info(ctx: Ctx) -> dict[str, Any]:
    """Versions, feature flags, graphs, and the model, embeddings, database and broker in use."""
    return {
        "version": STAFFGRAPH_VERSION,
        "langgraph_py_version": LANGGRAPH_VERSION,
        "flags": {
            "assistants": True,
            "crons": True,
            "langsmith": ctx.settings.tracing.tracing,
        },
        "host": {"kind": "self-hosted", "project_id": None, "revision_id": None},
        "metadata": {},
        "graphs": ctx.graphs.ids(),
        **ctx.info,
    }


def _with_security(spec: dict[str, Any], request: Request, ctx: Ctx) -> dict[str, Any]:
    """Patch the security of the OpenAPI document as the LangGraph Server does.

    Built-in keys declare the ``x-api-key`` header; custom auth uses ``auth.openapi`` from
    langgraph.json (``securitySchemes``/``security_schemes``, ``security``, per-path overrides).
    """
    spec = dict(spec)
    components = dict(spec.get("components") or {})
    if isinstance(policy_of(request), KeyPolicy):
        components["securitySchemes"] = {
            "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"}
        }
        spec["security"] = [{"x-api-key": []}]
    custom = ctx.config.auth.openapi if ctx.config.auth is not None else None
    if custom:
        schemes = custom.get("securitySchemes", custom.get("security_schemes"))
        if schemes is not None:
            components["securitySchemes"] = schemes
        if "security" in custom:
            spec["security"] = custom["security"]
        paths = {path: dict(item) for path, item in (spec.get("paths") or {}).items()}
        for path, methods in (custom.get("paths") or {}).items():
            for method, security in (methods or {}).items():
                operation = paths.get(path, {}).get(method.lower())
                if isinstance(operation, dict):
                    paths[path][method.lower()] = {**operation, "security": security}
        spec["paths"] = paths
    spec["components"] = components
    return spec


@router.get("/openapi.json", include_in_schema=False, dependencies=[open_if("docs_public")])
async def openapi(request: Request, ctx: Ctx) -> JSONResponse:
    """The OpenAPI document, with the security schemes in use."""
    return JSONResponse(_with_security(document_errors(request.app.openapi()), request, ctx))


@router.get("/docs", include_in_schema=False, dependencies=[open_if("docs_public")])
async def docs() -> HTMLResponse:
    """Swagger UI over ``/openapi.json``."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="staffgraph API")
