"""Build-time errors: every policy problem a builder can hit, with its exact message."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

from graphs import (
    Stage,
    build_chat,
    build_governance,
    build_parallel,
    build_pipeline,
    build_reflective,
    build_staff,
    build_supervisor,
)
from nodes.agent import build_role_agent
from nodes.critic import Criterion
from nodes.policy import ContentPolicy
from nodes.team import Member
from state.errors import GraphSetupError, RoleDefinitionError
from state.roles import Circle, Organization, Role, default_roles_dir, load_organization
from tools.registry import default_registry


def role(name: str, **fields: Any) -> Role:
    return Role.model_validate({"name": name, "purpose": f"The {name}.", **fields})


def echo(name: str) -> Member:
    return Member(name, f"The {name}.", RunnableLambda(lambda payload: payload))


CRITERIA = (Criterion(name="ok", description="Is fine."),)


@pytest.fixture(scope="module")
def org() -> Organization:
    return load_organization(default_roles_dir(), registry=default_registry())


# --------------------------------------------------------------- roles and organisations


def test_role_agent_refuses_an_unknown_tool() -> None:
    with pytest.raises(GraphSetupError) as caught:
        build_role_agent(role("clerk", tools=["calculater"]))
    assert str(caught.value) == (
        "Role 'clerk', field 'policies.allowed_tools': grants tool 'calculater', which is not "
        "in the tool registry. Did you mean 'calculator'? Register it or remove it from the "
        "grant."
    )


def test_role_agent_refuses_a_risky_tool_without_approval() -> None:
    with pytest.raises(GraphSetupError) as caught:
        build_role_agent(role("scout", tools=["http_get"]))
    assert str(caught.value) == (
        "Role 'scout', field 'policies.approval_required': grants tool 'http_get' of risk "
        "'external', but no approval policy covers it. Add 'external' (or 'http_get') to "
        "policies.approval_required."
    )


def organisation(*roles: Role, circles: tuple[Circle, ...] | None = None) -> Organization:
    if circles is None:
        circles = (
            Circle(
                name="team",
                purpose="Work.",
                lead=roles[0].name,
                members=tuple(r.name for r in roles[1:]),
            ),
        )
    return Organization(circles=circles, roles=roles)


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (
            (role("lead", tools=["calculater"]),),
            "<organization>: role 'lead', field 'policies.allowed_tools[0]': grants tool "
            "'calculater', which is not in the tool registry. Did you mean 'calculator'?",
        ),
        (
            (role("lead", tools=["http_get"]),),
            "<organization>: role 'lead', field 'policies.approval_required': grants tool "
            "'http_get' of risk 'external', but no approval policy covers it.",
        ),
        (
            (role("lead", domains=["budget"]), role("other", domains=["budget"])),
            "<organization>: role 'other', field 'domains[0]': domain 'budget' is already "
            "owned by role 'lead' (in code); a domain has exactly one owner.",
        ),
        (
            (role("lead"), role("lead")),
            "<organization>: role 'lead', field 'name': role name 'lead' is already used by "
            "the role defined in code.",
        ),
    ],
    ids=["unknown_tool", "risky_tool", "domain_twice", "name_collision"],
)
def test_staff_refuses_an_invalid_organisation(roles: tuple[Role, ...], message: str) -> None:
    with pytest.raises(RoleDefinitionError) as caught:
        build_staff(organisation(*roles))
    assert message in str(caught.value)


def test_staff_refuses_a_handoff_outside_the_allowed_circles() -> None:
    lead = role("lead", handoffs=["auditor"], policies={"handoff_circles": ["team"]})
    auditor = role("auditor")
    circles = (
        Circle(name="team", purpose="Work.", lead="lead"),
        Circle(name="audit", purpose="Check.", lead="auditor"),
    )
    with pytest.raises(RoleDefinitionError) as caught:
        build_staff(Organization(circles=circles, roles=(lead, auditor)))
    assert (
        "role 'lead', field 'handoffs[0]': hands off to role 'auditor' in circle 'audit', "
        "outside the circles this role may hand off to (policies.handoff_circles: team)."
    ) in str(caught.value)


def test_staff_needs_exactly_one_top_circle() -> None:
    circles = (
        Circle(name="team", purpose="Work.", lead="lead"),
        Circle(name="audit", purpose="Check.", lead="auditor"),
    )
    with pytest.raises(GraphSetupError) as caught:
        build_staff(Organization(circles=circles, roles=(role("lead"), role("auditor"))))
    assert str(caught.value) == (
        "Staff needs exactly one top circle to lead the organisation; found: team, audit. "
        "Make the others sub_circles of one circle."
    )


# --------------------------------------------------------------------------- supervisor


def test_supervisor_refuses_a_member_outside_the_leads_circles(org: Organization) -> None:
    finance = org.role("finance")  # may hand off within 'research' only
    writer = Member.from_role(org.role("writer"))
    with pytest.raises(GraphSetupError) as caught:
        build_supervisor([writer], lead=finance, org=org)
    assert str(caught.value) == (
        "Role 'finance', field 'policies.handoff_circles': may not hand off to 'writer' in "
        "circle 'operations' (allowed circles: research). Add 'operations' to its "
        "handoff_circles or remove the member."
    )


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([], "Supervisor 'supervisor' needs at least one member to delegate to."),
        (
            [echo("scribe"), echo("scribe")],
            "Supervisor 'supervisor': two members are named 'scribe'; names must be unique.",
        ),
        (
            [echo("lead")],
            "Supervisor 'supervisor': member name 'lead' is used by the graph itself "
            "(__end__, __start__, budget_guard, intake, lead); rename the member.",
        ),
        (
            [echo("Scribe")],
            "Supervisor 'supervisor': member name 'Scribe' is not lower_snake_case; rename it.",
        ),
    ],
    ids=["empty", "duplicate", "reserved", "bad_name"],
)
def test_supervisor_refuses_bad_teams(members: list[Member], message: str) -> None:
    with pytest.raises(GraphSetupError) as caught:
        build_supervisor(members)
    assert str(caught.value) == message


# --------------------------------------------------------------- pipeline, parallel, loop


def test_pipeline_refusals() -> None:
    with pytest.raises(GraphSetupError, match=r"^Pipeline 'pipeline' needs at least one Stage\.$"):
        build_pipeline([])
    stage = Stage(name="draft", member=echo("scribe"), instructions="Draft.", criteria=CRITERIA)
    with pytest.raises(GraphSetupError) as caught:
        build_pipeline([stage, stage])
    assert str(caught.value) == "Pipeline 'pipeline' has two stages named 'draft'."
    bare = Stage(name="draft", member=echo("scribe"), instructions="Draft.", criteria=())
    with pytest.raises(GraphSetupError) as caught:
        build_pipeline([bare])
    assert str(caught.value) == (
        "Pipeline 'pipeline', stage 'draft' needs at least one Criterion to review against."
    )


def test_criteria_refusals() -> None:
    with pytest.raises(GraphSetupError) as caught:
        Criterion(name="ok", description="Fine.", threshold=1.5)
    assert str(caught.value) == "Criterion 'ok' has threshold 1.5; use a value in [0, 1]."
    with pytest.raises(GraphSetupError) as caught:
        Criterion(name="Not OK", description="Fine.")
    assert str(caught.value) == (
        "Criterion name 'Not OK' is not lower_snake_case (a-z, 0-9, _); rename it."
    )
    with pytest.raises(GraphSetupError) as caught:
        build_reflective(echo("scribe"), [CRITERIA[0], CRITERIA[0]])
    assert str(caught.value) == (
        "Reflective graph 'reflective' has two criteria named 'ok'; names must be unique."
    )
    with pytest.raises(GraphSetupError) as caught:
        build_reflective(echo("scribe"), [])
    assert str(caught.value) == (
        "Reflective graph 'reflective' needs at least one Criterion to review against."
    )


def test_parallel_needs_specialists() -> None:
    with pytest.raises(GraphSetupError) as caught:
        build_parallel([])
    assert (
        str(caught.value) == "Parallel graph 'parallel' needs at least one member to delegate to."
    )


# ------------------------------------------------------------------- chat and governance


def test_chat_refusals(org: Organization) -> None:
    with pytest.raises(GraphSetupError) as caught:
        build_chat("writter", org=org)
    assert str(caught.value) == "Chat graph 'chat': No role named 'writter'. Did you mean 'writer'?"
    reckless = organisation(role("scout", tools=["http_get"]))
    with pytest.raises(GraphSetupError, match="grants tool 'http_get' of risk 'external'"):
        build_chat("scout", org=reckless, registry=default_registry())


def test_governance_needs_a_proposer() -> None:
    with pytest.raises(GraphSetupError) as caught:
        build_governance(organisation(role("lead")))
    assert str(caught.value) == (
        "Governance graph 'governance': no role owns the 'roles' domain; give one role "
        "domains: [roles] or pass proposer=..."
    )
    with pytest.raises(GraphSetupError) as caught:
        build_governance(organisation(role("lead")), proposer="nobody")
    assert str(caught.value) == "Governance graph 'governance': proposer 'nobody' is not a role."


def test_content_policy_refusals() -> None:
    with pytest.raises(GraphSetupError) as caught:
        ContentPolicy(pii=("passport",))
    assert str(caught.value) == (
        "Content policy names PII type 'passport', which is not built in (email, credit_card, "
        "ip, mac_address, url) and has no detector; add one to 'detectors'."
    )
    with pytest.raises(GraphSetupError, match="detector for 'passport' is not a valid regular"):
        ContentPolicy(pii=("passport",), detectors={"passport": "([A-Z"})


def test_default_graphs_compile_without_persistence() -> None:
    from graphs import chat, governance, parallel, pipeline, reflective, staff, supervisor

    nodes = {}
    for module in (supervisor, pipeline, parallel, reflective, staff, governance, chat):
        graph = module.graph
        assert graph.checkpointer is None and graph.store is None
        # Our nodes, without __start__ and LangGraph's error-handler nodes.
        nodes[graph.name] = sum(1 for name in graph.nodes if not name.startswith("__"))
    assert nodes == {
        "supervisor": 6,
        "pipeline": 6,
        "parallel": 5,
        "reflective": 4,
        "staff": 9,
        "governance": 7,
        "chat": 2,
    }
