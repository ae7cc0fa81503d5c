"""Loading the graphs named in langgraph.json and attaching our persistence to them.

A graph entry points at a compiled graph, an uncompiled ``StateGraph``, or a factory that returns
either (see :mod:`server.graph_factory`: sync or async, a context manager or not, taking the
run's ``RunnableConfig`` and/or a ``ServerRuntime``). Compiled graphs from
user code carry no checkpointer; we attach ours per run with ``graph.copy(update=...)``, which is
cheap and leaves the loaded object untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

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
    if location.endswith(".py") or "/" in location or location.startswith("."):
        path = config.resolve(location)
        if not path.is_file():
            raise GraphLoadError(f"{what}: file {path} does not exist")
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


class GraphRegistry:
    """The graphs a server serves, keyed by graph id."""

    def __init__(self, graphs: dict[str, LoadedGraph]) -> None:
        self._graphs = graphs

    @classmethod
    def from_config(cls, config: LangGraphConfig) -> GraphRegistry:
        """Import every graph in ``config``.

        Raises:
            GraphLoadError: a graph cannot be imported or is neither a graph nor a callable.
        """
        config.apply_dependencies()
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
        return cls(graphs)

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._graphs

    def ids(self) -> list[str]:
        """Graph ids in config order."""
        return list(self._graphs)

    def get(self, graph_id: str) -> LoadedGraph:
        """The loaded graph for ``graph_id`` (``KeyError`` if unknown)."""
        return self._graphs[graph_id]
