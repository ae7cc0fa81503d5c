"""Chat and runs in Chromium: a streamed reply with a tool call, then the run's page."""

from __future__ import annotations

from selenium.webdriver.support.ui import Select

from tests.browser.conftest import Console
from tests.support.browser import Page


def choose_assistant(page: Page, graph_id: str) -> None:
    select = Select(page.wait_for("#assistant"))
    page.wait_until(lambda d: len(select.options) >= 3, message="assistants not listed")
    (option,) = [o for o in select.options if o.text.endswith(f"({graph_id})")]
    select.select_by_visible_text(option.text)


def send(page: Page, text: str) -> None:
    page.wait_for("[data-testid=chat-input]").send_keys(text)
    page.find("[data-testid=chat-send]").click()


def test_chat_streams_a_reply_with_a_tool_call_and_its_result_then_shows_the_run(
    page: Page, console: Console
) -> None:
    page.open("chat", key=console.alice)
    choose_assistant(page, "chat")
    send(page, "What is 12 * (3 + 4)?")

    page.wait_for(".messages[data-run=finished]", timeout=30)
    call = page.wait_for("[data-testid=tool-call]")
    assert "calculator" in call.text and "12 * (3 + 4)" in call.text
    assert page.wait_for("[data-testid=tool-result]").text == "84"
    reply = page.wait_for("[data-testid=chat-message][data-type=ai] .text")
    assert "84" in reply.text
    # The reply came as a stream of several chunks, drawn as they arrived.
    chunks = page.find(".messages").get_attribute("data-streamed-chunks")
    assert chunks is not None and int(chunks) > 1
    kinds = [m.get_attribute("data-type") for m in page.find_all("[data-testid=chat-message]")]
    assert kinds == ["human", "ai", "tool", "ai"]
    page.screenshot("chat")

    thread_id = page.driver.current_url.rsplit("/", 1)[-1]
    page.driver.get(f"{console.server.url}/ui/#/runs/{thread_id}")
    assert page.wait_for("[data-testid=run-status]").text == "success"
    run = page.find("[data-testid=run]")
    assert run.get_attribute("open") is not None
    steps = page.find_all("[data-testid=timeline-step]", run)
    assert any("runs agent" in s.text for s in steps)
    usage = [r.text for r in page.find_all("[data-testid=usage-row]", run)]
    assert any(r.startswith("analyst ") for r in usage)  # per role
    assert any(r.startswith("staffgraph-offline ") for r in usage)  # per model
    page.screenshot("runs")


def test_an_approval_inline_in_chat_continues_the_conversation(
    page: Page, console: Console
) -> None:
    page.open("chat", key=console.alice)
    choose_assistant(page, "desk")
    send(page, "Publish a note titled Chat note")
    item = page.wait_for(".inline-approvals [data-testid=approval-item]")
    page.find("[data-testid=decision-approve]", item).click()
    result = page.wait_until(
        lambda d: [r.text for r in page.find_all("[data-testid=tool-result]") if r.text],
        timeout=20,
    )
    assert result == ["published Publish a note titled Chat note"]
    page.gone(".inline-approvals [data-testid=approval-item]")


def test_a_failed_run_shows_its_error(page: Page, console: Console) -> None:
    with console.client(console.alice) as alice:
        thread_id = alice.post("/threads", json={}).json()["thread_id"]
        failed = alice.post(
            f"/threads/{thread_id}/runs/wait", json={"assistant_id": "failing", "input": {"x": 1}}
        )
        assert "__error__" in failed.json()
    page.open(f"runs/{thread_id}", key=console.alice)
    assert page.wait_for("[data-testid=run-status]").text == "error"
    errors = [e.text for e in page.find_all("[role=alert].error")]
    assert errors and all("intentional failure for testing" in e for e in errors)
    assert any("ValueError" in e for e in errors)
