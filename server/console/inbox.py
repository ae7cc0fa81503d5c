"""The approval inbox: every interrupted thread's pending approval requests, newest first.

One item per pending interrupt: the graph and assistant, the action requests (name, arguments,
description, the decisions ``review_configs`` allow, the argument schema an edit is checked
against), the risk and policy behind it, the role that asks, who started the waiting run and
since when it waits. An interrupt that is not an approval request (a graph's own
``interrupt(value)``) is listed with its raw value and no decisions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from nodes._private import humanize
from server.auth import Access, Filter, matches
from server.auth.approvals import may_review
from server.console.catalog import GATE_SCHEMAS, ToolInfo, tool_catalog
from server.runtime import Runtime
from server.runtime.graph_cache import UnknownGraph
from server.runtime.run_config import run_user
from state.roles.approvals import TOOL_GATE

__all__ = ["inbox_items"]

log = logging.getLogger(__name__)

_POLICY = re.compile(r"Policy: (?P<policy>[^\n]+)")
_RISK = re.compile(r"\(risk: (?P<risk>[a-z]+)\)")
_SCAN = 1000
"""Most interrupted threads looked at for other owners' requests the caller may decide."""


async def _catalog(runtime: Runtime, graph_id: str | None) -> dict[str, ToolInfo]:
    if not graph_id:
        return {}
    try:
        graph = await runtime.graphs.get(graph_id, access="threads.read")
    except UnknownGraph:
        return {}
    except Exception:  # a factory that cannot build without a run: show items without schemas
        log.warning("console: cannot load graph %s for its tool schemas", graph_id, exc_info=True)
        return {}
    return tool_catalog(graph)


def _role(action: Mapping[str, Any], info: ToolInfo | None, metadata: Mapping[str, Any]) -> str:
    if metadata.get("role"):
        return str(metadata["role"])
    roles = info.roles if info is not None else []
    description = str(action.get("description") or "")
    for role in roles:
        if description.startswith(humanize(role) + " "):
            return role
    if roles:
        return ", ".join(roles)
    args = action.get("args")
    return str(args.get("role", "")) if isinstance(args, Mapping) else ""


def _action(
    action: Mapping[str, Any],
    allowed: list[str],
    catalog: dict[str, ToolInfo],
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    name = str(action.get("name") or "")
    info = catalog.get(name)
    description = str(action.get("description") or "")
    policy = metadata.get("policy") or (m["policy"] if (m := _POLICY.search(description)) else "")
    risks: Mapping[str, Any] = (
        metadata["risks"] if isinstance(metadata.get("risks"), Mapping) else {}
    )
    risk = metadata.get("risk") or risks.get(name) or (info.risk if info is not None else None)
    if not risk and (m := _RISK.search(description)):
        risk = m["risk"]
    return {
        "name": name,
        "args": action.get("args") if isinstance(action.get("args"), dict) else {},
        "description": description,
        "allowed_decisions": allowed,
        "args_schema": info.schema if info is not None else GATE_SCHEMAS.get(name),
        "risk": risk or "",
        "policy": str(policy),
        "role": _role(action, info, metadata),
        "gate": str(metadata.get("gate") or TOOL_GATE),
    }


def _actions(value: Any, catalog: dict[str, ToolInfo]) -> list[dict[str, Any]] | None:
    """The action requests of an approval interrupt; ``None`` for any other interrupt."""
    if not isinstance(value, Mapping) or not isinstance(value.get("action_requests"), list):
        return None
    configs = value.get("review_configs")
    allowed_by_name: dict[str, list[str]] = {}
    for config in configs if isinstance(configs, list) else []:
        if isinstance(config, Mapping) and isinstance(config.get("allowed_decisions"), list):
            names = [str(d) for d in config["allowed_decisions"]]
            allowed_by_name[str(config.get("action_name"))] = names
    metadata = value.get("metadata") if isinstance(value.get("metadata"), Mapping) else {}
    out = []
    for action in value["action_requests"]:
        if isinstance(action, Mapping):
            allowed = allowed_by_name.get(str(action.get("name")), [])
            out.append(_action(action, allowed, catalog, metadata or {}))
    return out


async def _waiting_threads(
    runtime: Runtime, access: Access, auth: Filter | None, limit: int
) -> list[dict[str, Any]]:
    """The caller's interrupted threads, and other owners' waiting for the caller's decision."""

    async def interrupted(scope: Filter | None, count: int) -> list[dict[str, Any]]:
        rows, _ = await runtime.threads.search(
            ids=None,
            metadata=None,
            values=None,
            status="interrupted",
            limit=count,
            offset=0,
            sort_by="updated_at",
            sort_order="desc",
            auth=scope,
        )
        return rows

    rows = await interrupted(auth, limit)
    if auth is None:
        return rows
    # An approver sees (and answers) another owner's thread while it waits for them.
    seen = {row["thread_id"] for row in rows}
    for row in await interrupted(None, _SCAN):
        if row["thread_id"] not in seen and not matches(auth, row["metadata"]):
            if may_review(access.caller, access.approvals, row):
                rows.append(row)
    rows.sort(key=lambda row: row["updated_at"], reverse=True)
    return rows[:limit]


async def inbox_items(
    runtime: Runtime, access: Access, auth: Filter | None, *, limit: int
) -> list[dict[str, Any]]:
    """The pending approvals the caller may see, newest first.

    Args:
        runtime: the server's runtime.
        access: the caller.
        auth: the filter the caller's threads match (``None``: unscoped).
        limit: most threads to list.
    """
    rows = await _waiting_threads(runtime, access, auth, limit)
    items: list[dict[str, Any]] = []
    catalogs: dict[str, dict[str, ToolInfo]] = {}
    latest = await runtime.runs.latest_of([str(row["thread_id"]) for row in rows])
    for row in rows:
        metadata = row.get("metadata") or {}
        graph_id = metadata.get("graph_id")
        if str(graph_id) not in catalogs:
            catalogs[str(graph_id)] = await _catalog(runtime, graph_id)
        run = latest.get(str(row["thread_id"]))
        started_by = run_user((run.get("kwargs") or {}).get("config") or {}) if run else None
        pending = [
            (task_id, interrupt)
            for task_id, interrupts in (row.get("interrupts") or {}).items()
            for interrupt in interrupts or []
            if isinstance(interrupt, Mapping)
        ]
        for task_id, interrupt in pending:
            value = interrupt.get("value")
            items.append(
                {
                    "thread_id": str(row["thread_id"]),
                    "interrupt_id": interrupt.get("id"),
                    "task_id": task_id,
                    "pending_in_thread": len(pending),
                    "graph_id": graph_id,
                    "assistant_id": metadata.get("assistant_id") or graph_id,
                    "owner": metadata.get("owner"),
                    "run_id": str(run["run_id"]) if run else None,
                    "started_by": started_by or metadata.get("owner") or "",
                    "waiting_since": row.get("updated_at"),
                    "actions": _actions(value, catalogs[str(graph_id)]),
                    "value": value,
                }
            )
    return items
