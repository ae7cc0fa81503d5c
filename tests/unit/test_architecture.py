"""The shape of the code base: layers that point one way, and modules small enough to read.

The layer contract lives in ``pyproject.toml`` (``[tool.importlinter]``) and runs in ``make
lint``; these tests show that it holds on this tree and that it does catch an upward import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("graphs", "nodes", "tools", "state", "server")
MAX_MODULE_LINES = 500
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in (*PRODUCT, "bench", "scripts", "tests"):
        shutil.copytree(ROOT / package, target / package, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")


def test_layer_contract_holds() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward", "message"),
    [
        ("state/errors.py", "import server", "state is not allowed to import server"),
        ("tools/calculator.py", "import nodes.agent", "tools is not allowed to import nodes"),
        ("nodes/budget.py", "from graphs import chat", "nodes is not allowed to import graphs"),
        ("bench/server_bench.py", "import tests.support.sse", "bench is not allowed to import"),
        ("server/app.py", "import scripts.draw_graphs", "server is not allowed to import scripts"),
    ],
)
def test_layer_contract_fails_on_an_upward_import(
    tmp_path: Path, module: str, upward: str, message: str
) -> None:
    _copy_tree(tmp_path)
    with (tmp_path / module).open("a", encoding="utf-8") as handle:
        handle.write(f"\n{upward}  # noqa: E402, F401\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert message in result.stdout
    assert "BROKEN" in result.stdout


def _product_modules() -> list[Path]:
    return sorted(path for package in PRODUCT for path in (ROOT / package).rglob("*.py"))


def test_no_product_module_exceeds_the_line_limit() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in _product_modules()
    }
    assert len(sizes) > 50  # the walk found the product, not an empty directory
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not too_long, (
        f"modules over {MAX_MODULE_LINES} lines (split them into a package of cohesive "
        f"files): {too_long}"
    )
