"""The memory store: writes, recall and deletes of episodic, semantic and procedural memories."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal, cast

from langgraph.store.base import PutOp, SearchItem, SearchOp

from state.memory.deletes import audited_pool, delete_item_audited, delete_prefix_audited
from state.memory.procedures import _Procedures
from state.memory.records import (
    Episode,
    FactWrite,
    Memory,
    Provenance,
    _fact_key,
    _revised,
    _to_memory,
)
from state.memory.scope import (
    _MAX_SCAN,
    DEFAULT_RECALL_K,
    MAX_ACTIONS,
    MAX_K,
    MAX_SCORES,
    MAX_TEXT,
    MEMORY_ROOT,
    MemoryInputError,
    MemoryKind,
    MemoryNotFound,
    MemoryScope,
    MemoryScopeError,
    _check_id,
    _clean_text,
    _clip,
    owner_label,
)


class MemoryStore(_Procedures):
    """Episodic, semantic and procedural memory on any LangGraph ``BaseStore``.

    Build one per store (cheap; holds no connections of its own) and pass a
    :class:`MemoryScope` to every call. Nodes and tools build it from ``runtime.store``.
    """

    async def write_episode(
        self,
        scope: MemoryScope,
        episode: Episode,
        *,
        provenance: Provenance,
        key: str | None = None,
        area: str | None = None,
        ttl: float | None = None,
    ) -> Memory:
        """Store what happened in one run.

        Args:
            scope: The acting role and user.
            episode: The run's task, actions, outcome and scores.
            provenance: Who and which run.
            key: Item key; defaults to ``run-<run_id>`` (one episode per run and role, so a
                retried node overwrites instead of duplicating), else a time-based key.
            area: The role (default) or one of its domains.
            ttl: Minutes to live; default from ``default_ttl`` or the store.

        Returns:
            The stored memory.

        Raises:
            MemoryInputError: Empty or oversized text, a score outside [0, 1], too many scores.
            MemoryScopeError: No user in the scope, or ``area`` outside it.
        """
        task = _clean_text(episode.task, what="episode task", limit=20_000)
        outcome = _clean_text(episode.outcome, what="episode outcome", limit=20_000)
        if len(episode.scores) > MAX_SCORES:
            raise MemoryInputError(f"an episode holds at most {MAX_SCORES} scores")
        scores: dict[str, float] = {}
        for name, score in episode.scores.items():
            if not isinstance(score, int | float) or not 0.0 <= float(score) <= 1.0:
                raise MemoryInputError(f"score {name!r} must be in [0, 1], got {score!r}")
            scores[_clip(str(name), 64)] = round(float(score), 4)
        namespace = scope.namespace(MemoryKind.EPISODIC, area=area)
        if key is None:
            key = (
                f"run-{provenance.run_id}"
                if provenance.run_id
                else f"ep-{self._clock().strftime('%Y%m%dT%H%M%S%f')}"
            )
        _check_id(key, what="episode key")
        value: dict[str, Any] = {
            "kind": MemoryKind.EPISODIC.value,
            "text": replace(episode, task=task, outcome=outcome, scores=scores).text(),
            "task": _clip(task, MAX_TEXT),
            "actions": [_clip(a, 200) for a in episode.actions[:MAX_ACTIONS]],
            "outcome": _clip(outcome, MAX_TEXT),
            "succeeded": episode.succeeded,
            "scores": scores,
            "active": True,
            "provenance": provenance.to_json(),
        }
        await self._put(namespace, key, value, ttl=self._ttl_for(MemoryKind.EPISODIC, ttl))
        return await self._stored(namespace, key)

    async def write_fact(
        self,
        scope: MemoryScope,
        text: str,
        *,
        provenance: Provenance,
        owner: Literal["user", "org"] = "user",
        area: str | None = None,
        ttl: float | None = None,
    ) -> FactWrite:
        """Store a fact, updating the most similar existing fact instead of duplicating it.

        The namespace's facts are searched with the store's vector index; when the best match
        scores at least :attr:`similarity_threshold`, that item is rewritten with the new
        wording (the old wording and its provenance go to ``previous``, newest first, at most
        five). Without a vector index only identical wording is merged.

        Args:
            scope: The acting role and user.
            text: The fact, one or two sentences (at most 2000 characters).
            provenance: Who and which run.
            owner: The user's memory (default) or the organisation's.
            area: The role (default) or one of its domains.
            ttl: Minutes to live; default from ``default_ttl`` or the store.

        Returns:
            The :class:`FactWrite`.

        Raises:
            MemoryInputError: Empty or oversized text.
            MemoryScopeError: The scope lacks the owner, or ``area`` is outside it.
        """
        fact = _clean_text(text, what="fact")
        namespace = scope.namespace(MemoryKind.SEMANTIC, owner=owner, area=area)
        key = _fact_key(fact)
        match = await self._get(namespace, key)
        similarity: float | None = 1.0 if match is not None else None
        if match is None:
            hits = await self.store.asearch(
                namespace,
                query=fact,
                filter={"kind": MemoryKind.SEMANTIC.value},
                limit=3,
                refresh_ttl=False,
            )
            for hit in hits:
                candidate = self._live(_to_memory(hit))
                if (
                    candidate is not None
                    and tuple(hit.namespace) == namespace
                    and hit.score is not None
                    and hit.score >= self.similarity_threshold
                ):
                    match, key, similarity = candidate, hit.key, float(hit.score)
                    break
        record = provenance.to_json()
        ttl_minutes = self._ttl_for(MemoryKind.SEMANTIC, ttl)
        if match is None:
            value: dict[str, Any] = {
                "kind": MemoryKind.SEMANTIC.value,
                "text": fact,
                "revision": 1,
                "previous": [],
                "first_recorded": record,
                "active": True,
                "provenance": record,
            }
            await self._put(namespace, key, value, ttl=ttl_minutes)
            return FactWrite(memory=await self._stored(namespace, key), action="created")
        action: Literal["updated", "unchanged"]
        if match.value.get("text") == fact:
            action = "unchanged"
            value = {**match.value, "provenance": record}
        else:
            action = "updated"
            value = _revised(match.value, fact, record)
        value.setdefault("first_recorded", match.value.get("provenance"))
        await self._put(namespace, key, value, ttl=ttl_minutes)
        return FactWrite(
            memory=await self._stored(namespace, key), action=action, similarity=similarity
        )

    async def update(
        self,
        scope: MemoryScope,
        ref: str,
        text: str,
        *,
        provenance: Provenance,
        ttl: float | None = None,
    ) -> Memory:
        """Rewrite the text of an episodic or semantic memory, keeping its history.

        Procedural memories change only through :meth:`propose_procedure` and approval.

        Args:
            scope: The acting role and user.
            ref: The memory's reference (:attr:`Memory.ref`).
            text: The new text.
            provenance: Who changes it.
            ttl: Minutes to live from now; default from ``default_ttl`` or the store.

        Returns:
            The updated memory.

        Raises:
            MemoryNotFound: No such memory in the scope.
            MemoryInputError: A procedural reference, or bad text.
            MemoryScopeError: The reference is outside the scope.
        """
        new_text = _clean_text(text, what="memory text")
        namespace, key = scope.resolve(ref)
        if namespace[3] == MemoryKind.PROCEDURAL.value:
            raise MemoryInputError(
                "procedural memories change through propose_procedure and an approval, not update"
            )
        current = await self._get(namespace, key)
        if current is None:
            raise MemoryNotFound(f"no memory {ref!r} for this user and role")
        value = _revised(current.value, new_text, provenance.to_json())
        await self._put(namespace, key, value, ttl=self._ttl_for(current.kind, ttl))
        return await self._stored(namespace, key)

    # ------------------------------------------------------------------ reads

    async def get(self, scope: MemoryScope, ref: str) -> Memory | None:
        """Read one memory by reference, or ``None`` when absent or expired.

        Raises:
            MemoryInputError: ``ref`` is malformed.
            MemoryScopeError: ``ref`` is outside the scope.
        """
        namespace, key = scope.resolve(ref)
        return await self._get(namespace, key)

    async def recall(
        self,
        scope: MemoryScope,
        query: str,
        *,
        k: int = DEFAULT_RECALL_K,
        kinds: Iterable[MemoryKind | str] | None = None,
        min_score: float | None = None,
    ) -> list[Memory]:
        """The ``k`` memories most similar to ``query`` that this scope may read.

        Searches only the scope's namespaces (its user's and organisation's, in the role's
        own area and its domains' areas), skips pending/rejected/superseded instructions and
        expired items, and orders by similarity.

        Args:
            scope: The acting role and user.
            query: What the memories should be relevant to (clipped to 2000 characters).
            k: Most memories returned, 1 to 50.
            kinds: Only these kinds (default all).
            min_score: Drop memories less similar than this.

        Returns:
            Memories, most similar first, each with its ``score``.

        Raises:
            MemoryInputError: ``k`` out of range.
        """
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise MemoryInputError(f"k must be between 1 and {MAX_K}, got {k!r}")
        query = _clip(query or "", MAX_TEXT)
        wanted = [MemoryKind(kind) for kind in (kinds if kinds is not None else MemoryKind)]
        namespaces = scope.readable_namespaces(wanted)
        if not namespaces or not wanted:
            return []
        # One search per namespace, batched in one round trip; fetch a little more than k so
        # that expired-but-unswept items do not leave the answer short.
        ops = [
            SearchOp(
                namespace,
                filter={"active": True},
                limit=k + 5,
                query=query or None,
                refresh_ttl=False,
            )
            for namespace in namespaces
        ]
        results = cast(list[list[SearchItem]], await self.store.abatch(ops))
        found: list[Memory] = []
        for op, items in zip(ops, results, strict=True):
            for item in items:
                # An exact prefix match only: never trust a deeper namespace under ours.
                if tuple(item.namespace) != op.namespace_prefix:
                    continue
                memory = self._live(_to_memory(item))
                if memory is None:
                    continue
                if min_score is not None and (memory.score is None or memory.score < min_score):
                    continue
                found.append(memory)

        def rank(memory: Memory) -> tuple[float, float]:
            stamp = memory.updated_at.timestamp() if memory.updated_at else 0.0
            return (memory.score if memory.score is not None else -1.0, stamp)

        found.sort(key=rank, reverse=True)
        return found[:k]

    # ------------------------------------------------------------------ deletes

    async def forget(self, scope: MemoryScope, ref: str) -> bool:
        """Delete one memory of the scope's user.

        Organisation memories are not forgotten this way (they belong to everyone); change
        them through governance.

        Args:
            scope: The acting role and user.
            ref: The memory's :attr:`Memory.ref` (``user/...``).

        Returns:
            Whether a memory was deleted.

        Raises:
            MemoryInputError: ``ref`` is malformed.
            MemoryScopeError: ``ref`` names the organisation or an area outside the scope.
        """
        namespace, key = scope.resolve(ref)
        if not namespace[1].startswith("user:"):
            raise MemoryScopeError(
                "organisation memories cannot be forgotten by an agent; "
                "ask the people lead to change them through governance"
            )
        pool = audited_pool(self.store)
        if pool is not None:
            return await delete_item_audited(
                pool,
                namespace,
                key,
                actor=scope.user_id,
                details={"by": "forget tool", "role": scope.role},
            )
        existing = await self.store.aget(namespace, key, refresh_ttl=False)
        if existing is None:
            return False
        await self.store.adelete(namespace, key)
        return True

    async def delete_user(self, user_id: str, *, actor: str | None = None) -> int:
        """Delete every memory of one user, in every area and kind.

        On Postgres the deletion is one transaction with its ``memory.deleted`` audit entry
        (resource ``user_memories``, the user id).

        Args:
            user_id: The user.
            actor: Who asked (the audit entry's actor; ``None``: staffgraph itself).

        Returns:
            How many items were deleted.

        Raises:
            MemoryInputError: ``user_id`` is empty or too long.
        """
        prefix = (MEMORY_ROOT, owner_label("user", user_id))
        pool = audited_pool(self.store)
        if pool is not None:
            return await delete_prefix_audited(
                pool, prefix, actor=actor, resource_type="user_memories", resource_id=user_id
            )
        deleted = 0
        while True:
            # Deleting what one page returned and asking again (offset 0) visits every item
            # even while new ones are added; the loop ends when a page comes back empty.
            items = await self.store.asearch(prefix, limit=_MAX_SCAN, refresh_ttl=False)
            if not items:
                return deleted
            await self.store.abatch(
                [PutOp(tuple(item.namespace), item.key, None) for item in items]
            )
            deleted += len(items)
