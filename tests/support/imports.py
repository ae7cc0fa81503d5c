"""What a piece of code imports, seen from a fresh interpreter (start-up weight checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable

from tests.support.server import REPO

__all__ = ["modules_loaded_by"]


def modules_loaded_by(code: str, packages: Iterable[str]) -> list[str]:
    """Run ``code`` in a new interpreter (this Python, at the repository's root) and return the
    modules of ``packages`` (each a module or package name, its submodules included) that were
    loaded when it finished, sorted.

    Raises:
        AssertionError: ``code`` failed (its stderr is the message).
    """
    names = sorted(set(packages))
    probe = (
        f"{code}\n"
        "import json, sys\n"
        f"names = {names!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "                        if any(m == n or m.startswith(n + '.') for n in names))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded
