"""Roles and circles: loading, lookups and the build-time governance checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.tools import StructuredTool

from state.errors import GraphSetupError, RoleDefinitionError, RoleFileError, SetupProblem
from state.roles import (
    Circle,
    Organization,
    PiiRule,
    Role,
    default_roles_dir,
    load_organization,
    validate_organization,
)
from tools import ToolRegistry, ToolRisk, default_registry

FIXTURES = Path(__file__).parent / "roles_fixtures"


def line_of(path: Path, needle: str, *, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line of ``path`` containing ``needle``."""
    found = [
        number
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if needle in text
    ]
    return found[occurrence - 1]


def problems_of(path: Path, *, registry: ToolRegistry | None = None) -> list[str]:
    with pytest.raises(RoleDefinitionError) as caught:
        load_organization(path, registry=registry if registry is not None else default_registry())
    message = str(caught.value)
    lines = [problem.describe() for problem in caught.value.problems]
    # the exception text lists every problem, one per line
    assert message.splitlines()[1:] == [f"  - {line}" for line in lines]
    return lines


def _echo(text: str) -> str:
    """Return the text."""
    return text


def make_tool(name: str, risk: str) -> StructuredTool:
    return StructuredTool.from_function(func=_echo, name=name, metadata={"risk": risk})


# --------------------------------------------------------------------------- shipped roles


def test_shipped_organization_loads_and_validates() -> None:
    org = load_organization(default_roles_dir(), registry=default_registry())
    names = {role.name for role in org.roles}
    assert {
        "chief_of_staff",
        "researcher",
        "analyst",
        "writer",
        "compliance_officer",
        "finance",
        "people_lead",
    } <= names
    assert org.circle_tree() == {"operations": {"research": {}, "people": {}}}
    assert org.lead_of("operations").name == "chief_of_staff"
    assert org.domain_owner("budget") == org.role("finance")
    assert org.domain_owner("policy") == org.role("compliance_officer")
    assert org.domain_owner("roles") == org.role("people_lead")
    assert "calculator" in org.role("analyst").tools
    assert "calculator" in org.role("finance").tools
    registry = default_registry()
    web_roles = [role for role in org.roles if "http_get" in role.tools]
    assert web_roles
    for role in web_roles:
        assert ToolRisk.EXTERNAL in role.policies.approval_risks
        assert role.tools_requiring_approval(registry) == ["http_get"]
    # routing matches requests to descriptions, so they must be distinct and substantial
    descriptions = [role.describe() for role in org.roles]
    assert len(set(descriptions)) == len(descriptions)
    assert all(len(role.purpose) > 80 and len(role.accountabilities) >= 3 for role in org.roles)
    for role in org.roles:
        assert role.source is not None and role.source.endswith(".yaml")


def test_shipped_organization_validates_again_in_code() -> None:
    org = load_organization(default_roles_dir(), registry=default_registry())
    rebuilt = Organization(circles=org.circles, roles=org.roles)
    validate_organization(rebuilt, default_registry())


# --------------------------------------------------------------------------- lookups


def test_lookups() -> None:
    org = load_organization(default_roles_dir(), registry=default_registry())
    assert org.circle_of("analyst").name == "research"
    assert org.circle_of("chief_of_staff").name == "operations"
    assert org.parent_of("research") == org.circle("operations")
    assert org.parent_of("operations") is None
    assert [c.name for c in org.root_circles()] == ["operations"]
    assert [c.name for c in org.sub_circles("operations")] == ["research", "people"]
    assert [c.name for c in org.descendants("operations")] == ["research", "people"]
    assert [r.name for r in org.members("research")] == ["researcher", "analyst"]
    everyone = [r.name for r in org.members("operations", recursive=True)]
    assert everyone[0] == "chief_of_staff"
    assert sorted(everyone) == sorted(role.name for role in org.roles)
    assert org.is_lead("researcher") and not org.is_lead("analyst")
    assert {name: role.name for name, role in org.leads().items()} == {
        "operations": "chief_of_staff",
        "research": "researcher",
        "people": "people_lead",
    }
    assert org.has_role("writer") and not org.has_role("operations")
    assert org.has_circle("operations") and not org.has_circle("writer")
    assert [r.name for r in org.handoff_targets("researcher")] == ["analyst"]
    assert org.domain_owner("nothing") is None
    with pytest.raises(LookupError, match="No role named 'writr'. Did you mean 'writer'"):
        org.role("writr")
    with pytest.raises(LookupError, match="No circle named 'reserch'. Did you mean 'research'"):
        org.circle("reserch")


