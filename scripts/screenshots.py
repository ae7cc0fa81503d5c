"""Redraw the console screenshots in docs/console/ with the browser tests that make them.

    python -m scripts.screenshots

Runs ``tests/browser`` (a live server with the offline model and headless Chromium; see
``tests/support/browser.py``) with ``STAFFGRAPH_SCREENSHOTS=docs/console``: the inbox, chat,
runs and governance pages are saved as the tests see them. The README shows them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "console"


def main() -> int:
    """Run the browser tests with screenshots on; their exit status."""
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "STAFFGRAPH_SCREENSHOTS": str(OUT)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/browser"]
    return subprocess.run(command, cwd=REPO, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
