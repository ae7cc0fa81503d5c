"""A cron's runs run as its creator, and stop when the creator may no longer run them.

When a cron is created, the caller's identity is stored with it (:meth:`Caller.stored`: user,
permissions, and the API key it came with). Each firing asks the server's auth policy again:

* :meth:`Policy.resume` turns the stored identity into today's caller: with built-in keys the
  key is read from Postgres, so a revoked key (or a cron stored without one) ends there, and
  the scheduler disables the cron; custom auth has no credential to present again, so the
  stored user is used as authenticated;
* the authorization handlers then decide as for an interactive run: ``threads``
  ``create_run`` (its filter must match the cron's thread, checked by the SQL that creates the
  run), ``threads`` ``create`` for the new thread of a stateless cron (stamping its owner),
  and ``assistants`` ``read`` for a user-created assistant. A refusal skips the firing.

The run then carries the same ``langgraph_auth_*`` keys an interactive run of that caller gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from server.auth import Caller, Filter, Policy, matches
from server.auth.run_value import create_run_value
from server.runtime.runtime import Runtime
from server.schemas import RunCreate

__all__ = ["CreatorGone", "CreatorRefused", "Firing", "as_creator"]

_LOCAL = Caller(identity="", enforced=False)


class CreatorGone(Exception):
    """The cron's creator can no longer act at all (revoked key, no stored identity)."""


class CreatorRefused(Exception):
    """The creator's authorization handlers refuse this firing (no access, for now)."""


@dataclass(frozen=True)
class Firing:
    """How one firing's run is created: as whom, on which threads."""

    identity: dict[str, Any]
    """The run's ``langgraph_auth_*`` configurable keys."""
    thread_metadata: dict[str, Any] | None
    """Metadata (the owner) of the new thread of a stateless cron."""
    thread_filter: Filter | None
    """The creator's filter the cron's thread must match."""


async def as_creator(
    policy: Policy, runtime: Runtime, cron: dict[str, Any], body: RunCreate
) -> Firing:
    """Authorize one firing of ``cron`` (its run request ``body``) as the cron's creator.

    Raises:
        CreatorGone: the creator's identity is no longer valid.
        CreatorRefused: the creator may not run it now.
    """
    if not policy.enabled:
        return Firing(identity=_LOCAL.run_configurable(), thread_metadata=None, thread_filter=None)
    caller = await policy.resume(cron.get("auth") or {})
    if caller is None:
        raise CreatorGone(
            "its creator's API key was revoked, or it was created without authentication"
        )
    thread_id = str(cron["thread_id"]) if cron["thread_id"] is not None else None
    try:
        value = create_run_value(body, thread_id, if_not_exists=None, after_seconds=0)
        flt = await policy.authorize(caller, "threads", "create_run", value)
        thread_metadata = None
        if thread_id is None:
            stamped: dict[str, Any] = {"thread_id": None, "metadata": {}}
            await policy.authorize(caller, "threads", "create", stamped)
            thread_metadata = dict(stamped.get("metadata") or {})
        if not await _assistant_usable(policy, runtime, caller, str(cron["assistant_id"])):
            raise CreatorRefused(f"its creator {caller.identity} may no longer use the assistant")
    except HTTPException as exc:
        raise CreatorRefused(
            f"its creator {caller.identity} may not run it ({exc.status_code}: {exc.detail})"
        ) from None
    return Firing(
        identity=caller.run_configurable(), thread_metadata=thread_metadata, thread_filter=flt
    )


async def _assistant_usable(
    policy: Policy, runtime: Runtime, caller: Caller, assistant_id: str
) -> bool:
    row = await runtime.assistants.get(assistant_id)
    if row is None or (row["metadata"] or {}).get("created_by") == "system":
        return True  # a missing one fails the run's creation; system assistants are everyone's
    flt = await policy.authorize(caller, "assistants", "read", {"assistant_id": assistant_id})
    return matches(flt, row["metadata"])
