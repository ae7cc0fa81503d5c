"""Approval gates: our own nodes ask a human in langchain v1's human-in-the-loop schema.

Every approval in staffgraph, whether raised by ``HumanInTheLoopMiddleware`` inside a role
agent or by a gate node in a graph (pipeline escalation, governance, budget), has the same
interrupt value and the same answer, so one client (Agent Chat UI, LangGraph Studio, our SDK
helpers) handles them all::

    interrupt value: {"action_requests": [{"name", "args", "description"}],
                      "review_configs": [{"action_name", "allowed_decisions"}],
                      "metadata": {...}}            # what triggered it: gate, risk, policy
    resume with:     Command(resume={"decisions": [{"type": "approve"}]})
                     ... {"type": "edit", "edited_action": {"name": ..., "args": {...}}}
                     ... {"type": "reject", "message": "why"}
                     ... {"type": "respond", "message": "answer"}

:func:`ask_approval` raises the interrupt and turns the answer into a checked
:class:`GateDecision`. A gate node must do nothing with side effects before calling it: the
node runs again from the top when the run resumes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, cast

from langgraph.config import get_config
from langgraph.types import interrupt
from typing_extensions import TypedDict

__all__ = [
    "ALL_DECISIONS",
    "GATE_METADATA_KEY",
    "TOOL_GATE",
    "DecisionType",
    "GateDecision",
    "approval_request",
    "ask_approval",
    "parse_decision",
    "run_identity",
]

DecisionType = Literal["approve", "edit", "reject", "respond"]
ALL_DECISIONS: tuple[DecisionType, ...] = ("approve", "edit", "reject", "respond")

GATE_METADATA_KEY = "approval_gate"
"""Node metadata naming the gate a node asks at: ``add_node(..., metadata={GATE_METADATA_KEY:
"governance_approval"})``. The server refuses ``update_state(as_node=<that node>)`` to callers
without the gate's authority, since writing as the gate would skip its question."""

TOOL_GATE = "tool_approval"
"""The gate of a role agent's gated tool calls (``state.roles.approvals.TOOL_GATE``)."""

_MAX_MESSAGE = 4_000
_MAX_ASKS = 5
_MAX_ARGS_BYTES = 64_000


class GateDecision(TypedDict):
    """A human decision at a gate, as recorded in graph state."""

    gate: str
    """The gate that asked (e.g. ``pipeline_escalation``, ``governance_approval``)."""
    action: str
    """The action that was up for review."""
    type: DecisionType
    """What the human decided."""
    args: dict[str, Any]
    """The action's arguments as decided: the edited ones after ``edit``."""
    message: NotRequired[str]
    """The reviewer's reason (``reject``) or answer (``respond``)."""
    decided_by: NotRequired[str]
    """The authenticated identity of whoever decided (the caller who resumed the run; absent
    on a server without authentication)."""


