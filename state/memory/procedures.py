"""Procedural memory: versioned instructions for a role, pending until governance approves them."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.store.base import PutOp

from state.memory.core import _StoreCore
from state.memory.records import Memory, Provenance, _to_memory
from state.memory.scope import (
    _INDEX_FIELDS,
    _MAX_SCAN,
    _RULE_RE,
    MAX_TEXT,
    MemoryInputError,
    MemoryKind,
    MemoryNotFound,
    MemoryScope,
    ProcedureStatus,
    _check_id,
    _clean_text,
    _clip,
    _iso,
)


class _Procedures(_StoreCore):
    """Procedural memory operations of :class:`~state.memory.MemoryStore`."""

    async def _versions(self, namespace: tuple[str, ...], rule: str) -> list[Memory]:
        items = await self.store.asearch(
            namespace, filter={"rule": rule}, limit=_MAX_SCAN, refresh_ttl=False
        )
        found = [m for m in (_to_memory(i) for i in items) if m is not None]
        return sorted(found, key=lambda m: int(m.value.get("version", 0)))

    async def propose_procedure(
        self,
        scope: MemoryScope,
        rule: str,
        instructions: str,
        *,
        provenance: Provenance,
        reason: str = "",
        owner: Literal["user", "org"] | None = None,
        area: str | None = None,
        change_id: str | None = None,
    ) -> Memory:
        """Store a new version of a role's instruction as ``pending``.

        Pending versions are never recalled. The governance graph shows the proposal to a
        human and then calls :meth:`approve_procedure` or :meth:`reject_procedure` with its
        :attr:`Memory.ref`.

        Args:
            scope: The role the instruction is for (and the user, for user-level rules).
            rule: Stable lower_snake_case name of the instruction, e.g. ``cite_sources``;
                versions are numbered per rule.
            instructions: The instruction text.
            provenance: Who proposes it (``critic``, ``human:<id>``) and from which run.
            reason: Why, e.g. the critic's critique (at most 2000 characters).
            owner: Organisation-wide (default when the scope has an organisation) or the
                user's own.
            area: The role (default) or one of its domains.
            change_id: Id of the proposal (e.g. a governance run's change). A second call
                with the same id returns the version the first one stored instead of adding
                another, so a node that runs again after a crash or a resume is harmless.

        Returns:
            The pending version (or, for a repeated ``change_id``, the version stored then).

        Raises:
            MemoryInputError: Bad rule name, text or change id.
            MemoryScopeError: The scope lacks the owner, or ``area`` is outside it.
        """
        if not isinstance(rule, str) or not _RULE_RE.fullmatch(rule):
            raise MemoryInputError(f"rule {rule!r} must be lower_snake_case (a-z, 0-9, _)")
        text = _clean_text(instructions, what="instructions")
        _check_id(change_id, what="change_id")
        why = _clip(reason, MAX_TEXT) if reason else ""
        chosen: Literal["user", "org"] = owner or ("org" if scope.org_id is not None else "user")
        namespace = scope.namespace(MemoryKind.PROCEDURAL, owner=chosen, area=area)
        versions = await self._versions(namespace, rule)
        if change_id is not None:
            for earlier in versions:
                if earlier.value.get("change_id") == change_id:
                    return earlier
        version = (int(versions[-1].value.get("version", 0)) + 1) if versions else 1
        key = f"{rule}-v{version}"
        value: dict[str, Any] = {
            "kind": MemoryKind.PROCEDURAL.value,
            "text": text,
            "rule": rule,
            "version": version,
            "status": ProcedureStatus.PENDING.value,
            "reason": why,
            "decision": None,
            "active": False,
            "change_id": change_id,
            "provenance": provenance.to_json(),
        }
        await self._put(namespace, key, value, ttl=None)
        return await self._stored(namespace, key)

    async def _decide(
        self,
        scope: MemoryScope,
        ref: str,
        status: ProcedureStatus,
        *,
        decided_by: str,
        reason: str,
    ) -> Memory:
        namespace, key = scope.resolve(ref)
        if namespace[3] != MemoryKind.PROCEDURAL.value:
            raise MemoryInputError(f"{ref!r} is not a procedural memory")
        _check_id(decided_by, what="decided_by")
        current = await self._get(namespace, key)
        if current is None:
            raise MemoryNotFound(f"no procedural memory {ref!r}")
        if current.status != ProcedureStatus.PENDING.value:
            raise MemoryInputError(
                f"{ref} is {current.status}; only pending versions can be approved or rejected"
            )
        decision = {
            "status": status.value,
            "decided_by": decided_by,
            "decided_at": _iso(self._clock()),
            "reason": _clip(reason, MAX_TEXT) if reason else "",
        }
        if status is ProcedureStatus.APPROVED:
            # Exactly one approved version per rule is recalled: the newest decision wins.
            ops = []
            for other in await self._versions(namespace, str(current.value.get("rule"))):
                if other.key != key and other.status == ProcedureStatus.APPROVED.value:
                    superseded = dict(other.value)
                    superseded["status"] = ProcedureStatus.SUPERSEDED.value
                    superseded["active"] = False
                    superseded["superseded_by"] = key
                    ops.append(PutOp(namespace, other.key, superseded, index=_INDEX_FIELDS))
            if ops:
                await self.store.abatch(ops)
        value = dict(current.value)
        value.update(status=status.value, decision=decision)
        value["active"] = status is ProcedureStatus.APPROVED
        await self._put(namespace, key, value, ttl=None)
        return await self._stored(namespace, key)

    async def approve_procedure(
        self, scope: MemoryScope, ref: str, *, decided_by: str, reason: str = ""
    ) -> Memory:
        """Approve a pending instruction: from now on recall returns it.

        The previously approved version of the same rule becomes ``superseded``.

        Args:
            scope: The role's scope (the same owner and area the proposal used).
            ref: The pending version's :attr:`Memory.ref`.
            decided_by: Who approved, e.g. ``human:<id>``.
            reason: The reviewer's note.

        Returns:
            The approved version.

        Raises:
            MemoryNotFound: No such version.
            MemoryInputError: It is not pending, or not procedural.
            MemoryScopeError: ``ref`` is outside the scope.
        """
        return await self._decide(
            scope, ref, ProcedureStatus.APPROVED, decided_by=decided_by, reason=reason
        )

    async def reject_procedure(
        self, scope: MemoryScope, ref: str, *, decided_by: str, reason: str = ""
    ) -> Memory:
        """Reject a pending instruction; it is kept for the record and never recalled.

        Args:
            scope: The role's scope.
            ref: The pending version's :attr:`Memory.ref`.
            decided_by: Who rejected.
            reason: Why.

        Returns:
            The rejected version.

        Raises:
            MemoryNotFound: No such version.
            MemoryInputError: It is not pending, or not procedural.
            MemoryScopeError: ``ref`` is outside the scope.
        """
        return await self._decide(
            scope, ref, ProcedureStatus.REJECTED, decided_by=decided_by, reason=reason
        )

    async def procedures(
        self,
        scope: MemoryScope,
        *,
        status: ProcedureStatus | str | None = None,
    ) -> list[Memory]:
        """List the instruction versions the scope can see, e.g. the pending ones to review.

        Args:
            scope: The role's scope.
            status: Only versions in this state.

        Returns:
            Versions, user's before the organisation's, by area, rule and version.
        """
        wanted = ProcedureStatus(status).value if status is not None else None
        found: list[Memory] = []
        for namespace in scope.readable_namespaces([MemoryKind.PROCEDURAL]):
            query_filter = {"status": wanted} if wanted else None
            items = await self.store.asearch(
                namespace, filter=query_filter, limit=_MAX_SCAN, refresh_ttl=False
            )
            memories = [m for m in (_to_memory(i) for i in items) if m is not None]
            found.extend(
                sorted(
                    memories,
                    key=lambda m: (str(m.value.get("rule")), int(m.value.get("version", 0))),
                )
            )
        return found
