"""The docs' owner-only auth, plus users an identity provider has suspended.

Suspended users (one per line in the file ``STAFFGRAPH_TEST_SUSPENDED`` names) are refused
by every authorization handler, as a deployment that checks a directory on each request would.
"""

import os
from pathlib import Path

from langgraph_sdk import Auth

VALID_TOKENS = {"token-alice": "alice", "token-bob": "bob"}

auth = Auth()


def _suspended() -> set[str]:
    path = Path(os.environ["STAFFGRAPH_TEST_SUSPENDED"])
    return set(path.read_text().split()) if path.exists() else set()


@auth.authenticate
async def get_current_user(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Check the bearer token and say who is calling."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or token not in VALID_TOKENS:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    return {"identity": VALID_TOKENS[token], "display_name": VALID_TOKENS[token].title()}


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: dict):
    """Private to the creator, and nothing at all for a suspended user."""
    if ctx.user.identity in _suspended():
        raise Auth.exceptions.HTTPException(status_code=403, detail="User is suspended")
    filters = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    metadata.update(filters)
    return filters
