"""Governance in Chromium: a change proposed and approved in the page becomes a role version
with its diff; rolling it back goes through the same approval."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import Console
from tests.support.browser import Page

TENSION = "Grant the writer the calculator so it can check figures in drafts"


def approve_pending(page: Page, console: Console, action: str = "change_role") -> None:
    """As carol (an approver, not the proposer), approve the one governance change waiting."""
    page.open("governance", key=console.carol)
    item = page.wait_for("#governance-pending [data-testid=approval-item]", timeout=20)
    assert action in item.text and "writer" in item.text
    page.find("[data-testid=decision-approve]", item).click()
    page.gone("#governance-pending [data-testid=approval-item]", timeout=20)


def version(page: Page, number: int) -> Any:
    return page.wait_for(
        f"[data-testid=role-history][data-role=writer] [data-testid=role-version]"
        f"[data-version='{number}']",
        timeout=20,
    )


def test_a_change_approved_in_the_page_becomes_a_role_version_with_its_diff(
    page: Page, console: Console
) -> None:
    page.open("governance", key=console.alice)
    page.wait_for("[data-testid=governance-tension]").send_keys(TENSION)
    page.find("[data-testid=governance-propose]").click()
    page.wait_for(".notice")
    # Separation of duties: the proposer may not approve it; the page says why.
    item = page.wait_for("#governance-pending [data-testid=approval-item]", timeout=20)
    page.expect_console_error("status of 403")
    page.find("[data-testid=decision-approve]", item).click()
    refusal = page.wait_for("[role=alert].error", within=item).text
    assert refusal.startswith("Refused: You may not answer approval gate 'governance_approval'")

    approve_pending(page, console)
    first = version(page, 1)
    diff = page.find("[data-testid=role-diff]", first).text
    assert "+ policies.allowed_tools: calculator" in diff
    assert "Approved by\ncarol" in first.text
    page.screenshot("governance")
    page.open("governance", key=console.alice)
    proposal = page.wait_for("[data-testid=governance-proposal]")
    assert "applied as version 1" in proposal.text and "Decided by\ncarol" in proposal.text

    # Roll back: proposed by alice, approved by carol, stored as version 2.
    version(page, 1)
    page.find("[data-testid=role-rollback]").click()
    page.wait_for(".notice")
    approve_pending(page, console)
    second = version(page, 2)
    assert (
        "− policies.allowed_tools: calculator" in page.find("[data-testid=role-diff]", second).text
    )
    with console.client(console.alice) as alice:
        roles = alice.get("/ui/api/roles").json()["roles"]
    (writer,) = [r for r in roles if r["role"] == "writer"]
    assert writer["current"] == 2
    assert "calculator" not in writer["versions"][2]["definition"]["policies"]["allowed_tools"]


def test_an_instruction_approved_in_the_page_shows_as_an_approved_version(
    page: Page, console: Console
) -> None:
    page.open("governance", key=console.alice)
    page.wait_for("[data-testid=governance-tension]").send_keys(
        "Writer drafts quote statistics without sources: add an instruction for the writer to "
        "cite sources"
    )
    page.find("[data-testid=governance-propose]").click()
    pending = page.wait_for("[data-testid=instruction-version][data-status=pending]", timeout=20)
    assert "Version 1" in pending.text

    approve_pending(page, console, action="add_instruction")
    approved = page.wait_for("[data-testid=instruction-version][data-status=approved]", timeout=20)
    assert "Decided by\ncarol" in approved.text
    assert "source" in approved.text