def test_handoff_to_circle_means_its_lead() -> None:
    org = Organization(
        circles=(
            Circle(name="top", purpose="Top.", lead="boss", sub_circles=("desk",)),
            Circle(name="desk", purpose="Desk.", lead="clerk", members=("typist",)),
        ),
        roles=(
            Role(
                name="boss",
                purpose="Boss.",
                handoffs=("desk",),
                policies={"handoff_circles": ["top"]},  # type: ignore[arg-type]
            ),
            Role(name="clerk", purpose="Clerk."),
            Role(name="typist", purpose="Types."),
        ),
    )
    validate_organization(org, default_registry())
    assert [r.name for r in org.handoff_targets("boss")] == ["clerk"]


def test_policies_data() -> None:
    role = Role.model_validate(
        {
            "name": "scout",
            "purpose": "Scouts.",
            "tools": ["http_get", "calculator"],
            "model": "openai:gpt-4o-mini",
            "policies": {
                "approval_required": ["external", "calculator"],
                "token_budget": 1000,
                "pii": {"email": "redact", "card": {"strategy": "mask", "detector": r"\d{16}"}},
                "content": {"banned_terms": ["secret"], "max_length": 500},
                "limits": {"model_calls_per_run": 3, "tool_calls_per_run": 4},
            },
        }
    )
    policies = role.policies
    assert role.tools == policies.allowed_tools == ("http_get", "calculator")
    assert policies.approval_risks == frozenset({ToolRisk.EXTERNAL})
    assert policies.approval_tools == frozenset({"calculator"})
    assert policies.requires_approval("http_get", "external")
    assert policies.requires_approval("calculator", ToolRisk.READ)
    assert not policies.requires_approval("document_stats", ToolRisk.READ)
    assert policies.pii["email"] == PiiRule(strategy="redact")
    assert policies.pii["card"].detector == r"\d{16}"
    assert (policies.content.max_length, policies.limits.tool_calls_per_run) == (500, 4)
    assert role.model == "openai:gpt-4o-mini"
    assert role.tools_requiring_approval(default_registry()) == ["http_get", "calculator"]


# --------------------------------------------------------------------------- file errors


def test_invalid_yaml_reports_file_and_line() -> None:
    path = FIXTURES / "invalid_yaml.yaml"
    with pytest.raises(RoleFileError) as caught:
        load_organization(path, registry=default_registry())
    error = caught.value
    assert isinstance(error, GraphSetupError)
    assert error.file == str(path)
    assert error.line == line_of(path, "domains: [budget]")
    assert str(error).startswith(f"{path}:{error.line}:")
    assert "invalid YAML" in str(error) and "Fix the syntax at this line" in str(error)


def test_duplicate_keys_and_aliases_are_refused_with_line() -> None:
    duplicate = FIXTURES / "duplicate_key.yaml"
    with pytest.raises(RoleFileError) as caught:
        load_organization(duplicate, registry=default_registry())
    assert caught.value.line == line_of(duplicate, "Runs it twice")
    assert "found duplicate key 'purpose'" in str(caught.value)
    alias = FIXTURES / "alias.yaml"
    with pytest.raises(RoleFileError) as caught:
        load_organization(alias, registry=default_registry())
    assert caught.value.line == line_of(alias, "*p")
    assert "aliases (*name) are not supported" in str(caught.value)


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(RoleFileError, match="no such file or directory"):
        load_organization(tmp_path / "absent.yaml", registry=default_registry())
    with pytest.raises(RoleFileError, match=r"no \*.yaml files in this directory"):
        load_organization(tmp_path, registry=default_registry())
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "keys.yaml").write_text("rolez: []\ncircle: {}\ncircles: []\n")
    problems = problems_of(tmp_path)
    assert problems[0] == (
        f"{tmp_path / 'empty.yaml'}: file is empty. Add a 'circle:' and 'roles:' section or "
        "delete the file."
    )
    assert problems[1] == (
        f"{tmp_path / 'keys.yaml'}:1: unknown top-level key 'rolez'. Did you mean 'roles'? "
        "Use 'circle', 'circles', 'roles' or 'approvals'."
    )
    assert any("both 'circle' and 'circles' are given" in p for p in problems)
    assert any("circle #1, field 'name': field required" in p for p in problems)
    assert any(
        f"{tmp_path / 'list.yaml'}:1: the top level must be a mapping" in p for p in problems
    )


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 1_000_001)
    with pytest.raises(RoleFileError, match="roles files may be at most 1000000 bytes"):
        load_organization(big, registry=default_registry())


