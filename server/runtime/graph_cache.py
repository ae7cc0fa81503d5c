"""Graphs with our checkpointer and store attached, built once per graph and reused.

Compiled graphs from langgraph.json carry no persistence. ``graph.copy(update=...)`` attaches
ours; the copy is cached per graph id because graph objects are immutable once compiled.
Factory graphs are built per use (their output may depend on the run's config and context), then
copied; a context-manager factory stays entered for the whole run it was built for.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

from server.graph_factory import AccessContext
from server.graphs import GraphRegistry
from state.db import Persistence

__all__ = ["GraphCache", "UnknownGraph"]


class UnknownGraph(LookupError):
    """The graph id is not served by this server's langgraph.json."""


class GraphCache:
    """Hands out graphs wired to Postgres (or to a scratch in-memory saver)."""

    def __init__(self, graphs: GraphRegistry, persistence: Persistence) -> None:
        """Wrap ``graphs`` with ``persistence``."""
        self._graphs = graphs
        self._persistence = persistence
        self.scratch = InMemorySaver()
        """Checkpointer of throw-away (stateless, deleted-on-completion) runs."""
        self._cache: dict[tuple[str, bool], Pregel] = {}

    @property
    def checkpointer(self) -> BaseCheckpointSaver[Any]:
        """The Postgres checkpointer every stored thread's checkpoints are in."""
        return self._persistence.checkpointer

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._graphs

    async def get(
        self,
        graph_id: str,
        config: RunnableConfig | None = None,
        *,
        scratch: bool = False,
        access: AccessContext = "threads.read",
        context: Any = None,
        exits: AsyncExitStack | None = None,
    ) -> Pregel:
        """The graph with a checkpointer and the store attached.

        Args:
            graph_id: id from langgraph.json.
            config: the run's config (factories receive it).
            scratch: use the in-memory checkpointer instead of Postgres.
            access: why the graph is needed (factories receive it in their runtime).
            context: the run's context (factories executing a run receive it).
            exits: keeps a context-manager factory's context open until this stack closes
                (a run's whole execution); without it the context closes before this returns.

        Raises:
            UnknownGraph: no such graph here.
            GraphLoadError: importing the graphs failed (the server is shutting down).
        """
        if graph_id not in self._graphs:
            raise UnknownGraph(graph_id)
        key = (graph_id, scratch)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        loaded = await self._graphs.loaded(graph_id)
        opened = loaded.open(config, store=self._persistence.store, access=access, context=context)
        if exits is not None:
            graph = await exits.enter_async_context(opened)
        else:
            async with opened as graph:
                pass
        checkpointer: BaseCheckpointSaver[Any] = (
            self.scratch if scratch else self._persistence.checkpointer
        )
        wired = graph.copy(update={"checkpointer": checkpointer, "store": self._persistence.store})
        if not loaded.is_factory:
            self._cache[key] = wired
        return wired

    async def plain(self, graph_id: str) -> Pregel:
        """The graph as loaded (no persistence): for drawing and schemas.

        Raises:
            UnknownGraph: no such graph here.
        """
        if graph_id not in self._graphs:
            raise UnknownGraph(graph_id)
        loaded = await self._graphs.loaded(graph_id)
        opened = loaded.open({}, store=self._persistence.store, access="assistants.read")
        async with opened as graph:
            return graph
