"""Each rule has one home: the approval rule, the fact-merge threshold and the recall size.

These tests fail when a second copy of a rule drifts from the first: the organisation check
and the role-agent guard must refuse exactly the same grants, and every memory entry point must
take its merge threshold and recall size from the one default (or the run's context).
"""

from __future__ import annotations

import inspect
from itertools import product

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import StructuredTool
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore

from nodes.agent import check_role_grants
from nodes.embeddings import HashingEmbeddings
from nodes.memory import (
    MemoryContext,
    make_recall_node,
    make_remember_node,
    memory_settings,
    memory_tools,
    register_memory_tools,
)
from state.errors import GraphSetupError, RoleDefinitionError
from state.memory import (
    DEFAULT_MERGE_THRESHOLD,
    DEFAULT_RECALL_K,
    MemoryKind,
    MemoryScope,
    MemoryStore,
    Provenance,
)
from state.roles import Circle, Organization, Role, validate_organization
from state.tool_risk import ToolRisk, needs_approval_policy
from tools.registry import ToolRegistry

# ------------------------------------------------------------------------------ approval rule


def _echo(text: str) -> str:
    """Return the text."""
    return text


def _registry(risk: ToolRisk) -> ToolRegistry:
    tool = StructuredTool.from_function(func=_echo, name="act", metadata={"risk": risk.value})
    return ToolRegistry([tool])


APPROVALS = [(), ("read",), ("write",), ("external",), ("act",), ("write", "external")]


@pytest.mark.parametrize(("risk", "approval"), list(product(ToolRisk, APPROVALS)))
def test_build_time_and_run_time_checks_refuse_the_same_grants(
    risk: ToolRisk, approval: tuple[str, ...]
) -> None:
    role = Role.model_validate(
        {
            "name": "doer",
            "purpose": "Does.",
            "policies": {"allowed_tools": ["act"], "approval_required": list(approval)},
        }
    )
    registry = _registry(risk)
    org = Organization(circles=(Circle(name="desk", purpose="Desk.", lead="doer"),), roles=(role,))
    try:
        validate_organization(org, registry)
        refused_at_load = False
    except RoleDefinitionError as exc:
        assert all("approval" in p.describe() for p in exc.problems), exc
        refused_at_load = True
    try:
        check_role_grants(role, registry)
        refused_at_build = False
    except GraphSetupError:
        refused_at_build = True

    gated = risk.value in approval or "act" in approval
    assert refused_at_load == refused_at_build == (needs_approval_policy(risk) and not gated)
    assert role.policies.lacks_approval("act", risk) == refused_at_load


def test_the_approval_rule_gates_write_and_external_only() -> None:
    assert {risk for risk in ToolRisk if needs_approval_policy(risk)} == {
        ToolRisk.WRITE,
        ToolRisk.EXTERNAL,
    }
    with pytest.raises(ValueError):
        needs_approval_policy("dangerous")


# ------------------------------------------------------------------- merge threshold, recall k


def test_memory_defaults_have_one_home() -> None:
    store = InMemoryStore()
    assert MemoryContext().memory_merge_threshold == DEFAULT_MERGE_THRESHOLD
    assert MemoryStore(store).similarity_threshold == DEFAULT_MERGE_THRESHOLD
    assert MemoryContext().memory_k == DEFAULT_RECALL_K
    assert inspect.signature(MemoryStore.recall).parameters["k"].default == DEFAULT_RECALL_K
    # The nodes and tools defer to the run's context instead of carrying their own number.
    for factory in (make_remember_node, memory_tools, register_memory_tools):
        assert inspect.signature(factory).parameters["similarity_threshold"].default is None
    assert inspect.signature(make_recall_node).parameters["k"].default is None


def test_memory_context_fields_are_validated() -> None:
    settings = memory_settings(Runtime(context={"memory_merge_threshold": 0.5, "memory_k": 7}))
    assert settings == MemoryContext(memory_merge_threshold=0.5, memory_k=7)
    for bad in (0, 1.5, "0.9", True):
        with pytest.raises(ValueError, match="memory_merge_threshold"):
            memory_settings(Runtime(context={"memory_merge_threshold": bad}))
    assert memory_settings(Runtime(context={"memory_merge_threshold": None})) == MemoryContext()


def _hashing_store() -> InMemoryStore:
    embeddings = HashingEmbeddings(dims=384)
    return InMemoryStore(index={"dims": 384, "embed": embeddings, "fields": ["$"]})


async def _remember_twice(store: InMemoryStore, context: dict[str, object]) -> list[str]:
    remember = make_remember_node("writer", episodes=False)
    for colour in ("blue", "green"):
        state = {
            "messages": [
                HumanMessage(f"Remember that my favourite colour is {colour}."),
                AIMessage("Noted."),
            ]
        }
        await remember(state, Runtime(context={"user_id": "alice", **context}, store=store))
    scope = MemoryScope(role="writer", user_id="alice")
    found = await MemoryStore(store).recall(scope, "favourite colour", kinds=["semantic"])
    return sorted(memory.text for memory in found)


async def test_the_context_threshold_decides_whether_facts_merge() -> None:
    # The hashing embedder scores the two wordings at about 0.83: below the default, above 0.8.
    assert 0.8 < DEFAULT_MERGE_THRESHOLD
    apart = await _remember_twice(_hashing_store(), {})
    assert apart == [
        "The user's favourite colour is blue.",
        "The user's favourite colour is green.",
    ]
    merged = await _remember_twice(_hashing_store(), {"memory_merge_threshold": 0.8})
    assert merged == ["The user's favourite colour is green."]


async def test_the_context_recall_size_bounds_the_recall_node() -> None:
    store = _hashing_store()
    memory = MemoryStore(store)
    scope = MemoryScope(role="writer", user_id="alice")
    who = Provenance(recorded_by="writer")
    for number in range(DEFAULT_RECALL_K + 3):
        await memory.write_fact(scope, f"Project {number} ships in week {number}.", provenance=who)
    recall = make_recall_node("writer", kinds=[MemoryKind.SEMANTIC], state_key="block")
    state = {"messages": [HumanMessage("When does the project ship?")]}

    async def lines(context: dict[str, object]) -> int:
        runtime = Runtime(
            context={"user_id": "alice", "memory_min_score": None, **context}, store=store
        )
        update = await recall(state, runtime)
        return len(update["block"].splitlines()) - 1  # minus the header line

    assert await lines({}) == DEFAULT_RECALL_K
    assert await lines({"memory_k": 2}) == 2
