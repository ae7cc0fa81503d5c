"""Executing runs: the queue's workers, the graph executor, and the event brokers."""

from typing import Annotated

from fastapi import Depends, Request

from server.runtime.broker import DONE_EVENT, Broker, InProcessBroker, StreamEvent
from server.runtime.outcome import decode_done, encode_done
from server.runtime.runtime import CreatedRun, RunError, Runtime, is_uuid

__all__ = [
    "DONE_EVENT",
    "Broker",
    "CreatedRun",
    "InProcessBroker",
    "RunError",
    "Runtime",
    "RuntimeDep",
    "StreamEvent",
    "decode_done",
    "encode_done",
    "get_runtime",
    "is_uuid",
]


async def get_runtime(request: Request) -> Runtime:
    """The :class:`Runtime` the lifespan started (FastAPI dependency).

    ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, a hop that
    would cost every request more than the lookup itself.
    """
    runtime: Runtime | None = request.app.state.ctx.runtime
    if runtime is None:
        raise RuntimeError("the app was started without a run runtime")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
