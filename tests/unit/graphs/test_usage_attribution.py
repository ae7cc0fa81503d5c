"""Every model call in the supervisor graph is attributed to a role, the lead's included."""

from __future__ import annotations

from langchain_core.messages import HumanMessage

from graphs.supervisor import graph
from state.usage import UsageCallbackHandler


async def test_lead_and_member_tokens_are_attributed_to_their_roles() -> None:
    usage = UsageCallbackHandler()
    await graph.ainvoke(
        {"messages": [HumanMessage("What is 1200 * 1.15 for the budget?")]},
        {"callbacks": [usage]},
    )
    by_role = usage.usage.tokens_by_role()
    assert set(by_role) == {"chief_of_staff", "finance"}  # no "unattributed" tokens
    assert all(tokens > 0 for tokens in by_role.values())
