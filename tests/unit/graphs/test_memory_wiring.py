"""Memory wiring of the default graphs that needs no database: contexts, grants, no-store runs."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage

import nodes
from graphs import build_chat
from graphs.chat import graph as chat_graph
from graphs.governance import graph as governance_graph
from graphs.staff import Context as StaffContext
from graphs.staff import graph as staff_graph
from graphs.supervisor import Context as SupervisorContext
from nodes.governance import RoleChange, describe_change, normalise_change
from state.errors import GraphSetupError
from state.roles import Circle, Organization, Role, default_roles_dir, load_organization
from tools.registry import default_registry

MEMORY_FIELDS = {"user_id", "org_id", "memory_k", "memory_min_score"}


def context_fields(graph: Any) -> set[str]:
    return set(graph.get_context_jsonschema()["properties"])


def test_contexts_declare_the_memory_fields() -> None:
    assert MEMORY_FIELDS <= context_fields(chat_graph)
    assert MEMORY_FIELDS | {"model", "max_rounds", "run_token_budget"} <= context_fields(
        staff_graph
    )
    assert {"user_id", "org_id"} <= context_fields(governance_graph)
    # Nested teams read the staff context as their own: it is one.
    assert issubclass(StaffContext, SupervisorContext)
    described = chat_graph.get_context_jsonschema()["properties"]["user_id"]
    assert "authenticated user" in described["description"]


async def test_default_graphs_run_without_a_store() -> None:
    result = await chat_graph.ainvoke(
        {"messages": [HumanMessage("What is 12 * (3 + 4)?")]}, context={"user_id": "alice"}
    )
    assert result["messages"][-1].content.endswith("calculator returned: 84.")
    staffed = await staff_graph.ainvoke(
        {"messages": [HumanMessage("Check this announcement for GDPR privacy risk")]},
        context={"user_id": "alice"},
    )
    assert staffed["handoffs"][0]["member"] == "compliance_officer"


async def test_recall_tool_without_a_store_tells_the_model() -> None:
    result = await chat_graph.ainvoke(
        {"messages": [HumanMessage("Recall what you know about my badge number.")]},
        context={"user_id": "alice"},
    )
    (answer,) = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert answer.name == "recall"
    assert "Long-term memory is not available: this graph has no store." in answer.content


def editor_org() -> Organization:
    editor = Role.model_validate(
        {
            "name": "editor",
            "purpose": "Keeps the team's notes.",
            "policies": {"approval_required": ["write"]},
        }
    )
    return Organization(
        circles=(Circle(name="desk", purpose="Notes.", lead="editor"),), roles=(editor,)
    )


async def test_chat_memory_tools_are_granted_with_the_role_policy() -> None:
    org = load_organization(default_roles_dir(), registry=default_registry())
    registry = default_registry()
    with pytest.raises(GraphSetupError) as caught:
        build_chat("analyst", org=org, registry=registry, memory_tools=("recall", "forget"))
    assert "grants tool 'forget' of risk 'write', but no approval policy covers it" in str(
        caught.value
    )
    with pytest.raises(GraphSetupError) as caught:
        build_chat("analyst", org=org, memory_tools=("remind",))
    assert str(caught.value) == (
        "Chat graph 'chat': memory_tools names 'remind'; choose from remember, recall, forget."
    )
    # A role whose policy has humans approve writes may have them; the caller's registry is
    # left as it was.
    build_chat("editor", org=editor_org(), registry=registry, memory_tools=("remember", "forget"))
    assert "remember" not in registry and "recall" not in registry
    # Without memory tools the role keeps exactly its own grant.
    plain = build_chat("analyst", org=org, memory=False, remember=False, memory_tools=())
    result = await plain.ainvoke(
        {"messages": [HumanMessage("Recall what you know about my badge number.")]}
    )
    assert not any(isinstance(m, ToolMessage) and m.name == "recall" for m in result["messages"])


def test_node_memory_names_are_exported() -> None:
    from nodes import memory

    for name in memory.__all__:
        assert getattr(nodes, name) is getattr(memory, name), name
        assert name in nodes.__all__


def test_instruction_changes_normalise_and_describe() -> None:
    org = load_organization(default_roles_dir(), registry=default_registry())
    registry = default_registry()
    raw = {
        "role": "writer",
        "attribute": "instructions",
        "operation": "add",
        "value": "  Cite a source  for every statistic. ",
        "motivation": "Drafts lacked sources.",
        "rule": "As the people lead I suggest: cite sources in every single draft we publish",
    }
    change = normalise_change(raw, org=org, registry=registry, tension="")
    # A prose name is replaced by one made from the instruction's key words.
    assert change == RoleChange(
        role="writer",
        attribute="instructions",
        operation="add",
        value="Cite a source for every statistic.",
        motivation="Drafts lacked sources.",
        rule="cite_source_statistic",
    )
    assert (
        normalise_change({**raw, "rule": "Cite-Sources"}, org=org, registry=registry, tension="")[
            "rule"
        ]
        == "cite_sources"
    )
    assert describe_change(change) == (
        "Give role 'writer' the instruction 'cite_source_statistic': Cite a source for every "
        "statistic."
    )
    # Role changes keep their shape: no rule key.
    grant = normalise_change(
        {**raw, "attribute": "tool_grant", "value": "calculator"},
        org=org,
        registry=registry,
        tension="",
    )
    assert "rule" not in grant
