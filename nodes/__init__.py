"""Node factories and building blocks for staffgraph's graphs.

Role agents (:func:`build_role_agent`) and their middleware, team members and handoffs for
supervisors, the critic and judge, approval gates in langchain's human-in-the-loop schema,
the policy check, the budget guard, role-change governance and long-term memory (recall and
remember nodes, middleware and tools); plus the chat-model and embeddings factories.

The names below are imported from their modules on first use, not with the package: the server
imports ``nodes.models`` and ``nodes.embeddings`` while it starts, and must not pay then for
langchain's agent machinery (a second of imports) that only the graphs need.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "approval_description": "agent",
    "build_role_agent": "agent",
    "check_role_grants": "agent",
    "role_system_prompt": "agent",
    "ALL_DECISIONS": "approval",
    "DecisionType": "approval",
    "GateDecision": "approval",
    "approval_request": "approval",
    "ask_approval": "approval",
    "parse_decision": "approval",
    "BudgetStatus": "budget",
    "check_budget": "budget",
    "merge_usage": "budget",
    "request_budget_approval": "budget",
    "usage_by_role": "budget",
    "Criterion": "critic",
    "CriterionScore": "critic",
    "JudgeCheck": "critic",
    "Review": "critic",
    "Verdict": "critic",
    "check_criteria": "critic",
    "judge": "critic",
    "review": "critic",
    "get_embeddings": "embeddings",
    "ChangeProposal": "governance",
    "INSTRUCTIONS": "governance",
    "Impact": "governance",
    "RoleChange": "governance",
    "apply_change": "governance",
    "assess_change": "governance",
    "assess_instruction": "governance",
    "describe_change": "governance",
    "normalise_change": "governance",
    "ActingRoleMiddleware": "memory",
    "FactMode": "memory",
    "MAX_INSTRUCTIONS": "memory",
    "MEMORY_TOOL_RISKS": "memory",
    "MemoryContext": "memory",
    "RECALL_MESSAGE_PREFIX": "memory",
    "RememberEpisodeMiddleware": "memory",
    "StoreRecall": "memory",
    "acting_role": "memory",
    "episode_from_messages": "memory",
    "explicit_facts": "memory",
    "format_memories": "memory",
    "make_recall_node": "memory",
    "make_remember_node": "memory",
    "memory_recall_middleware": "memory",
    "memory_settings": "memory",
    "memory_tools": "memory",
    "provenance_for": "memory",
    "register_memory_tools": "memory",
    "resolve_scope": "memory",
    "MemoryRecall": "middleware",
    "MemoryRecallMiddleware": "middleware",
    "RoleGrantMiddleware": "middleware",
    "RuntimeModelMiddleware": "middleware",
    "TokenBudgetMiddleware": "middleware",
    "get_chat_model": "models",
    "OfflineChatModel": "offline",
    "ContentPolicy": "policy",
    "PolicyVerdict": "policy",
    "check_policy": "policy",
    "make_policy_check": "policy",
    "Answer": "team",
    "Brief": "team",
    "Delegation": "team",
    "HANDOFF_PREFIX": "team",
    "Handoff": "team",
    "Member": "team",
    "ask_member": "team",
    "brief_text": "team",
    "check_handoff_policy": "team",
    "check_members": "team",
    "handoff_tool": "team",
    "inner_interrupts": "interrupts",
    "interrupts_configurable": "interrupts",
    "member_node": "team",
    "run_member": "team",
}
"""Each public name and the module of this package that defines it."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (then it is a plain attribute)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nodes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nodes.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
