"""Operator endpoints for long-term memory beyond the Store API (a staffgraph extension)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from server.auditing import actor_of
from server.auth import Access, protect
from server.deps import Ctx
from server.json_body import JsonRoute
from state.memory import MEMORY_ROOT, MemoryInputError, MemoryStore

__all__ = ["router"]

router = APIRouter(tags=["Memory"], route_class=JsonRoute)


@router.delete("/memories/users/{user_id}")
async def delete_user_memories(
    ctx: Ctx,
    access: Annotated[Access, protect("store", "delete")],
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
) -> dict[str, int]:
    """Delete every memory of one user — episodic, semantic and procedural, in every area.

    For data-protection requests: afterwards no recall, search or agent sees anything that was
    stored for the user. Returns how many items were deleted; the deletion is recorded in the
    audit log (``memory.deleted``) in the same transaction. With auth on, a caller may
    delete their own memories only (admins anyone's).
    """
    await access.check({"namespace": (MEMORY_ROOT, user_id), "key": None})
    caller = access.caller
    if caller.enforced and not caller.is_admin and user_id != caller.identity:
        raise HTTPException(403, detail="You may delete your own memories only")
    try:
        deleted = await MemoryStore(ctx.persistence.store).delete_user(
            user_id, actor=actor_of(access.caller)
        )
    except MemoryInputError as exc:
        raise HTTPException(422, detail=f"path.user_id: {exc}") from None
    return {"deleted": deleted}
