"""The architecture page and the README point only at things that exist inside the repository."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from scripts.draw_graphs import served_graphs

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# A backticked repo path: `server/runtime/sse.py`, `docs/graphs/`, `langgraph.json`.
PATH = re.compile(r"`((?:[a-z_]+/)+(?:[a-z_0-9]+\.(?:py|md|json|yaml|sql|toml))?|[a-z_]+\.json)`")
# A backticked dotted name in one of our packages: `nodes.team.member_node`, `state.roles`.
DOTTED = re.compile(r"`((?:state|tools|nodes|graphs|server|scripts)(?:\.[A-Za-z_]\w*)+)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def paths_named(text: str) -> set[str]:
    return {m.group(1) for m in PATH.finditer(text)}


def test_every_path_the_architecture_page_names_exists() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    named = paths_named(text)
    assert len(named) >= 20  # the page names where things live
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert missing == []


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module, or an attribute path inside the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def test_every_dotted_name_the_architecture_page_gives_exists() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    named = {m.group(1) for m in DOTTED.finditer(text)}
    assert len(named) >= 15
    assert sorted(n for n in named if not resolves(n)) == []


def test_the_node_count_table_matches_the_compiled_graphs() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| (\d+) \| (\d+) \|", text, flags=re.M)
    graphs = served_graphs()
    assert {name for name, *_ in rows} == set(graphs)
    for name, *counts in rows:
        drawn = [len(graphs[name].get_graph(xray=xray).nodes) for xray in (0, 1, 2)]
        assert drawn == [int(c) for c in counts], name


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_stay_inside_the_repository(doc: Path) -> None:
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not files
            continue
        resolved = (doc.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{doc.name} links outside the repo: {target}"
        assert resolved.exists(), f"{doc.name} links to a missing file: {target}"


def test_the_path_finder_sees_paths_and_ignores_patterns() -> None:
    text = "`server/runtime/sse.py`, `docs/graphs/`, `graphs/<name>.py`, `roles/*.yaml`, `x`"
    assert paths_named(text) == {"server/runtime/sse.py", "docs/graphs/"}
    assert resolves("nodes.team.member_node") and resolves("state.roles")
    assert not resolves("nodes.team.no_such_thing") and not resolves("nodes.nowhere")
