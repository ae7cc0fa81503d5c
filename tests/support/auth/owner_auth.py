"""The owner-only example from LangGraph's authentication docs, as a user would write it.

Written from the documented behaviour: a bearer token maps to a user; every resource created
is stamped with its creator as ``owner``; everything else is filtered to the caller's own.
"""

from langgraph_sdk import Auth

# A real deployment would verify a JWT or ask an identity provider.
VALID_TOKENS = {
    "token-alice": {"id": "alice", "name": "Alice"},
    "token-bob": {"id": "bob", "name": "Bob"},
}

auth = Auth()


@auth.authenticate
async def get_current_user(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Check the bearer token and say who is calling."""
    assert authorization
    scheme, token = authorization.split()
    assert scheme.lower() == "bearer"
    if token not in VALID_TOKENS:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    user = VALID_TOKENS[token]
    return {"identity": user["id"], "display_name": user["name"]}


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: dict):
    """Make every resource private to its creator."""
    filters = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    metadata.update(filters)
    return filters
