"""Start-up steps shared by ``staffgraph serve`` and the test server: database and embeddings."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from langchain_core.embeddings import Embeddings
from langgraph.store.base import IndexConfig, TTLConfig

from nodes.embeddings import (
    LocalEmbeddings,
    describe_embeddings,
    embedding_dims,
    get_embeddings,
)
from server.config import LangGraphConfig
from server.database import resolve_database
from server.graphs import GraphLoadError, import_object
from server.heap import settle_heap
from state.settings import Settings

__all__ = [
    "DEFAULT_SWEEP_MINUTES",
    "StartupError",
    "resolve_database",
    "resolve_store_index",
    "embeddings_readiness",
    "finish_embeddings_load",
    "resolve_store_ttl",
    "start_embeddings_load",
]

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """Start-up cannot continue; ``str(exc)`` is the one line to show the operator."""


def _load_function(config: LangGraphConfig, spec: str) -> Callable[..., Any]:
    try:
        fn = import_object(config, spec, what="store.index.embed")
    except GraphLoadError as exc:
        raise StartupError(str(exc)) from None
    if not callable(fn):
        raise StartupError(f"store.index.embed: {spec} is not a function")
    return fn


def resolve_store_index(
    settings: Settings, config: LangGraphConfig
) -> tuple[IndexConfig, Embeddings | None, dict[str, Any]]:
    """The store's vector index: from ``store.index`` in langgraph.json, else from settings.

    Returns:
        The index config for ``AsyncPostgresStore``, the LangChain embeddings in it (``None``
        for a plain embed function), and a description for ``/info``.
    """
    index_cfg = config.store.index if config.store else None
    try:
        if index_cfg is not None:
            embed: Embeddings | Callable[..., Any]
            if index_cfg.embed.endswith(".py") or ".py:" in index_cfg.embed:
                embed = _load_function(config, index_cfg.embed)
                described: dict[str, Any] = {
                    "provider": "custom",
                    "model": index_cfg.embed,
                    "dims": index_cfg.dims,
                    "offline": None,
                }
            else:
                embed = get_embeddings(
                    index_cfg.embed, settings=settings.embeddings, model_settings=settings.model
                )
                described = describe_embeddings(embed) | {"dims": index_cfg.dims}
            index: IndexConfig = {"dims": index_cfg.dims, "embed": embed}
            if index_cfg.fields is not None:
                index["fields"] = index_cfg.fields
            langchain_embed = embed if isinstance(embed, Embeddings) else None
            return index, langchain_embed, described | {"source": "langgraph.json"}
        embeddings = get_embeddings(settings=settings.embeddings, model_settings=settings.model)
        dims = embedding_dims(embeddings)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return (
        {"dims": dims, "embed": embeddings, "fields": ["$"]},
        embeddings,
        describe_embeddings(embeddings) | {"source": "settings"},
    )


DEFAULT_SWEEP_MINUTES = 1


def start_embeddings_load(embeddings: Embeddings | None) -> asyncio.Task[None] | None:
    """Start loading a local embedding model in a worker thread; return at once.

    Importing torch and sentence-transformers takes seconds, so the server answers ``/ok``
    first and loads the model meanwhile: ``/ready`` says ``loading`` until it is in memory,
    and memory operations that embed wait for it instead of failing. Only local models are
    warmed: a provider call at start-up would cost money and fail when the provider is
    briefly down.

    Returns:
        The loading task (await it with :func:`finish_embeddings_load`), or ``None`` when
        there is nothing to load.
    """
    if not isinstance(embeddings, LocalEmbeddings):
        return None
    return asyncio.create_task(_load_embeddings(embeddings), name="staffgraph-embeddings-load")


async def _load_embeddings(embeddings: LocalEmbeddings) -> None:
    started = time.perf_counter()
    try:
        await asyncio.to_thread(embeddings.load)
    except Exception:
        # Not fatal: /ready reports `failed` and every embedding call tries the load again,
        # failing with this same error until the installation is fixed.
        log.exception("loading the local embedding model failed")
        return
    settle_heap()  # the model's objects live as long as the process, as start-up's do
    log.info("embedding model loaded in %.1f s", time.perf_counter() - started)


async def finish_embeddings_load(task: asyncio.Task[None]) -> None:
    """Wait for a load started by :func:`start_embeddings_load` (at shutdown).

    A thread cannot be interrupted, so a shutdown during the load waits for it to end.
    """
    await task


def embeddings_readiness(embeddings: Embeddings | None) -> dict[str, Any] | None:
    """The ``embeddings`` check of ``/ready``: ``None`` when there is no local model to load.

    Returns:
        ``{"ok": True}`` once the model is loaded, else ``{"ok": False, "error": "loading"}``
        (or ``"failed"`` when the last attempt to load it raised).
    """
    if not isinstance(embeddings, LocalEmbeddings):
        return None
    status = embeddings.status
    if status == "ready":
        return {"ok": True}
    return {"ok": False, "error": "failed" if status == "failed" else "loading"}


def resolve_store_ttl(config: LangGraphConfig) -> TTLConfig | None:
    """The store's TTL policy from ``store.ttl`` in langgraph.json, for ``open_persistence``.

    ``default_ttl`` and ``sweep_interval_minutes`` are passed on only when the file sets them,
    so LangGraph's own defaults apply otherwise (no default expiry; a sweep every 5 minutes).

    Returns:
        The TTL config. Without ``store.ttl`` items expire only when a write gives a TTL, and
        a sweeper removes them every :data:`DEFAULT_SWEEP_MINUTES` minutes.
    """
    ttl_cfg = config.store.ttl if config.store else None
    if ttl_cfg is None:
        # Items written with a ttl (memories, Store API puts) must still disappear: keep a
        # sweeper running even when the file sets no policy.
        return {"refresh_on_read": True, "sweep_interval_minutes": DEFAULT_SWEEP_MINUTES}
    ttl: TTLConfig = {"refresh_on_read": ttl_cfg.refresh_on_read}
    if ttl_cfg.default_ttl is not None:
        ttl["default_ttl"] = ttl_cfg.default_ttl
    if ttl_cfg.sweep_interval_minutes is not None:
        ttl["sweep_interval_minutes"] = ttl_cfg.sweep_interval_minutes
    return ttl
