"""FastAPI dependency aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.context import AppContext

__all__ = ["Ctx", "get_context"]


def get_context(request: Request) -> AppContext:
    """The :class:`AppContext` the lifespan stored on the app."""
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_context)]
