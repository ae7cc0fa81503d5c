"""Role and instruction versions for the console's governance page.

Role versions come with their diff and rollback (below); instruction versions are the
organisation's procedural memory (:mod:`state.memory`), each rule's versions with their status
(pending, approved, rejected, superseded), who decided, and the text before and after.

Role versions are the governance graph's records (:class:`state.role_store.RoleStore`);
version 0 is the organisation's YAML (``roles/``). Each version comes with what changed from
the one before (field by field, list items added and removed) and the changes that would undo
it, which the page puts through the governance graph (``change`` input) so a rollback is
approved like any other change.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from langgraph.store.base import BaseStore

from nodes.governance import changes_between
from state.memory import DEFAULT_ORG, MemoryScope, MemoryStore
from state.role_store import NAMESPACE, RoleStore
from state.roles import Organization, default_roles_dir, load_organization
from tools.registry import default_registry

__all__ = ["diff_roles", "instruction_history", "role_history"]

_MAX_ROLES = 200


@lru_cache(maxsize=1)
def _yaml_organization() -> Organization:
    return load_organization(default_roles_dir(), registry=default_registry())


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def diff_roles(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What changed between two dumped role definitions, one entry per field.

    Lists give ``added`` and ``removed`` items; other fields ``before`` and ``after``.
    """
    old, new = _flatten(before), _flatten(after)
    out: list[dict[str, Any]] = []
    for path in sorted(old.keys() | new.keys()):
        was, now = old.get(path), new.get(path)
        if was == now:
            continue
        if isinstance(was, list) or isinstance(now, list):
            was_items, now_items = list(was or []), list(now or [])
            out.append(
                {
                    "field": path,
                    "added": [i for i in now_items if i not in was_items],
                    "removed": [i for i in was_items if i not in now_items],
                }
            )
        else:
            out.append({"field": path, "before": was, "after": now})
    return out


async def _stored_roles(store: BaseStore) -> list[str]:
    namespaces = await store.alist_namespaces(
        prefix=NAMESPACE, max_depth=len(NAMESPACE) + 1, limit=_MAX_ROLES
    )
    return sorted({ns[len(NAMESPACE)] for ns in namespaces if len(ns) > len(NAMESPACE)})


async def role_history(store: BaseStore) -> list[dict[str, Any]]:
    """Every role with stored versions: each version with its diff and rollback, newest last."""
    roles = RoleStore(store)
    org = _yaml_organization()
    out = []
    for name in await _stored_roles(store):
        base: dict[str, Any] = (
            org.role(name).model_dump(mode="json") if org.has_role(name) else {"name": name}
        )
        versions: list[dict[str, Any]] = [
            {"version": 0, "summary": "As defined in roles/ (YAML)", "definition": base}
        ]
        for stored in await roles.versions(name):
            before = versions[-1]["definition"]
            after = stored["definition"]
            motivation = f"Roll back role '{name}' to version {stored['version'] - 1}."
            versions.append(
                {
                    **stored,
                    "diff": diff_roles(before, after),
                    "rollback": changes_between(after, before, motivation=motivation),
                }
            )
        out.append({"role": name, "current": versions[-1]["version"], "versions": versions})
    return out


async def instruction_history(store: BaseStore) -> list[dict[str, Any]]:
    """Every rule of the organisation's roles with its versions, oldest first."""
    memory = MemoryStore(store)
    rules: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for role in _yaml_organization().roles:
        scope = MemoryScope(role=role.name, org_id=DEFAULT_ORG, domains=tuple(role.domains))
        for found in await memory.procedures(scope):
            if found.ref in {v["ref"] for versions in rules.values() for v in versions}:
                continue  # a domain two roles read
            decision = found.value.get("decision") or {}
            versions = rules.setdefault((found.area, str(found.value.get("rule"))), [])
            versions.append(
                {
                    "ref": found.ref,
                    "version": int(found.value.get("version", 0)),
                    "status": found.status,
                    "text": found.text,
                    "before": versions[-1]["text"] if versions else None,
                    "reason": str(found.value.get("reason") or ""),
                    "decided_by": decision.get("decided_by"),
                    "decision_reason": decision.get("reason"),
                    "created_at": found.created_at.isoformat() if found.created_at else None,
                }
            )
    return [
        {"area": area, "rule": rule, "versions": versions}
        for (area, rule), versions in sorted(rules.items())
    ]