def approval_request(
    action: str,
    args: Mapping[str, Any],
    description: str,
    *,
    allowed: Sequence[DecisionType] = ALL_DECISIONS,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the interrupt value for one action, in langchain's ``HITLRequest`` shape.

    Args:
        action: Name of the action under review.
        args: Its arguments (JSON-serialisable).
        description: What the reviewer is asked, including the risk and policy behind it.
        allowed: Decisions the reviewer may take.
        metadata: What triggered the request (gate, risk, policy); clients may show it.

    Returns:
        ``{"action_requests": [...], "review_configs": [...], "metadata": {...}}``.
    """
    return {
        "action_requests": [{"name": action, "args": dict(args), "description": description}],
        "review_configs": [{"action_name": action, "allowed_decisions": list(allowed)}],
        "metadata": dict(metadata or {}),
    }


def parse_decision(
    response: Any,
    *,
    gate: str,
    action: str,
    args: Mapping[str, Any],
    allowed: Sequence[DecisionType] = ALL_DECISIONS,
) -> GateDecision:
    """Check a resume value against the request it answers and return the decision.

    Raises:
        ValueError: The value is not ``{"decisions": [one decision]}``, the decision type is
            not allowed, an edit changes the action name or has no ``args`` object, a
            respond has no message, or the value is too large. The message shows the
            expected shape.
    """
    expected = 'resume with {"decisions": [{"type": "approve" | "edit" | "reject" | "respond"}]}'
    if not isinstance(response, Mapping) or not isinstance(response.get("decisions"), list):
        raise ValueError(f"Gate '{gate}' got {type(response).__name__}; {expected}.")
    decisions = response["decisions"]
    if len(decisions) != 1:
        raise ValueError(
            f"Gate '{gate}' asked about 1 action but got {len(decisions)} decisions; {expected}."
        )
    decision = decisions[0]
    kind = decision.get("type") if isinstance(decision, Mapping) else None
    if kind not in allowed:
        raise ValueError(
            f"Gate '{gate}' allows decisions {', '.join(allowed)}; got {kind!r}. {expected}."
        )
    assert isinstance(decision, Mapping)
    record = GateDecision(gate=gate, action=action, type=cast(DecisionType, kind), args=dict(args))
    if kind == "edit":
        edited = decision.get("edited_action")
        if not isinstance(edited, Mapping) or not isinstance(edited.get("args"), Mapping):
            raise ValueError(
                f"Gate '{gate}': an edit needs "
                '{"edited_action": {"name": ..., "args": {...}}}.'
            )
        if edited.get("name", action) != action:
            raise ValueError(
                f"Gate '{gate}': an edit must keep the action '{action}', "
                f"not switch to {edited.get('name')!r}."
            )
        if len(json.dumps(edited["args"], default=str)) > _MAX_ARGS_BYTES:
            raise ValueError(f"Gate '{gate}': edited args exceed {_MAX_ARGS_BYTES} bytes.")
        record["args"] = dict(edited["args"])
    message = decision.get("message")
    if kind == "respond" and not (isinstance(message, str) and message.strip()):
        raise ValueError(f"Gate '{gate}': a respond decision needs a non-empty 'message'.")
    if isinstance(message, str) and message.strip():
        record["message"] = message.strip()[:_MAX_MESSAGE]
    return record


def run_identity() -> str | None:
    """The authenticated identity of the run being executed (``None`` without one).

    The server puts the caller of the request that created the run in ``configurable``
    (``langgraph_auth_user_id``); a resumed run is the resumer's, so at a gate it names who
    decided, and when the gate first asks, who raised the request.
    """
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # called outside a run
        return None
    identity = configurable.get("langgraph_auth_user_id")
    return identity if isinstance(identity, str) and identity else None


def ask_approval(
    action: str,
    args: Mapping[str, Any],
    description: str,
    *,
    gate: str,
    allowed: Sequence[DecisionType] = ALL_DECISIONS,
    metadata: Mapping[str, Any] | None = None,
) -> GateDecision:
    """Pause the run for a human decision on one action and return that decision.

    Call it from a node before any side effect: on resume the node runs again and this call
    returns the human's answer instead of pausing.

    Args:
        action: Name of the action under review.
        args: Its arguments.
        description: What the reviewer is asked (say which risk and policy apply).
        gate: Name of the gate, recorded with the decision.
        allowed: Decisions the reviewer may take.
        metadata: Added to the request's ``metadata`` along with ``gate``.

    A malformed answer does not fail the run: the gate asks again, with the problem in
    ``metadata["error"]``; after five malformed answers in a row it raises.

    The request's metadata names the gate, and ``requested_by`` (unless ``metadata`` gives
    it): the identity of the run that raised it, which the server uses for separation of
    duties. The decision records ``decided_by``, the identity of the run that answered.

    Returns:
        The checked decision.

    Raises:
        ValueError: Five malformed resume values in a row (see :func:`parse_decision`).
    """
    requester = run_identity()
    meta: dict[str, Any] = {"gate": gate, **({"requested_by": requester} if requester else {})}
    meta.update(metadata or {})
    request = approval_request(action, args, description, allowed=allowed, metadata=meta)
    response = interrupt(request)
    for _ in range(_MAX_ASKS - 1):
        try:
            return _signed(
                parse_decision(response, gate=gate, action=action, args=args, allowed=allowed)
            )
        except ValueError as exc:
            # A resume value is kept once given, so a bad answer cannot simply be retried: ask
            # again (a new interrupt in the same node), saying what was wrong.
            retry = {**request, "metadata": {**request["metadata"], "error": str(exc)}}
            response = interrupt(retry)
    return _signed(parse_decision(response, gate=gate, action=action, args=args, allowed=allowed))


def _signed(decision: GateDecision) -> GateDecision:
    who = run_identity()
    if who is not None:
        decision["decided_by"] = who
    return decision
