"""Budget guard: token usage summed per role and per run, checked against budgets.

Usage comes from ``usage_metadata`` on AI messages (every LangChain chat model reports it; the
offline model estimates it), counted by ``state.usage.usage_from_messages``: the same
numbers the server stores with each run and exports as metrics. Graphs keep a ``usage``
channel (role -> tokens) reduced with :func:`merge_usage`; the guard node compares it with
each role's ``policies.token_budget`` and the run's budget, then either stops the run or asks
a human to approve going over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from typing_extensions import TypedDict

from nodes.approval import GateDecision, ask_approval
from state.usage import UNATTRIBUTED, usage_from_messages

__all__ = [
    "BudgetStatus",
    "check_budget",
    "merge_usage",
    "request_budget_approval",
    "usage_by_role",
]

RUN = "__run__"
"""Key of the whole run's total in a :class:`BudgetStatus`'s ``used``."""


def merge_usage(left: Mapping[str, int] | None, right: Mapping[str, int] | None) -> dict[str, int]:
    """Reducer for a ``usage`` channel: add tokens per role."""
    merged = dict(left or {})
    for role, tokens in (right or {}).items():
        merged[role] = merged.get(role, 0) + int(tokens)
    return merged


def usage_by_role(
    messages: Iterable[BaseMessage], *, default: str = UNATTRIBUTED
) -> dict[str, int]:
    """Total tokens of AI messages per role (``message.name``, else ``default``).

    The numbers of ``state.usage.usage_from_messages``: a message seen twice (same
    id) counts once, and a reply without ``total_tokens`` counts input plus output.
    """
    return usage_from_messages(messages, default_role=default).tokens_by_role()


class BudgetStatus(TypedDict):
    """Where a run stands against its budgets."""

    exceeded: bool
    used: dict[str, int]
    """Tokens per role, plus the run total under ``"__run__"``."""
    reasons: list[str]
    """One line per budget exceeded."""
    action: Literal["continue", "stop", "approved"]
    """What the guard decided: carry on, stop the run, or carry on with a human's approval."""


def check_budget(
    usage: Mapping[str, int],
    *,
    role_budgets: Mapping[str, int | None] | None = None,
    run_budget: int | None = None,
) -> BudgetStatus:
    """Compare ``usage`` with per-role budgets and the run's budget.

    Args:
        usage: Tokens per role.
        role_budgets: Role -> most tokens per run (``None``: no limit).
        run_budget: Most tokens for the whole run (``None``: no limit).

    Returns:
        The status, with ``action`` "stop" when a budget is exceeded, else "continue".
    """
    reasons = []
    for role, budget in (role_budgets or {}).items():
        spent = usage.get(role, 0)
        if budget is not None and spent > budget:
            reasons.append(f"role '{role}' used {spent} tokens; its budget is {budget}.")
    total = sum(usage.values())
    if run_budget is not None and total > run_budget:
        reasons.append(f"the run used {total} tokens; its budget is {run_budget}.")
    return BudgetStatus(
        exceeded=bool(reasons),
        used={**usage, RUN: total},
        reasons=reasons,
        action="stop" if reasons else "continue",
    )


def request_budget_approval(status: BudgetStatus, *, gate: str = "budget_guard") -> GateDecision:
    """Ask a human whether the run may go over budget (approve) or must stop (reject).

    Only ``approve`` and ``reject`` are offered: there is nothing to edit or answer.
    """
    description = (
        "The run is over its token budget: " + " ".join(status["reasons"]) + " "
        "Approve to let it continue, reject to stop it here."
    )
    used: dict[str, Any] = dict(status["used"])
    return ask_approval(
        "exceed_token_budget",
        {"used": used},
        description,
        gate=gate,
        allowed=("approve", "reject"),
        metadata={"policy": "token_budget", "reasons": list(status["reasons"])},
    )
