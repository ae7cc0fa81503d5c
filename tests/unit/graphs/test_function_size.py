"""Graph modules stay readable: no function or method in graphs/ is longer than 80 lines.

A builder that grows past it is split into named node functions (or a small class holding
them) so a reader can follow state, nodes, edges and compile from top to bottom.
"""

from __future__ import annotations

import ast
from pathlib import Path

GRAPHS = Path(__file__).resolve().parents[3] / "graphs"
MOST_LINES = 80


def long_functions(source: str, *, limit: int) -> list[tuple[str, int]]:
    """Every function (nested ones too) longer than ``limit`` lines, with its length."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                found.append((node.name, length))
    return found


def test_no_function_in_graphs_is_longer_than_80_lines() -> None:
    modules = sorted(GRAPHS.rglob("*.py"))
    assert len(modules) >= 8
    too_long = {
        f"{path.relative_to(GRAPHS.parent)}:{name}": length
        for path in modules
        for name, length in long_functions(path.read_text(), limit=MOST_LINES)
    }
    assert too_long == {}


def test_the_check_sees_long_and_nested_functions() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MOST_LINES))
    source = f"def outer():\n    async def inner():\n{body}\n    return inner\n"
    nested = source.replace("\n    x", "\n        x")
    assert long_functions(nested, limit=MOST_LINES) == [
        ("outer", MOST_LINES + 3),
        ("inner", MOST_LINES + 1),
    ]
    assert long_functions("def short():\n    return 1\n", limit=MOST_LINES) == []
