"""Role changes: normalising proposals, applying them, and assessing them (in-memory store)."""

from __future__ import annotations

import pytest
from langgraph.store.memory import InMemoryStore

from nodes.governance import RoleChange, apply_change, assess_change, normalise_change
from state.role_store import RoleStore
from state.roles import Organization, default_roles_dir, load_organization
from tools.registry import ToolRegistry, default_registry


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return default_registry()


@pytest.fixture(scope="module")
def org(registry: ToolRegistry) -> Organization:
    return load_organization(default_roles_dir(), registry=registry)


def change(**fields: str) -> RoleChange:
    base = {"role": "writer", "attribute": "tool_grant", "operation": "add", "value": "calculator"}
    return RoleChange(**{**base, "motivation": "", **fields})  # type: ignore[typeddict-item]


def test_normalise_names_and_prose(org: Organization, registry: ToolRegistry) -> None:
    raw = {**change(value="Calculator"), "motivation": " needs sums "}
    assert normalise_change(raw, org=org, registry=registry, tension="") == change(
        value="calculator", motivation="needs sums"
    )
    prose = {**change(value="Let the writer use the calculator tool.")}
    assert normalise_change(prose, org=org, registry=registry, tension="")["value"] == "calculator"
    with pytest.raises(ValueError, match="Invalid role change: operation"):
        normalise_change({**change(), "operation": "swap"}, org=org, registry=registry, tension="")


def test_apply_change(org: Organization) -> None:
    writer = org.role("writer")
    assert "calculator" in apply_change(writer, change()).tools
    assert (
        "brand"
        not in apply_change(
            writer, change(attribute="domains", operation="remove", value="brand")
        ).domains
    )
    assert apply_change(writer, change(attribute="token_budget", operation="set", value="5"))
    for bad, message in [
        (change(value="split_document"), "'split_document' is already in the tool_grant"),
        (change(operation="remove", value="calculator"), "'calculator' is not in the tool_grant"),
        (change(operation="set"), "tool_grant is a list: use add or remove, not set."),
        (change(attribute="purpose"), "purpose is replaced with set"),
        (
            change(attribute="token_budget", operation="set", value="lots"),
            "token_budget must be a whole number, not 'lots'.",
        ),
        (change(attribute="domains", value="Bad Name"), "is not a valid name"),
    ]:
        with pytest.raises(ValueError, match=message):
            apply_change(writer, bad)


async def test_assessment_uses_stored_versions(org: Organization, registry: ToolRegistry) -> None:
    store = RoleStore(InMemoryStore())
    first = await assess_change(change(), org=org, registry=registry, store=store)
    assert first["valid"] and first["base_version"] == 0
    assert first["affected_roles"] == ["writer", "analyst", "chief_of_staff", "compliance_officer"]

    stored = await store.apply(
        apply_change(org.role("writer"), change()), change_id="c1", base_version=0, summary="s"
    )
    assert stored["version"] == 1
    # Applying the same change id again stores nothing new.
    again = await store.apply(
        apply_change(org.role("writer"), change()), change_id="c1", base_version=0, summary="s"
    )
    assert again == stored and len(await store.versions("writer")) == 1

    second = await assess_change(change(), org=org, registry=registry, store=store)
    assert not second["valid"]
    assert second["problems"] == ["'calculator' is already in the tool_grant of 'writer'."]
    assert second["base_version"] == 1

    clash = await assess_change(
        change(role="analyst", attribute="domains", value="budget"),
        org=org,
        registry=registry,
        store=store,
    )
    assert not clash["valid"]
    assert "domain 'budget' is already owned by role 'finance'" in clash["problems"][0]

    current = await store.organization(org, registry)
    assert "calculator" in current.role("writer").tools
