"""The console's browser tests: one live server (API keys on) and one Chromium per session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver

from tests.support.auth.matrix import create_key
from tests.support.browser import Page, chromium, console_errors
from tests.support.server import LiveServer, fresh_database, start_server

CONFIG = Path(__file__).resolve().parents[1] / "support" / "console" / "langgraph.json"


@dataclass
class Console:
    """The server the pages talk to, and keys of its users."""

    server: LiveServer
    alice: str
    bob: str
    carol: str
    root: str
    alice_viewer: str
    """Alice's read-only key: sees her items, may not decide them."""

    def client(self, key: str) -> httpx.Client:
        """An API client signed in with ``key``."""
        return httpx.Client(base_url=self.server.url, headers={"x-api-key": key}, timeout=60)


@pytest.fixture(scope="session")
def console(database_url: str) -> Iterator[Console]:
    """A server with the desk, chat and governance graphs.

    alice and carol are approvers, bob a member, root an admin (the default organisation's
    approvals: a tool call is decided by its thread's owner or an approver, a governance change
    by an approver other than whoever proposed it).
    """
    url = fresh_database(database_url)
    server = start_server(env={"DATABASE_URL": url, "STAFFGRAPH_AUTH": "keys"}, config=CONFIG)
    try:
        yield Console(
            server,
            alice=create_key(url, "alice", "approver"),
            bob=create_key(url, "bob", "member"),
            carol=create_key(url, "carol", "approver"),
            root=create_key(url, "root", "admin"),
            alice_viewer=create_key(url, "alice", "viewer"),
        )
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the whole session."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def page(browser: webdriver.Chrome, console: Console) -> Iterator[Page]:
    """The console in the session's browser; the test fails on any console error."""
    console_errors(browser)  # what earlier tests left is theirs
    page = Page(browser, console.server.url)
    yield page
    errors = console_errors(browser)
    unexpected = [e for e in errors if not any(part in e for part in page.expected_errors)]
    assert unexpected == []
    for part in page.expected_errors:
        assert any(part in e for e in errors), f"expected a console error with {part!r}"
