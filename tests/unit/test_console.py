"""The web console's server side: its files and headers, the tool catalog, role diffs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nodes.governance import apply_change, changes_between
from server.console.catalog import tool_catalog
from server.console.inbox import _actions as inbox_actions
from server.console.roles import diff_roles
from server.console.routes import CSP, STATIC
from state.roles import Role, default_roles_dir, load_organization
from tests.support.auth.matrix import HERE, build_app
from tests.support.console.desk import desk
from tools.registry import default_registry

SCRIPTS = sorted((STATIC / "js").glob("*.js"))


@pytest.fixture(scope="module")
def client() -> TestClient:
    # The files need no database: the app is not started (no lifespan).
    return TestClient(build_app(HERE / "langgraph.json"))


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/js/app.js", "/ui/console.css"])
def test_console_files_are_served_with_a_strict_policy(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    if path.endswith(".js"):
        assert answer.headers["content-type"].startswith("text/javascript")


def test_the_policy_allows_no_inline_script_and_nothing_from_elsewhere() -> None:
    assert "script-src 'self';" in CSP and "'unsafe" not in CSP
    assert "frame-ancestors 'none'" in CSP and "default-src 'none'" in CSP


@pytest.mark.parametrize(
    "path", ["/ui/../pyproject.toml", "/ui/%2e%2e/%2e%2e/pyproject.toml", "/ui/js/missing.js"]
)
def test_nothing_outside_the_console_files_is_served(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert "pyproject" not in answer.text or "No console file" in answer.text


def test_the_page_has_no_inline_script_and_scripts_never_write_html() -> None:
    page = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all("src=" in tag for tag in scripts)
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
    assert "style=" not in page
    for script in SCRIPTS:
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name} uses {sink}"
        assert "http://" not in text and "https://" not in text, f"{script.name} calls out"


def test_the_tool_catalog_finds_every_agents_tools_with_schema_risk_and_role() -> None:
    catalog = tool_catalog(desk)
    publish = catalog["publish_note"]
    assert publish.risk == "write" and publish.roles == ["editor"]
    assert publish.schema["required"] == ["title"]
    assert publish.schema["properties"]["pinned"]["type"] == "boolean"
    assert catalog["recall"].risk == "read"


def test_changes_between_two_versions_turn_one_into_the_other() -> None:
    org = load_organization(default_roles_dir(), registry=default_registry())
    writer = org.role("writer")
    changed = apply_change(
        apply_change(
            writer,
            {
                "role": "writer",
                "attribute": "tool_grant",
                "operation": "add",
                "value": "calculator",
            },
        ),
        {"role": "writer", "attribute": "token_budget", "operation": "set", "value": "1000"},
    )
    before, after = writer.model_dump(mode="json"), changed.model_dump(mode="json")
    undo = changes_between(after, before, motivation="roll back")
    assert [(c["attribute"], c["operation"], c["value"]) for c in undo] == [
        ("tool_grant", "remove", "calculator"),
        ("token_budget", "set", str(before["policies"]["token_budget"])),
    ]
    restored: Role = changed
    for change in undo:
        restored = apply_change(restored, change)
    assert restored.model_dump(mode="json") == before
    assert changes_between(before, before) == []
    assert diff_roles(before, after) == [
        {"field": "policies.allowed_tools", "added": ["calculator"], "removed": []},
        {
            "field": "policies.token_budget",
            "before": before["policies"]["token_budget"],
            "after": 1000,
        },
    ]


def test_console_files_are_all_package_data() -> None:
    shipped = {p.relative_to(STATIC).as_posix() for p in Path(STATIC).rglob("*") if p.is_file()}
    assert {"index.html", "console.css", "favicon.svg", "js/app.js"} <= shipped
    assert all(re.fullmatch(r"[a-z]+\.(html|css|svg)|js/[a-z]+\.js", name) for name in shipped)


def test_an_inbox_item_reads_gate_policy_role_and_risk_from_the_request() -> None:
    value = {
        "action_requests": [{"name": "send_mail", "args": {"to": "x"}, "description": "Mail?"}],
        "review_configs": [{"action_name": "send_mail", "allowed_decisions": ["approve"]}],
        "metadata": {
            "gate": "tool_approval",
            "policy": "role 'clerk' requires approval for 'external'",
            "role": "clerk",
            "risks": {"send_mail": "external"},
        },
    }
    (action,) = inbox_actions(value, {}) or []
    assert action == {
        "name": "send_mail",
        "args": {"to": "x"},
        "description": "Mail?",
        "allowed_decisions": ["approve"],
        "args_schema": None,
        "risk": "external",
        "policy": "role 'clerk' requires approval for 'external'",
        "role": "clerk",
        "gate": "tool_approval",
    }
    assert inbox_actions({"question": "approve?"}, {}) is None  # not an approval request
