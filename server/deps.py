"""FastAPI dependency aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.context import AppContext

__all__ = ["Ctx", "get_context"]


async def get_context(request: Request) -> AppContext:
    """The :class:`AppContext` the lifespan stored on the app.

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a hop
    that costs a request more than this lookup.
    """
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_context)]