def test_schema_errors_name_file_role_field_and_line() -> None:
    path = FIXTURES / "schema_errors.yaml"
    problems = problems_of(path)
    assert problems == [
        f"{path}:{line_of(path, 'polices:')}: role 'boss', field 'polices': unknown field "
        "'polices'. Did you mean 'policies'? Known fields here: name, purpose, "
        "accountabilities, domains, policies, personality, handoffs, model, tools.",
        f"{path}:{line_of(path, 'token_budget: lots')}: role 'counter', field "
        "'policies.token_budget': input should be a valid integer, unable to parse string as "
        "an integer.",
        f"{path}:{line_of(path, 'email: scramble')}: role 'counter', field "
        "'policies.pii.email.strategy': input should be 'block', 'redact', 'mask' or 'hash'.",
        f"{path}:{line_of(path, 'Bad-Name')}: role 'Bad-Name', field 'name': 'Bad-Name' is not "
        "a valid name; use lower_snake_case (a-z, 0-9, _), starting with a letter, at most 64 "
        "characters.",
        f"{path}:{line_of(path, 'Has no name')}: role #4, field 'name': field required.",
        f"{path}:{line_of(path, 'strateg:')}: role 'stylist', field 'policies.pii.email.strateg': "
        "unknown field 'strateg'. Did you mean 'strategy'? Known fields here: strategy, "
        "detector, apply_to_input, apply_to_output, apply_to_tool_results.",
        f"{path}:{line_of(path, 'tones:')}: role 'stylist', field 'personality.tones': unknown "
        "field 'tones'. Did you mean 'tone'? Known fields here: traits, tone.",
    ]


# --------------------------------------------------------------------------- governance


def test_unknown_tool_grant() -> None:
    path = FIXTURES / "unknown_tool.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, '- calculater')}: role 'boss', field 'tools[1]': grants tool "
        "'calculater', which is not in the tool registry. Did you mean 'calculator'? Register "
        "the tool on the ToolRegistry passed to load_organization, or remove it from the grant."
    ]


def test_risky_tool_without_approval_policy() -> None:
    path = FIXTURES / "unapproved_tool.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'approval_required')}: role 'scout', field "
        "'policies.approval_required': grants tool 'http_get' of risk 'external', but no "
        "approval policy covers it. Add 'external' (or 'http_get') to "
        "policies.approval_required so a human approves each call."
    ]


def test_write_tool_needs_approval_and_custom_tools_register() -> None:
    path = FIXTURES / "custom_tool.yaml"
    # Without the user's tool in the registry both grants are unknown.
    problems = problems_of(path)
    assert any("role 'boss', field 'tools[0]': grants tool 'save_note'" in p for p in problems)
    assert any(
        "role 'clerk', field 'policies.allowed_tools[0]': grants tool 'save_note'" in p
        for p in problems
    )
    registry = default_registry()
    registry.register(make_tool("save_note", "write"))
    # boss has no approval policy for a write tool; clerk names the tool itself.
    assert problems_of(path, registry=registry) == [
        f"{path}:{line_of(path, 'tools: [save_note]')}: role 'boss', field "
        "'policies.approval_required': grants tool 'save_note' of risk 'write', but no "
        "approval policy covers it. Add 'write' (or 'save_note') to "
        "policies.approval_required so a human approves each call."
    ]
    reader = default_registry()
    reader.register(make_tool("save_note", "read"))
    org = load_organization(path, registry=reader)
    assert org.role("clerk").tools_requiring_approval(reader) == ["save_note"]
    assert org.role("boss").tools_requiring_approval(reader) == []


def test_handoff_outside_allowed_circles() -> None:
    path = FIXTURES / "handoff_outside.yaml"
    line = line_of(path, "handoffs:")
    assert problems_of(path) == [
        f"{path}:{line}: role 'greeter', field 'handoffs[0]': hands off to 'greeter_helper', "
        "which is neither a role nor a circle. Did you mean 'greeter'? Fix the name or define "
        "the role.",
        f"{path}:{line}: role 'greeter', field 'handoffs[1]': hands off to role 'worker' in "
        "circle 'back', outside the circles this role may hand off to "
        "(policies.handoff_circles: front). Add 'back' (or a circle above it) to "
        "policies.handoff_circles, or remove the handoff.",
    ]


def test_name_collisions_across_files() -> None:
    directory = FIXTURES / "collisions"
    a, b = directory / "a.yaml", directory / "b.yaml"
    problems = problems_of(directory)
    assert (
        f"{b}:{line_of(b, '- name: writer')}: role 'writer', field 'name': role name 'writer' "
        f"is already used by the role defined in {a}:{line_of(a, '- name: writer')}. Rename "
        "one of them or delete the duplicate."
    ) in problems
    assert (
        f"{b}:{line_of(b, '- name: alpha')}: circle 'alpha', field 'name': circle name 'alpha' "
        f"is already used by the circle defined in {a}:1. Rename one of them or delete the "
        "duplicate."
    ) in problems
    assert (
        f"{b}:{line_of(b, '- name: beta')}: circle 'beta', field 'name': 'beta' names both "
        f"this circle and the role defined in {a}:{line_of(a, '- name: beta')}. Rename one: "
        "handoffs and routing refer to roles and circles by name."
    ) in problems


