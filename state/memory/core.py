"""The store wrapper's settings and the helpers its operations share (TTLs, expiry, put/get)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from langgraph.store.base import BaseStore

from state.memory.records import Memory, _to_memory
from state.memory.scope import (
    _INDEX_FIELDS,
    DEFAULT_MERGE_THRESHOLD,
    MemoryInputError,
    MemoryKind,
    MemoryNotFound,
    _iso,
    _now,
)


class _StoreCore:
    """The store, its settings and the read/write helpers every memory operation shares."""

    def __init__(
        self,
        store: BaseStore,
        *,
        similarity_threshold: float = DEFAULT_MERGE_THRESHOLD,
        default_ttl: Mapping[MemoryKind | str, float] | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        """Wrap ``store``.

        Args:
            store: The LangGraph store (``runtime.store`` in a node).
            similarity_threshold: Cosine similarity at or above which a new fact updates the
                most similar existing fact instead of being added; default
                :data:`DEFAULT_MERGE_THRESHOLD`. Lower it for coarser merging.
            default_ttl: Minutes to live per kind when a write gives none, e.g.
                ``{"episodic": 60 * 24 * 90}``. Unlisted kinds use the store's own
                ``default_ttl`` (none unless configured).
            clock: Current UTC time; tests pass a fixed clock.

        Raises:
            MemoryInputError: The threshold is outside (0, 1] or a TTL is not positive.
        """
        if not 0.0 < similarity_threshold <= 1.0:
            raise MemoryInputError(
                f"similarity_threshold must be in (0, 1], got {similarity_threshold}"
            )
        ttls: dict[MemoryKind, float] = {}
        for kind, minutes in (default_ttl or {}).items():
            ttls[MemoryKind(kind)] = self._check_ttl(minutes)
        self.store = store
        self.similarity_threshold = similarity_threshold
        self.default_ttl = ttls
        self._clock = clock

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_ttl(minutes: float | None) -> float:
        if minutes is None or not isinstance(minutes, int | float) or not minutes > 0:
            raise MemoryInputError(f"ttl must be a positive number of minutes, got {minutes!r}")
        if minutes > 60 * 24 * 365 * 100:
            raise MemoryInputError("ttl is over 100 years; leave it out for no expiry")
        return float(minutes)

    def _ttl_for(self, kind: MemoryKind, ttl: float | None) -> float | None:
        if ttl is not None:
            return self._check_ttl(ttl)
        if kind in self.default_ttl:
            return self.default_ttl[kind]
        store_default = (getattr(self.store, "ttl_config", None) or {}).get("default_ttl")
        return float(store_default) if isinstance(store_default, int | float) else None

    def _live(self, memory: Memory | None) -> Memory | None:
        if memory is None:
            return None
        if memory.expires_at is not None and memory.expires_at <= self._clock():
            return None
        return memory

    async def _put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        *,
        ttl: float | None,
    ) -> None:
        now = self._clock()
        value["expires_at"] = _iso(now + timedelta(minutes=ttl)) if ttl is not None else None
        if self.store.supports_ttl:
            await self.store.aput(namespace, key, value, index=_INDEX_FIELDS, ttl=ttl)
        else:
            # Stores without TTL keep the item; expires_at above still hides it from reads.
            await self.store.aput(namespace, key, value, index=_INDEX_FIELDS)

    async def _get(self, namespace: tuple[str, ...], key: str) -> Memory | None:
        item = await self.store.aget(namespace, key, refresh_ttl=False)
        return self._live(_to_memory(item)) if item is not None else None

    async def _stored(self, namespace: tuple[str, ...], key: str) -> Memory:
        memory = await self._get(namespace, key)
        if memory is None:  # pragma: no cover - read right after our own write
            raise MemoryNotFound(f"memory {key!r} vanished right after it was written")
        return memory
