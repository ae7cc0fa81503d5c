"""The inbox in Chromium: approvals raised by an agent's write tool, decided in the page."""

from __future__ import annotations

import time
from typing import Any

import httpx
from selenium.webdriver.common.keys import Keys

from tests.browser.conftest import CONFIG, Console
from tests.support.browser import Page


def raise_approval(client: httpx.Client, request: str) -> str:
    """Start the desk's editor on ``request`` and return its thread once it waits for approval."""
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    run = client.post(
        f"/threads/{thread_id}/runs",
        json={
            "assistant_id": "desk",
            "input": {"messages": [{"role": "user", "content": request}]},
        },
    )
    assert run.status_code == 200, run.text
    client.get(f"/threads/{thread_id}/runs/{run.json()['run_id']}/join")
    assert client.get(f"/threads/{thread_id}").json()["status"] == "interrupted"
    return thread_id


def card(page: Page, thread_id: str, *, timeout: float = 15) -> Any:
    return page.wait_for(
        f"[data-testid=approval-item][data-thread-id='{thread_id}']", timeout=timeout
    )


def settled(client: httpx.Client, thread_id: str) -> dict[str, Any]:
    """The thread once its last run ended (the page waited for it before the card went)."""
    runs = client.get(f"/threads/{thread_id}/runs").json()
    client.get(f"/threads/{thread_id}/runs/{runs[0]['run_id']}/join")
    thread: dict[str, Any] = client.get(f"/threads/{thread_id}").json()
    return thread


def tool_reply(thread: dict[str, Any]) -> str:
    (tool,) = [m for m in thread["values"]["messages"] if m["type"] == "tool"]
    return str(tool["content"])


def test_an_approval_shows_within_2s_and_one_click_completes_the_run(
    page: Page, console: Console
) -> None:
    page.open("inbox", key=console.alice)
    with console.client(console.alice) as alice:
        thread_id = raise_approval(alice, "Publish a note titled Board update")
        raised = time.monotonic()
        item = card(page, thread_id, timeout=2)
        assert time.monotonic() - raised < 2
        text = item.text
        for expected in ("publish_note", "desk", "editor", "risk: write", "alice", "Policy"):
            assert expected in text
        page.screenshot("inbox")

        page.find("[data-testid=decision-approve]", item).click()  # the only click needed
        page.gone(f"[data-testid=approval-item][data-thread-id='{thread_id}']")
        outcome = page.wait_for("[data-testid=decision-outcome][data-status=success]")
        assert "approved by alice" in outcome.text
        thread = settled(alice, thread_id)
        assert thread["status"] == "idle"
        assert tool_reply(thread) == "published Publish a note titled Board update"


def test_edit_is_checked_in_the_page_then_resumes_with_the_edited_args(
    page: Page, console: Console
) -> None:
    page.open("inbox", key=console.alice)
    with console.client(console.alice) as alice:
        thread_id = raise_approval(alice, "Publish a note titled Draft")
        item = card(page, thread_id)
        page.find("[data-testid=decision-edit]", item).click()
        editor = page.find("[data-testid=decision-args]", item)
        submit = page.find("[data-testid=decision-submit]", item)

        editor.clear()
        editor.send_keys('{"title": "unfinished')
        submit.click()
        assert "Not valid JSON" in page.wait_for(".field-error:not(:empty)", within=item).text
        editor.clear()
        editor.send_keys('{"title": 5, "colour": "red"}')
        submit.click()
        problems = page.wait_until(
            lambda d: "title" in (t := page.find(".field-error", item).text) and t
        )
        assert "title: must be string, not integer" in problems
        # Nothing was sent: the run still waits, with no new run on the thread.
        assert alice.get(f"/threads/{thread_id}").json()["status"] == "interrupted"
        assert len(alice.get(f"/threads/{thread_id}/runs").json()) == 1

        editor.clear()
        editor.send_keys('{"title": "Edited title", "pinned": true}')
        submit.click()
        page.gone(f"[data-testid=approval-item][data-thread-id='{thread_id}']")
        thread = settled(alice, thread_id)
        assert "published Edited title (pinned)" in tool_reply(thread)


