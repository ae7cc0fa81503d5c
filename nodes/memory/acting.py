"""Which role a tool call acts for, set by the role agent around each call, never by the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import (
    ToolMessage,
)
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

_ACTING_ROLE: ContextVar[str | None] = ContextVar("staffgraph_acting_role", default=None)


def acting_role() -> str | None:
    """The role whose agent is running the current tool call, if a role agent is.

    Set by :class:`ActingRoleMiddleware` around each tool call, so, unlike the run's config
    metadata, nothing a caller sends can change it.
    """
    return _ACTING_ROLE.get()


class ActingRoleMiddleware(AgentMiddleware):
    """Tell the tools an agent runs which role they act for (see :func:`acting_role`).

    The memory tools scope reads and writes by role. Taking the role from the run's config
    (``lc_agent_name``) would let a client that sends its own metadata act as another role;
    :func:`nodes.agent.build_role_agent` adds this middleware so they need not.
    """

    def __init__(self, role: str) -> None:
        """Create the middleware for the agent of ``role``."""
        super().__init__()
        self.role = role

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        token = _ACTING_ROLE.set(self.role)
        try:
            return handler(request)
        finally:
            _ACTING_ROLE.reset(token)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        token = _ACTING_ROLE.set(self.role)
        try:
            return await handler(request)
        finally:
            _ACTING_ROLE.reset(token)
