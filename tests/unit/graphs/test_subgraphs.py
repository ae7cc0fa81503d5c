"""Members and circles are subgraphs LangGraph sees: drawings, listings, inner interrupts."""

from __future__ import annotations

from typing import Any

import pytest

from graphs import governance, parallel, pipeline, reflective, staff, supervisor
from nodes.team import INTERRUPTS_KEY, inner_interrupts, interrupts_configurable

MULTI_AGENT = {
    "supervisor": (supervisor.graph, {"writer", "analyst", "finance"}),
    "pipeline": (pipeline.graph, {"draft", "compliance"}),
    "parallel": (parallel.graph, {"analyst", "writer", "compliance_officer"}),
    "reflective": (reflective.graph, {"act"}),
    "staff": (
        staff.graph,
        {
            "chief_of_staff",
            "writer",
            "compliance_officer",
            "finance",
            "research",
            "research|researcher",
            "research|analyst",
            "people",
        },
    ),
}


def node_ids(graph: Any, xray: int) -> set[str]:
    return set(graph.get_graph(xray=xray).nodes)


@pytest.mark.parametrize("name", sorted(MULTI_AGENT))
def test_every_member_is_a_subgraph(name: str) -> None:
    graph, members = MULTI_AGENT[name]
    assert {ns for ns, _ in graph.get_subgraphs(recurse=True)} == members


@pytest.mark.parametrize("name", sorted(MULTI_AGENT))
def test_xray_draws_each_members_agent_nodes(name: str) -> None:
    graph, members = MULTI_AGENT[name]
    plain, deep = node_ids(graph, 0), node_ids(graph, 2)
    assert len(deep) > len(plain)
    for member in members:
        # A role agent's model node, or a nested circle's lead, drawn under the member.
        inner = {f"{member.replace('|', ':')}:model", f"{member.replace('|', ':')}:lead"}
        assert inner & deep, f"{name}: no inner node of {member} in the xray drawing"


def test_staff_draws_nested_circles_only_at_depth_two() -> None:
    one, two = node_ids(staff.graph, 1), node_ids(staff.graph, 2)
    assert "research:lead" in one and "research:researcher" in one
    assert "research:researcher:model" not in one
    assert {"research:researcher:model", "research:analyst:tools"} <= two


def test_governance_has_no_members() -> None:
    assert list(governance.graph.get_subgraphs()) == []


def test_only_names_inside_members_are_carried_down() -> None:
    assert interrupts_configurable(["lead", "writer:model"], "*") == {
        INTERRUPTS_KEY: {"before": ["writer:model"]}
    }
    assert interrupts_configurable(["lead"], None) == {}
    assert interrupts_configurable(None, ["research:researcher:tools"]) == {
        INTERRUPTS_KEY: {"after": ["research:researcher:tools"]}
    }


def config_at(namespace: str, before: list[str], after: list[str] = []) -> Any:  # noqa: B006
    return {
        "configurable": {
            "checkpoint_ns": namespace,
            INTERRUPTS_KEY: {"before": before, "after": after},
        }
    }


def test_a_member_gets_the_names_of_its_own_nodes() -> None:
    wanted = ["writer:model", "research:lead", "research:researcher:tools", "writer"]
    assert inner_interrupts(config_at("writer:1f0a", wanted)) == {"interrupt_before": ["model"]}
    assert inner_interrupts(config_at("research:9c1d", wanted, ["research:lead"])) == {
        "interrupt_before": ["lead"],
        "interrupt_after": ["lead"],
    }
    nested = config_at("research:9c1d|researcher:77ab", wanted)
    assert inner_interrupts(nested) == {"interrupt_before": ["tools"]}
    assert inner_interrupts(config_at("finance:3e", wanted)) == {}
    assert inner_interrupts({"configurable": {"checkpoint_ns": "writer:1"}}) == {}