def test_domain_owned_by_two_roles() -> None:
    path = FIXTURES / "shared_domain.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, '- budget')}: role 'treasurer', field 'domains[1]': domain "
        f"'budget' is already owned by role 'boss' (in {path}:{line_of(path, 'name: boss')}); "
        "a domain has exactly one owner. Remove it from one of the roles."
    ]


def test_unknown_lead_member_and_sub_circle() -> None:
    path = FIXTURES / "unknown_members.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'lead: bos')}: circle 'team', field 'lead': lead 'bos' is not "
        "a defined role. Did you mean 'boss'? Define the role or name an existing one as lead.",
        f"{path}:{line_of(path, 'members:')}: circle 'team', field 'members[1]': member "
        "'helper' is not a defined role. Define the role or remove it from members.",
        f"{path}:{line_of(path, 'sub_circles')}: circle 'team', field 'sub_circles[0]': "
        "sub-circle 'subteam' is not a defined circle. Did you mean 'team'? Define the circle "
        "or remove it from sub_circles.",
        f"{path}:{line_of(path, 'name: loner')}: role 'loner', field 'name': role 'loner' "
        "belongs to no circle. Add it to a circle's lead or members.",
    ]


def test_sub_circle_cycle() -> None:
    path = FIXTURES / "cycle.yaml"
    problems = problems_of(path)
    assert (
        f"{path}:{line_of(path, 'sub_circles: [bottom]')}: circle 'middle', field "
        "'sub_circles': sub-circles form a cycle: middle -> bottom -> middle. Remove one of "
        "these sub_circles entries so circles form a tree."
    ) in problems
    assert (
        f"{path}:{line_of(path, 'sub_circles: [middle]', occurrence=2)}: circle 'bottom', "
        "field 'sub_circles[0]': circle 'middle' is already a sub-circle of 'top'; circles "
        "form a tree. List it under one parent only."
    ) in problems


def test_cycles_and_self_loops_in_code_are_reported_once() -> None:
    org = Organization(
        circles=(
            Circle(name="a", purpose="A.", lead="ra", sub_circles=("b",)),
            Circle(name="b", purpose="B.", lead="rb", sub_circles=("a",)),
            Circle(name="c", purpose="C.", lead="rc", sub_circles=("c",)),
        ),
        roles=(
            Role(name="ra", purpose="A."),
            Role(name="rb", purpose="B."),
            Role(name="rc", purpose="C."),
        ),
    )
    with pytest.raises(RoleDefinitionError) as caught:
        validate_organization(org, default_registry())
    assert [problem.describe() for problem in caught.value.problems] == [
        "<organization>: circle 'a', field 'sub_circles': sub-circles form a cycle: a -> b -> a. "
        "Remove one of these sub_circles entries so circles form a tree.",
        "<organization>: circle 'c', field 'sub_circles': sub-circles form a cycle: c -> c. "
        "Remove one of these sub_circles entries so circles form a tree.",
    ]
    # lookups stay finite on a cyclic organisation
    assert [c.name for c in org.descendants("a")] == ["b"]
    assert org.descendants("c") == []
    assert org.circle_tree() == {"c": {}}  # a self-loop does not make c its own parent


def test_custom_pii_type_needs_detector() -> None:
    path = FIXTURES / "pii_custom.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'api_key')}: role 'boss', field 'policies.pii.api_key': PII "
        "type 'api_key' is not built in (email, credit_card, ip, mac_address, url) and has no "
        "detector. Give it a 'detector' regular expression or use a built-in type."
    ]


def test_all_problems_are_reported_together() -> None:
    path = FIXTURES / "many_problems.yaml"
    problems = problems_of(path)
    assert len(problems) == 4
    assert [p.split(": ", 2)[1] for p in problems] == [
        "circle 'team', field 'members[1]'",
        "role 'scout', field 'domains[0]'",
        "role 'boss', field 'tools[1]'",
        "role 'scout', field 'policies.approval_required'",
    ]
    assert all(p.startswith(f"{path}:") for p in problems)
    with pytest.raises(RoleDefinitionError, match="^Organization definition has 4 problems:"):
        load_organization(path, registry=default_registry())


def test_grant_given_twice_is_a_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(
        "circle: {name: team, purpose: T., lead: boss}\n"
        "roles:\n"
        "  - name: boss\n"
        "    purpose: Boss.\n"
        "    tools: [calculator]\n"
        "    policies: {allowed_tools: [calculator]}\n"
    )
    assert problems_of(path) == [
        f"{path}:3: role 'boss': give the tool grant once: either 'tools' or "
        "'policies.allowed_tools', not both."
    ]


def test_setup_problem_without_location() -> None:
    problem = SetupProblem(message="something is off.", hint="Fix it.")
    assert problem.describe() == "<organization>: something is off. Fix it."
    with pytest.raises(ValueError):
        RoleDefinitionError([])
