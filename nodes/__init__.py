"""Node factories and building blocks for staffgraph's graphs.

Role agents (:func:`build_role_agent`) and their middleware, team members and handoffs for
supervisors, the critic and judge, approval gates in langchain's human-in-the-loop schema,
the policy check, the budget guard and role-change governance; plus the chat-model and
embeddings factories.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodes.agent import (
        approval_description,
        build_role_agent,
        check_role_grants,
        role_system_prompt,
    )
    from nodes.approval import (
        ALL_DECISIONS,
        DecisionType,
        GateDecision,
        approval_request,
        ask_approval,
        parse_decision,
    )
    from nodes.budget import (
        BudgetStatus,
        check_budget,
        merge_usage,
        request_budget_approval,
        usage_by_role,
    )
    from nodes.critic import (
        Criterion,
        CriterionScore,
        JudgeCheck,
        Review,
        Verdict,
        check_criteria,
        judge,
        review,
    )
    from nodes.embeddings import (
        get_embeddings,
    )
    from nodes.governance import (
        ChangeProposal,
        Impact,
        RoleChange,
        apply_change,
        assess_change,
        describe_change,
        normalise_change,
    )
    from nodes.middleware import (
        MemoryRecall,
        MemoryRecallMiddleware,
        RoleGrantMiddleware,
        RuntimeModelMiddleware,
        TokenBudgetMiddleware,
    )
    from nodes.models import (
        get_chat_model,
    )
    from nodes.offline import (
        OfflineChatModel,
    )
    from nodes.policy import (
        ContentPolicy,
        PolicyVerdict,
        check_policy,
        make_policy_check,
    )
    from nodes.team import (
        HANDOFF_PREFIX,
        Brief,
        Delegation,
        Handoff,
        Member,
        ask_member,
        brief_text,
        check_handoff_policy,
        check_members,
        handoff_tool,
        run_member,
    )

__all__ = [
    "ALL_DECISIONS",
    "HANDOFF_PREFIX",
    "Brief",
    "BudgetStatus",
    "ChangeProposal",
    "ContentPolicy",
    "Criterion",
    "CriterionScore",
    "DecisionType",
    "Delegation",
    "GateDecision",
    "Handoff",
    "Impact",
    "JudgeCheck",
    "Member",
    "MemoryRecall",
    "MemoryRecallMiddleware",
    "OfflineChatModel",
    "PolicyVerdict",
    "Review",
    "RoleChange",
    "RoleGrantMiddleware",
    "RuntimeModelMiddleware",
    "TokenBudgetMiddleware",
    "Verdict",
    "apply_change",
    "approval_description",
    "approval_request",
    "ask_approval",
    "ask_member",
    "assess_change",
    "brief_text",
    "build_role_agent",
    "check_budget",
    "check_criteria",
    "check_handoff_policy",
    "check_members",
    "check_policy",
    "check_role_grants",
    "describe_change",
    "get_chat_model",
    "get_embeddings",
    "handoff_tool",
    "judge",
    "make_policy_check",
    "merge_usage",
    "normalise_change",
    "parse_decision",
    "request_budget_approval",
    "review",
    "role_system_prompt",
    "run_member",
    "usage_by_role",
]

# Imported on first use: submodules (nodes.offline, nodes.models) stay cheap to import and
# free of cycles with tools/ and state/, which import some of them.
_HOMES = {
    "ALL_DECISIONS": "nodes.approval",
    "Brief": "nodes.team",
    "BudgetStatus": "nodes.budget",
    "ChangeProposal": "nodes.governance",
    "ContentPolicy": "nodes.policy",
    "Criterion": "nodes.critic",
    "CriterionScore": "nodes.critic",
    "DecisionType": "nodes.approval",
    "Delegation": "nodes.team",
    "GateDecision": "nodes.approval",
    "HANDOFF_PREFIX": "nodes.team",
    "Handoff": "nodes.team",
    "Impact": "nodes.governance",
    "JudgeCheck": "nodes.critic",
    "Member": "nodes.team",
    "MemoryRecall": "nodes.middleware",
    "MemoryRecallMiddleware": "nodes.middleware",
    "OfflineChatModel": "nodes.offline",
    "PolicyVerdict": "nodes.policy",
    "Review": "nodes.critic",
    "RoleChange": "nodes.governance",
    "RoleGrantMiddleware": "nodes.middleware",
    "RuntimeModelMiddleware": "nodes.middleware",
    "TokenBudgetMiddleware": "nodes.middleware",
    "Verdict": "nodes.critic",
    "apply_change": "nodes.governance",
    "approval_description": "nodes.agent",
    "approval_request": "nodes.approval",
    "ask_approval": "nodes.approval",
    "ask_member": "nodes.team",
    "assess_change": "nodes.governance",
    "brief_text": "nodes.team",
    "build_role_agent": "nodes.agent",
    "check_budget": "nodes.budget",
    "check_criteria": "nodes.critic",
    "check_handoff_policy": "nodes.team",
    "check_members": "nodes.team",
    "check_policy": "nodes.policy",
    "check_role_grants": "nodes.agent",
    "describe_change": "nodes.governance",
    "get_chat_model": "nodes.models",
    "get_embeddings": "nodes.embeddings",
    "handoff_tool": "nodes.team",
    "judge": "nodes.critic",
    "make_policy_check": "nodes.policy",
    "merge_usage": "nodes.budget",
    "normalise_change": "nodes.governance",
    "parse_decision": "nodes.approval",
    "request_budget_approval": "nodes.budget",
    "review": "nodes.critic",
    "role_system_prompt": "nodes.agent",
    "run_member": "nodes.team",
    "usage_by_role": "nodes.budget",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'nodes' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
