"""Loading the graphs named in langgraph.json and attaching our persistence to them.

A graph entry points at a compiled graph, an uncompiled ``StateGraph``, or a factory that returns
either (see :mod:`server.graph_factory`: sync or async, a context manager or not, taking the
run's ``RunnableConfig`` and/or a ``ServerRuntime``). Compiled graphs from
user code carry no checkpointer; we attach ours per run with ``graph.copy(update=...)``, which is
cheap and leaves the loaded object untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore

from server.config import LangGraphConfig
from server.graph_factory import AccessContext, FactoryCall, FactoryError, classify, open_factory

__all__ = [
    "GraphLoadError",
    "GraphRegistry",
    "LoadedGraph",
    "assistant_id_for",
    "import_object",
]

log = logging.getLogger(__name__)

# uuid5 namespace for default assistants: the same graph id gives the same assistant id on every
# server and restart (clients store these ids).
_ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


@functools.lru_cache(maxsize=1024)
def assistant_id_for(graph_id: str) -> str:
    """Deterministic id of a graph's default assistant."""
    return str(uuid.uuid5(_ASSISTANT_NAMESPACE, graph_id))


class GraphLoadError(RuntimeError):
    """A graph named in langgraph.json could not be imported or is not a graph."""


@dataclass
class LoadedGraph:
    """One graph from the config: the object found and how to get a runnable from it."""

    graph_id: str
    source: str
    description: str | None
    target: Any
    call: FactoryCall | None = None
    """How to call the target when it is a factory (see :func:`server.graph_factory.classify`)."""

    @property
    def is_factory(self) -> bool:
        """Whether the graph is built per use by a factory function."""
        return not isinstance(self.target, Pregel | StateGraph)

    @contextlib.asynccontextmanager
    async def open(
        self,
        config: RunnableConfig | None = None,
        *,
        store: BaseStore,
        access: AccessContext = "threads.read",
        context: Any = None,
    ) -> AsyncIterator[Pregel]:
        """Yield a compiled graph, calling the factory (and staying in its context) if needed.

        Args:
            config: the run's config (factories receive it).
            store: the server's store (a factory's ``runtime.store``).
            access: why the graph is needed (a factory's ``runtime.access_context``).
            context: the run's context (a factory's ``runtime.execution_runtime.context``).

        Raises:
            GraphLoadError: the factory produced something that is not a graph.
        """
        if not self.is_factory:
            yield self._compiled(self.target)
            return
        async with open_factory(
            self.target,
            self.call or classify(self.target),
            config=config or {},
            access=access,
            store=store,
            context=context,
        ) as built:
            yield self._compiled(built)

    def _compiled(self, target: Any) -> Pregel:
        if isinstance(target, StateGraph):
            target = target.compile()
        if not isinstance(target, Pregel):
            raise GraphLoadError(
                f"graph {self.graph_id!r} ({self.source}) produced {type(target).__name__}, "
                "expected a compiled graph or a StateGraph"
            )
        return target


