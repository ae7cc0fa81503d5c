"""An Auth that knows who you are and lets you do nothing."""

from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> str:
    if not authorization:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Missing token")
    return authorization.removeprefix("Bearer ").strip() or "nobody"


@auth.on
async def deny_all(ctx: Auth.types.AuthContext, value: dict) -> bool:
    return False
