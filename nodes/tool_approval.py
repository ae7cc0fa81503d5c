"""Tool approvals in role agents: langchain's HITL middleware, its requests naming their gate.

Kept apart from :mod:`nodes.approval` so that the server can read gate names without
importing langchain's agent machinery (the API answers before the graphs are imported).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain.agents.middleware import HumanInTheLoopMiddleware, InterruptOnConfig
from langgraph.errors import GraphInterrupt

from nodes.approval import TOOL_GATE, run_identity

__all__ = ["GatedHITLMiddleware"]


class GatedHITLMiddleware(HumanInTheLoopMiddleware):
    """langchain's HITL middleware whose requests name their gate and policy.

    The request keeps langchain's shape (``action_requests``, ``review_configs``) and gains
    the ``metadata`` our own gates carry: ``gate`` (``tool_approval``), ``policy``, the
    ``role``, each tool's ``risks`` and ``requested_by``. The graph node keeps langchain's
    name (``HumanInTheLoopMiddleware.after_model``), so drawings and clients see no change.
    """

    def __init__(
        self, interrupt_on: dict[str, InterruptOnConfig], *, metadata: Mapping[str, Any]
    ) -> None:
        """Gate the tools of ``interrupt_on``; ``metadata`` is added to every request."""
        super().__init__(interrupt_on=interrupt_on)  # type: ignore[arg-type]
        self.metadata = dict(metadata)

    @property
    def name(self) -> str:
        """langchain's name, so the node stays ``HumanInTheLoopMiddleware.after_model``."""
        return "HumanInTheLoopMiddleware"

    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """langchain's review of the last AI message's tool calls, its request annotated."""
        try:
            return super().after_model(state, runtime)
        except GraphInterrupt as raised:
            # The request is stored from the raised interrupt: annotate it on its way out.
            for pending in raised.args[0] if raised.args else ():
                value = getattr(pending, "value", None)
                if isinstance(value, dict) and "action_requests" in value:
                    requester = run_identity()
                    extra = {"requested_by": requester} if requester else {}
                    value["metadata"] = {"gate": TOOL_GATE, **self.metadata, **extra}
            raise