def test_reject_with_a_reason_and_respond_with_a_message(page: Page, console: Console) -> None:
    page.open("inbox", key=console.alice)
    with console.client(console.alice) as alice:
        rejected = raise_approval(alice, "Publish a note titled Rumours")
        answered = raise_approval(alice, "Publish a note titled Minutes")

        item = card(page, rejected)
        page.find("[data-testid=decision-reject]", item).click()
        page.find("[data-testid=decision-reject-message]", item).send_keys(
            "Not before legal review"
        )
        page.find("[data-testid=decision-submit]", item).click()
        page.gone(f"[data-testid=approval-item][data-thread-id='{rejected}']")
        reply = tool_reply(settled(alice, rejected))
        assert "rejected" in reply and "Not before legal review" in reply

        item = card(page, answered)
        page.find("[data-testid=decision-respond]", item).click()
        page.find("[data-testid=decision-submit]", item).click()
        assert (
            "Write the answer first" in page.wait_for(".field-error:not(:empty)", within=item).text
        )
        page.find("[data-testid=decision-respond-message]", item).send_keys(
            "The minutes are already on the board."
        )
        page.find("[data-testid=decision-submit]", item).click()
        page.gone(f"[data-testid=approval-item][data-thread-id='{answered}']")
        assert tool_reply(settled(alice, answered)) == "The minutes are already on the board."


def test_another_user_sees_none_of_the_first_users_items(page: Page, console: Console) -> None:
    with console.client(console.alice) as alice, console.client(console.bob) as bob:
        thread_id = raise_approval(alice, "Publish a note titled Alice only")
        page.open("inbox", key=console.bob)
        page.wait_for("#approvals .empty")
        assert page.find_all("[data-testid=approval-item]") == []
        assert page.find("[data-testid=identity]").text == "Signed in as bob"
        assert thread_id not in page.driver.page_source
        assert bob.get("/ui/api/inbox").json() == {"items": []}
        mine = alice.get("/ui/api/inbox").json()["items"]
        assert thread_id in {i["thread_id"] for i in mine}


def test_a_decision_the_server_refuses_shows_its_reason_and_the_item_stays(
    page: Page, console: Console
) -> None:
    with console.client(console.alice) as alice:
        thread_id = raise_approval(alice, "Publish a note titled Read only")
        page.open("inbox", key=console.alice_viewer)  # alice's read-only key
        page.expect_console_error("status of 403")
        item = card(page, thread_id)
        page.find("[data-testid=decision-approve]", item).click()
        refusal = page.wait_for("[role=alert].error", within=item)
        assert refusal.text == "Refused: This key may only read (role viewer)"
        assert page.find("[data-testid=decision-approve]", item).is_enabled()
        assert alice.get(f"/threads/{thread_id}").json()["status"] == "interrupted"


def test_an_approver_sees_and_decides_another_owners_approval(page: Page, console: Console) -> None:
    with console.client(console.alice) as alice:
        thread_id = raise_approval(alice, "Publish a note titled For the approver")
        page.open("inbox", key=console.carol)
        item = card(page, thread_id)
        assert "alice" in item.text  # who started the run
        page.find("[data-testid=decision-approve]", item).click()
        page.gone(f"[data-testid=approval-item][data-thread-id='{thread_id}']")
        outcome = page.wait_for("[data-testid=decision-outcome][data-status=success]")
        assert "approved by carol" in outcome.text
        assert (
            tool_reply(settled(alice, thread_id))
            == "published Publish a note titled For the approver"
        )


def test_on_a_narrow_screen_with_the_keyboard_only(page: Page, console: Console) -> None:
    page.driver.set_window_size(390, 844)
    try:
        page.open("inbox", key=console.alice)
        with console.client(console.alice) as alice:
            thread_id = raise_approval(alice, "Publish a note titled From my phone")
            item = card(page, thread_id)
            assert page.fits_width()
            page.find("[data-testid=decision-reject]", item).send_keys(Keys.ENTER)
            reason = page.find("[data-testid=decision-reject-message]", item)
            assert page.driver.switch_to.active_element == reason  # focus moved to the field
            assert page.unlabelled_controls() == []
            reason.send_keys("Not from a phone")
            page.find("[data-testid=decision-submit]", item).send_keys(Keys.ENTER)
            page.gone(f"[data-testid=approval-item][data-thread-id='{thread_id}']")
            assert "Not from a phone" in tool_reply(settled(alice, thread_id))
        for view in ("chat", "governance"):
            page.driver.get(f"{console.server.url}/ui/#/{view}")
            page.wait_for("form")
            assert page.fits_width(), view
            assert page.unlabelled_controls() == [], view
    finally:
        page.driver.set_window_size(1280, 900)


def test_the_page_says_when_the_server_is_down(page: Page, server_factory: Any) -> None:
    server = server_factory(config=CONFIG)  # auth off: the local operator, no sign-in
    page.url = server.url
    page.open("inbox")
    assert page.find("[data-testid=identity]").text == "Signed in as local operator"
    page.wait_for("#approvals .empty")
    page.expect_console_error("ERR_CONNECTION_REFUSED")
    server.stop()
    problem = page.wait_for("[role=alert].error", timeout=10)
    assert problem.text == "Cannot reach the server: is staffgraph running? Retrying…"
    page.driver.get("about:blank")  # stop the polling before the test ends
