"""The role agent: ``langchain.agents.create_agent`` bound to one role's tools and policies.

A role's policies become middleware, so they are enforced by the graph rather than asked for
in the prompt: human approval for risky tools (``nodes.tool_approval.GatedHITLMiddleware``:
langchain's ``HumanInTheLoopMiddleware``, its requests naming gate and policy), call limits
(``ToolCallLimitMiddleware`` / ``ModelCallLimitMiddleware``), PII handling (``PIIMiddleware``),
and our own grant, token-budget, model-selection and memory-recall middleware.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    InterruptOnConfig,
    ModelCallLimitMiddleware,
    PIIMiddleware,
    ToolCallLimitMiddleware,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import ToolCall
from langchain_core.tools import BaseTool
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer

from nodes._private import humanize
from nodes.effects import EffectLedgerMiddleware
from nodes.memory import MAX_INSTRUCTIONS, ActingRoleMiddleware
from nodes.middleware import (
    MemoryRecall,
    MemoryRecallMiddleware,
    RoleGrantMiddleware,
    RuntimeModelMiddleware,
    TokenBudgetMiddleware,
)
from nodes.offline import OfflineChatModel
from nodes.tool_approval import GatedHITLMiddleware
from state.errors import GraphSetupError
from state.memory import MAX_K
from state.roles import Role
from state.usage import ROLE_METADATA_KEY
from tools.registry import ToolRegistry, ToolRisk, default_registry

__all__ = ["approval_description", "build_role_agent", "check_role_grants", "role_system_prompt"]

_ALL_DECISIONS: list[Any] = ["approve", "edit", "reject", "respond"]


def role_system_prompt(role: Role, *, registry: ToolRegistry | None = None) -> str:
    """Write the system prompt for a role from its purpose, duties, policies and personality.

    Args:
        role: The role.
        registry: Tool registry, to say which granted tools need approval.

    Returns:
        The prompt. Its first line is ``Role: <name>``, which the offline model reads.
    """
    title = humanize(role.name)
    lines = [f"Role: {title}", f"You are the {title.lower()} of an AI staff.", ""]
    lines.append(f"Purpose: {role.purpose}")
    if role.accountabilities:
        lines.append("You are accountable for:")
        lines.extend(f"- {item}" for item in role.accountabilities)
    if role.domains:
        lines.append("Only you may change: " + ", ".join(role.domains) + ".")
    policies = role.policies
    if role.tools:
        lines.append("Tools you may use: " + ", ".join(role.tools) + ".")
        if registry is not None:
            gated = role.tools_requiring_approval(registry)
            if gated:
                lines.append("A human approves each call of: " + ", ".join(gated) + ".")
    else:
        lines.append("You have no tools; answer from what you are given.")
    if policies.content.banned_terms:
        lines.append("Never write: " + "; ".join(policies.content.banned_terms) + ".")
    if policies.content.max_length:
        lines.append(f"Keep each reply under {policies.content.max_length} characters.")
    personality = role.personality
    if personality.traits or personality.tone:
        traits = ", ".join(personality.traits)
        tone = f" Tone: {personality.tone}." if personality.tone else ""
        lines.append(f"Personality: {traits}.{tone}" if traits else tone.strip())
    lines.append("Answer the request you are given directly and completely.")
    return "\n".join(lines)


def check_role_grants(role: Role, registry: ToolRegistry) -> None:
    """Refuse a role whose grant names unknown tools or risky tools without approval.

    Raises:
        GraphSetupError: Naming the role, the field and what to change.
    """
    where = f" (defined in {role.source})" if role.source else ""
    for name in role.tools:
        if name not in registry:
            suggestions = registry.suggest(name)
            hint = (
                (" Did you mean " + " or ".join(map(repr, suggestions)) + "?")
                if suggestions
                else ""
            )
            raise GraphSetupError(
                f"Role '{role.name}'{where}, field 'policies.allowed_tools': grants tool "
                f"'{name}', which is not in the tool registry.{hint} Register it or remove it "
                "from the grant."
            )
        risk = registry.risk_of(name)
        if role.policies.lacks_approval(name, risk):
            raise GraphSetupError(
                f"Role '{role.name}'{where}, field 'policies.approval_required': grants tool "
                f"'{name}' of risk '{risk.value}', but no approval policy covers it. Add "
                f"'{risk.value}' (or '{name}') to policies.approval_required."
            )


def approval_description(role: Role, tool_name: str, risk: ToolRisk) -> str:
    """The text a reviewer sees for a gated tool call: who, what, the risk and the policy."""
    rule = tool_name if tool_name in role.policies.approval_tools else risk.value
    return (
        f"{humanize(role.name)} wants to call '{tool_name}' (risk: {risk.value}). "
        f"Policy: role '{role.name}' requires approval for '{rule}' "
        "(policies.approval_required)."
    )


def _interrupt_config(role: Role, tool_name: str, risk: ToolRisk) -> InterruptOnConfig:
    prefix = approval_description(role, tool_name, risk)

    def describe(tool_call: ToolCall, state: Any, runtime: Runtime[Any]) -> str:
        args = json.dumps(tool_call["args"], ensure_ascii=False, default=str)
        return f"{prefix}\nArgs: {args[:2000]}"

    return InterruptOnConfig(allowed_decisions=list(_ALL_DECISIONS), description=describe)


def _policy_middleware(role: Role, registry: ToolRegistry) -> list[AgentMiddleware[Any, Any]]:
    policies = role.policies
    middleware: list[AgentMiddleware[Any, Any]] = []
    gated = {
        name: _interrupt_config(role, name, registry.risk_of(name))
        for name in role.tools_requiring_approval(registry)
    }
    if gated:
        metadata = {
            "policy": f"role '{role.name}' requires approval for "
            f"{', '.join(sorted(role.policies.approval_required))} (policies.approval_required)",
            "role": role.name,
            "risks": {name: registry.risk_of(name).value for name in gated},
        }
        middleware.append(GatedHITLMiddleware(interrupt_on=dict(gated), metadata=metadata))
    if policies.limits.tool_calls_per_run is not None:
        middleware.append(ToolCallLimitMiddleware(run_limit=policies.limits.tool_calls_per_run))
    if policies.limits.model_calls_per_run is not None:
        middleware.append(ModelCallLimitMiddleware(run_limit=policies.limits.model_calls_per_run))
    if policies.token_budget is not None:
        middleware.append(TokenBudgetMiddleware(policies.token_budget, role=role.name))
    for pii_type, rule in policies.pii.items():
        middleware.append(
            PIIMiddleware(
                pii_type,
                strategy=rule.strategy,
                detector=rule.detector,
                apply_to_input=rule.apply_to_input,
                apply_to_output=rule.apply_to_output,
                apply_to_tool_results=rule.apply_to_tool_results,
            )
        )
    return middleware


def build_role_agent(
    role: Role,
    *,
    registry: ToolRegistry | None = None,
    model: BaseChatModel | None = None,
    memory: MemoryRecall | None = None,
    middleware: Sequence[AgentMiddleware[Any, Any]] = (),
    name: str | None = None,
    context_schema: type[Any] | None = None,
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Build the agent for one role: its granted tools, with its policies as middleware.

    Args:
        role: The role.
        registry: Where the granted tools come from; defaults to :func:`tools.default_registry`.
        model: A fixed chat model. By default the model is chosen per call from the run's
            context (``context.model``), else the role's ``model``, else the ``MODEL`` setting.
        memory: Recall hook placing long-term memories in the prompt before each model call,
            e.g. :class:`nodes.memory.StoreRecall`.
        middleware: More middleware, run inside ours (e.g.
            :class:`nodes.memory.RememberEpisodeMiddleware` to record each run).
        name: Graph name and the ``name`` on its AI messages; defaults to the role's name.
        context_schema: The run context type, when the agent runs on its own.
        checkpointer: Only when the agent runs on its own; as a subgraph it uses the parent's.
        store: Long-term store, likewise.

    Returns:
        The compiled agent graph (state: ``messages``). Its config metadata names the role
        (``ROLE_METADATA_KEY``), so every model call and tool span inside it is attributed to
        the role in token accounting and traces, whatever graph it is nested in.

    Raises:
        GraphSetupError: The grant names an unknown tool, or a risky tool has no approval
            policy.
    """
    registry = registry if registry is not None else default_registry()
    check_role_grants(role, registry)
    tools: list[BaseTool] = registry.select(role.tools)
    stack: list[AgentMiddleware[Any, Any]] = []
    if model is None:
        stack.append(RuntimeModelMiddleware(default_spec=role.model))
    if memory is not None:
        # How many memories to recall is the recall hook's call (``context.memory_k`` facts
        # and episodes plus the approved instructions for StoreRecall); the middleware only
        # caps the count and bounds the characters.
        stack.append(
            MemoryRecallMiddleware(memory, role=role.name, max_items=MAX_K + MAX_INSTRUCTIONS)
        )
    stack.append(RoleGrantMiddleware(role.name, role.tools))
    if tools:
        stack.append(ActingRoleMiddleware(role.name))
    stack.extend(_policy_middleware(role, registry))
    stack.extend(middleware)
    stack.append(EffectLedgerMiddleware())  # innermost: wraps the tool call itself
    agent = create_agent(
        # The placeholder never answers: RuntimeModelMiddleware swaps in the run's model.
        model if model is not None else OfflineChatModel(),
        tools,
        system_prompt=role_system_prompt(role, registry=registry),
        middleware=stack,
        context_schema=context_schema,
        checkpointer=checkpointer,
        store=store,
        name=name or role.name,
    )
    # The role, not the agent's name: a renamed agent's tokens still count for its role.
    return agent.with_config(metadata={ROLE_METADATA_KEY: role.name})
