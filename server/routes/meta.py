"""Liveness and server information."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from fastapi import APIRouter

from server.deps import Ctx

__all__ = ["router"]

router = APIRouter(tags=["System"])


@router.get("/ok")
async def ok() -> dict[str, bool]:
    """Liveness: the process is up and serving."""
    return {"ok": True}


@router.get("/info")
async def info(ctx: Ctx) -> dict[str, Any]:
    """Versions, feature flags, graphs, and the model, embeddings, database and broker in use."""
    return {
        "version": version("staffgraph"),
        "langgraph_py_version": version("langgraph"),
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
