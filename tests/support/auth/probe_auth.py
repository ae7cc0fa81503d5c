"""A custom Auth exercising what the server must honour: parameters, user kinds, handlers."""

from typing import Any

from langgraph_sdk import Auth

auth = Auth()


class Member:
    """A user object (not a dict) with identity and permissions attributes."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.permissions = ["team:blue"]
        self.display_name = identity.title()


@auth.authenticate
async def authenticate(
    request: Any,
    path: str,
    method: str,
    path_params: dict[str, str],
    query_params: dict[str, str],
    headers: dict[bytes, bytes],
    authorization: str | None,
) -> Any:
    token = (authorization or "").removeprefix("Bearer ").strip()
    if not token:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Who are you?")
    if token == "teapot":
        raise Auth.exceptions.HTTPException(
            status_code=418, detail="I'm a teapot", headers={"X-Why": "tea"}
        )
    if token == "boom":
        raise RuntimeError("database password is hunter2")
    if token.startswith("str-"):
        return token[4:]
    if token.startswith("obj-"):
        return Member(token[4:])
    return {
        "identity": token,
        "permissions": ["team:red"],
        "display_name": token.upper(),
        "seen": {
            "path": path,
            "method": method,
            "path_params": path_params,
            "query_params": query_params,
            "header_keys_bytes": all(isinstance(k, bytes) for k in headers),
            "request_path": request.url.path,
        },
    }


def _team(ctx: Auth.types.AuthContext) -> str:
    return ctx.permissions[0].split(":", 1)[1] if ctx.permissions else "none"


@auth.on.threads.create
async def stamp(ctx: Auth.types.AuthContext, value: dict) -> None:
    if ctx.user.identity == "readonly":
        return False
    metadata = value.setdefault("metadata", {})
    metadata["team"] = _team(ctx)
    metadata["members"] = [ctx.user.identity]


@auth.on.threads
async def same_team(ctx: Auth.types.AuthContext, value: dict) -> dict:
    assert ctx.user.identity != "asserted", "assertions are refusals"
    return {"team": {"$eq": _team(ctx)}}


@auth.on.threads.delete
async def members_delete(ctx: Auth.types.AuthContext, value: dict) -> dict:
    return {"members": {"$contains": ctx.user.identity}}


@auth.on.assistants
async def assistants_open(ctx: Auth.types.AuthContext, value: dict) -> None:
    return None


@auth.on.store
async def store_by_prefix(ctx: Auth.types.AuthContext, value: dict) -> None:
    # The documented pattern: put every caller in their own namespace.
    value["namespace"] = (ctx.user.identity, *value["namespace"])


@auth.on
async def nothing_else(ctx: Auth.types.AuthContext, value: dict) -> bool:
    return False
