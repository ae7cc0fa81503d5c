"""Graphs for the auth tests: ``whoami`` reports who the server says started the run."""

from __future__ import annotations

from typing import Any

from langgraph.config import get_config
from langgraph.graph import StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict


class WhoState(TypedDict, total=False):
    note: str
    seen: dict[str, Any]


async def report(state: WhoState, runtime: Runtime) -> dict[str, Any]:
    configurable = get_config()["configurable"]
    user = configurable.get("langgraph_auth_user")
    server_user = runtime.server_info.user if runtime.server_info is not None else None
    return {
        "seen": {
            "user_id": configurable.get("langgraph_auth_user_id"),
            "permissions": configurable.get("langgraph_auth_permissions"),
            "user": dict(user) if user is not None else None,
            "user_identity_attr": getattr(user, "identity", None),
            "server_info_identity": getattr(server_user, "identity", None),
        }
    }


builder = StateGraph(WhoState)
builder.add_node("report", report)
builder.add_edge("__start__", "report")
whoami = builder.compile(name="whoami")
