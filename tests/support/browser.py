"""A headless Chromium driven by Selenium, for the console's browser tests.

The system's Chromium and chromedriver are used (``make test`` installs Debian's ``chromium``
and ``chromium-driver`` when missing); nothing is downloaded at run time. Every message the
page logs at error level fails the test that caused it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("STAFFGRAPH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STAFFGRAPH_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = os.environ.get("STAFFGRAPH_SCREENSHOTS")
"""Where the tests save their screenshots (``python -m scripts.screenshots`` sets ``docs/``)."""


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(path)):
            return path
    return None


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium (fails the test, never skips it, when it is not installed)."""
    missing = _missing()
    if missing is not None:
        pytest.fail(
            f"{missing} is missing: `make test` installs it (apt-get install chromium "
            "chromium-driver), or set STAFFGRAPH_CHROMIUM / STAFFGRAPH_CHROMEDRIVER"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="staffgraph-chromium-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Error-level messages the page logged since the last call (network failures included)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


_UNLABELLED = """
const out = [];
for (const el of document.querySelectorAll("input, select, textarea, button")) {
  if (el.type === "hidden" || !el.offsetParent) continue;
  const named = (el.labels && el.labels.length) || el.getAttribute("aria-label")
    || el.getAttribute("aria-labelledby") || (el.tagName === "BUTTON" && el.textContent.trim());
  if (!named) out.push(el.outerHTML.slice(0, 120));
}
return out;
"""


class Page:
    """The console in the session's browser, signed in as one user."""

    def __init__(self, driver: webdriver.Chrome, url: str) -> None:
        self.driver = driver
        self.url = url
        self.expected_errors: list[str] = []
        """Parts of console errors a test provokes on purpose (each must then appear)."""

    def expect_console_error(self, part: str) -> None:
        """Allow (and require) one console error containing ``part``, e.g. a refused request."""
        self.expected_errors.append(part)

    def open(self, view: str = "inbox", *, key: str | None = None) -> None:
        """Load ``/ui/#/<view>`` signed in with ``key`` (through the sign-in form)."""
        # A page without scripts of the same origin, so no earlier console is left polling.
        self.driver.get(f"{self.url}/ok")
        self.driver.execute_script("sessionStorage.clear(); localStorage.clear();")
        self.driver.get(f"{self.url}/ui/#/{view}")
        if key is not None:
            field = self.wait_for("[data-testid=api-key]")
            field.send_keys(key)
            self.find("[data-testid=sign-in]").click()
        self.wait_for("[data-testid=identity]")

    def find(self, css: str, within: WebElement | None = None) -> WebElement:
        """The first element matching ``css``."""
        return (within or self.driver).find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str, within: WebElement | None = None) -> list[WebElement]:
        """Every element matching ``css``."""
        return (within or self.driver).find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, css: str, *, timeout: float = 15, within: WebElement | None = None) -> Any:
        """Wait until an element matching ``css`` is shown and return it."""

        def shown(_: Any) -> WebElement | bool:
            for element in self.find_all(css, within):
                if element.is_displayed():
                    return element
            return False

        return self.wait_until(shown, timeout=timeout, message=f"nothing matching {css}")

    def wait_until(self, condition: Any, *, timeout: float = 15, message: str = "") -> Any:
        """Wait until ``condition(driver)`` is truthy and return its value."""
        # The page redraws lists as data arrives: an element read mid-redraw is simply retried.
        wait = WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=(StaleElementReferenceException,),
        )
        return wait.until(condition, f"{message} (waited {timeout}s)")

    def gone(self, css: str, *, timeout: float = 15) -> None:
        """Wait until nothing matches ``css``."""
        self.wait_until(lambda d: not self.find_all(css), timeout=timeout, message=f"{css} stays")

    def unlabelled_controls(self) -> list[str]:
        """Form controls and buttons on the page without an accessible name (should be none)."""
        return list(self.driver.execute_script(_UNLABELLED))

    def fits_width(self) -> bool:
        """Whether the page fits the window's width (no sideways scrolling)."""
        return bool(
            self.driver.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth"
            )
        )

    def screenshot(self, name: str) -> None:
        """Save the viewport as ``<name>.png`` when screenshots are asked for."""
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))