def import_object(config: LangGraphConfig, spec: str, *, what: str) -> Any:
    """Import ``path/to/file.py:attr`` (resolved against the config) or ``package.module:attr``.

    A file is imported once per process under a name derived from its path.

    Args:
        config: the langgraph.json the spec comes from.
        spec: where the object lives.
        what: how error messages name the entry, e.g. ``graph 'chat'``.

    Raises:
        GraphLoadError: the file or module is missing, fails to import, or lacks ``attr``.
    """
    location, _, attr = spec.rpartition(":")
    path = _source_file(config, spec, what=what)
    if path is not None:
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        module_name = f"_staffgraph_user_{path.stem}_{digest}"
        module = sys.modules.get(module_name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            if module_spec is None or module_spec.loader is None:
                raise GraphLoadError(f"{what}: cannot import {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            try:
                module_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise GraphLoadError(
                    f"{what}: importing {path} failed: {type(exc).__name__}: {exc}"
                ) from exc
    else:
        try:
            module = importlib.import_module(location)
        except Exception as exc:
            raise GraphLoadError(
                f"{what}: importing module {location!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise GraphLoadError(f"{what}: {location} has no attribute {attr!r}") from None


def _source_file(config: LangGraphConfig, spec: str, *, what: str) -> Path | None:
    """The file ``spec`` names (``None`` for a module path).

    Raises:
        GraphLoadError: the file does not exist.
    """
    location = spec.rpartition(":")[0]
    if not (location.endswith(".py") or "/" in location or location.startswith(".")):
        return None
    path = config.resolve(location)
    if not path.is_file():
        raise GraphLoadError(f"{what}: file {path} does not exist")
    return path


class GraphRegistry:
    """The graphs a server serves, keyed by graph id.

    The ids come from langgraph.json and are known at once; the graphs themselves may still be
    importing (:meth:`deferred` + :meth:`load_in_background`), because importing a graph pulls
    in langchain, langgraph and the user's code: seconds of CPU that ``/ok`` need not wait for.
    Whatever needs a graph awaits :meth:`loaded`; ``/ready`` reports :attr:`status`.
    """

    def __init__(self, graphs: dict[str, LoadedGraph]) -> None:
        """A registry of graphs already imported."""
        self._ids = list(graphs)
        self._graphs = graphs
        self._config: LangGraphConfig | None = None
        self._done: Future[None] = Future()
        self._done.set_result(None)

    @classmethod
    def from_config(cls, config: LangGraphConfig) -> GraphRegistry:
        """Import every graph in ``config`` now.

        Raises:
            GraphLoadError: a graph cannot be imported or is neither a graph nor a callable.
        """
        config.apply_dependencies()
        return cls(_import_graphs(config))

    @classmethod
    def deferred(cls, config: LangGraphConfig) -> GraphRegistry:
        """A registry of ``config``'s graph ids whose graphs are imported later.

        Call :meth:`load_in_background` to start importing them.

        Raises:
            GraphLoadError: a graph's file does not exist (checked now: it costs nothing).
        """
        for graph_id, spec in config.graphs.items():
            _source_file(config, spec.path, what=f"graph {graph_id!r}")
        registry = cls({})
        registry._ids = list(config.graphs)
        registry._config = config
        registry._done = Future()
        return registry

    def load_in_background(self) -> None:
        """Start importing the graphs in a daemon thread; return at once (no-op if loaded)."""
        config = self._config
        if config is None or not self._done.set_running_or_notify_cancel():
            return
        config.apply_dependencies()
        threading.Thread(
            target=self._load, args=(config,), name="staffgraph-graph-import", daemon=True
        ).start()

    def _load(self, config: LangGraphConfig) -> None:
        started = time.perf_counter()
        try:
            graphs = _import_graphs(config)
        except BaseException as exc:
            self._done.set_exception(exc)
            return
        self._graphs = graphs
        self._done.set_result(None)
        log.info("imported %d graphs in %.2f s", len(graphs), time.perf_counter() - started)

    def add_done_callback(self, callback: Callable[[GraphLoadError | None], None]) -> None:
        """Call ``callback`` (in the loading thread) with the load's error, or ``None``."""

        def relay(done: Future[None]) -> None:
            exc = done.exception()
            callback(exc if isinstance(exc, GraphLoadError) or exc is None else _wrap(exc))

        self._done.add_done_callback(relay)

    @property
    def status(self) -> Literal["loading", "ready", "failed"]:
        """``ready`` once every graph is imported; ``failed`` when an import raised."""
        if not self._done.done():
            return "loading"
        return "failed" if self._done.exception() is not None else "ready"

    async def loaded(self, graph_id: str) -> LoadedGraph:
        """The loaded graph for ``graph_id``, waiting for the imports if still under way.

        Raises:
            KeyError: no such graph id.
            GraphLoadError: importing the graphs failed.
        """
        if graph_id not in self._ids:
            raise KeyError(graph_id)
        if not self._done.done():
            await asyncio.wrap_future(self._done)
        exc = self._done.exception()
        if exc is not None:
            raise exc if isinstance(exc, GraphLoadError) else _wrap(exc)
        return self._graphs[graph_id]

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._ids

    def ids(self) -> list[str]:
        """Graph ids in config order."""
        return list(self._ids)


def _wrap(exc: BaseException) -> GraphLoadError:
    return GraphLoadError(f"importing the graphs failed: {type(exc).__name__}: {exc}")


def _import_graphs(config: LangGraphConfig) -> dict[str, LoadedGraph]:
    graphs: dict[str, LoadedGraph] = {}
    for graph_id, spec in config.graphs.items():
        target = import_object(config, spec.path, what=f"graph {graph_id!r}")
        if not isinstance(target, Pregel | StateGraph) and not callable(target):
            raise GraphLoadError(
                f"graph {graph_id!r} ({spec.path}) is a {type(target).__name__}; expected a "
                "compiled graph, a StateGraph or a factory function"
            )
        call = None
        if not isinstance(target, Pregel | StateGraph):
            try:
                call = classify(target)
            except FactoryError as exc:
                raise GraphLoadError(f"graph {graph_id!r} ({spec.path}): {exc}") from None
        graphs[graph_id] = LoadedGraph(graph_id, spec.path, spec.description, target, call)
        log.info("loaded graph %s from %s", graph_id, spec.path)
    return graphs
