"""Calling graph factories the way the reference server does.

A factory named in langgraph.json may take nothing, the run's ``RunnableConfig``, a
``ServerRuntime`` (``langgraph_sdk.runtime``), or both in either order; it may be sync or async,
and it may be an async (or sync) context manager, entered for as long as the graph is in use.
Which parameter gets the runtime is decided by its annotation, as in the reference; with two
parameters exactly one must be annotated ``ServerRuntime``.

The runtime is the SDK's own type, so user code that narrows it (``runtime.execution_runtime``)
or checks ``access_context`` behaves as it does under ``langgraph dev``: executing a run passes
the execution variant with the run's ``context`` (the stored dict, as the reference passes it);
drawing, schemas, state reads and state updates pass the read variant.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from langchain_core.runnables import RunnableConfig
from langgraph.store.base import BaseStore

# The SDK's concrete runtime classes are private, but they are what ``ServerRuntime``
# (a type alias of their union) stands for: user factories annotate with it and narrow on it.
from langgraph_sdk.runtime import ServerRuntime, _ExecutionRuntime, _ReadRuntime

__all__ = ["AccessContext", "FactoryCall", "FactoryError", "classify", "open_factory"]

AccessContext = Literal["threads.create_run", "threads.update", "threads.read", "assistants.read"]

_RUNTIME_CLASSES = (_ExecutionRuntime, _ReadRuntime)
_NAMES = {"ServerRuntime": ServerRuntime, "RunnableConfig": RunnableConfig}


class FactoryError(TypeError):
    """A factory's signature is not one the server knows how to call."""


@dataclass(frozen=True)
class FactoryCall:
    """Which keyword each argument of a factory goes to (``None``: not taken)."""

    config: str | None
    runtime: str | None


def _is_runtime(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    if annotation is ServerRuntime:
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, _RUNTIME_CLASSES)
    origin = get_origin(annotation)
    if origin is None:
        return False
    if origin is ServerRuntime:
        return True
    args = get_args(annotation)  # Annotated[ServerRuntime, ...] and the like
    return bool(args) and _is_runtime(args[0])


def classify(factory: Callable[..., Any]) -> FactoryCall:
    """How to call ``factory``: by the number of its parameters and their annotations.

    Raises:
        FactoryError: more than two parameters, or two of which not exactly one is a runtime.
    """
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return FactoryCall(config=None, runtime=None)
    try:
        hints = typing.get_type_hints(factory, localns=_NAMES)
    except Exception:  # unresolvable annotations: fall back to the raw ones
        hints = {}

    def runtime_param(param: inspect.Parameter) -> bool:
        return _is_runtime(hints.get(param.name, param.annotation))

    if not params:
        return FactoryCall(config=None, runtime=None)
    if len(params) == 1:
        if runtime_param(params[0]):
            return FactoryCall(config=None, runtime=params[0].name)
        return FactoryCall(config=params[0].name, runtime=None)
    if len(params) == 2:
        runtimes = [p for p in params if runtime_param(p)]
        if len(runtimes) != 1:
            raise FactoryError(
                f"graph factory {getattr(factory, '__name__', factory)!r} takes two arguments; "
                "annotate exactly one of them as ServerRuntime (from langgraph_sdk.runtime) "
                "and the other is given the RunnableConfig"
            )
        other = params[1] if runtimes[0] is params[0] else params[0]
        return FactoryCall(config=other.name, runtime=runtimes[0].name)
    raise FactoryError(
        f"graph factory {getattr(factory, '__name__', factory)!r} takes {len(params)} arguments; "
        "it may take none, a RunnableConfig, a ServerRuntime, or both"
    )


def server_runtime(
    access: AccessContext, *, store: BaseStore, context: Any = None, user: Any = None
) -> Any:
    """The ``ServerRuntime`` a factory is given for ``access``."""
    if access == "threads.create_run":
        return _ExecutionRuntime(access_context=access, user=user, store=store, context=context)
    return _ReadRuntime(access_context=access, user=user, store=store)


@contextlib.asynccontextmanager
async def open_factory(
    factory: Callable[..., Any],
    call: FactoryCall,
    *,
    config: RunnableConfig,
    access: AccessContext,
    store: BaseStore,
    context: Any = None,
) -> AsyncIterator[Any]:
    """Call ``factory`` and yield what it built, inside its context when it is a manager.

    Args:
        factory: the function from langgraph.json.
        call: how it takes its arguments (:func:`classify`).
        config: the config it is given (the run's, or a bare one outside runs).
        access: why the graph is needed.
        store: the server's store (``runtime.store``).
        context: the run's context (execution only).
    """
    kwargs: dict[str, Any] = {}
    if call.config is not None:
        kwargs[call.config] = config
    if call.runtime is not None:
        kwargs[call.runtime] = server_runtime(access, store=store, context=context)
    result = factory(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, contextlib.AbstractAsyncContextManager):
        async with result as graph:
            yield graph
    elif isinstance(result, contextlib.AbstractContextManager):
        with result as graph:
            yield graph
    else:
        yield result
