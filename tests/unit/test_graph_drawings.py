"""docs/graphs/ holds the current drawing of every served graph (see scripts/draw_graphs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import draw_graphs


def test_every_drawing_is_current() -> None:
    expected = draw_graphs.expected_files()
    served = json.loads(draw_graphs.CONFIG.read_text())["graphs"]
    assert {p.stem for p in expected} == set(served)
    stale = [
        str(path.relative_to(draw_graphs.REPO))
        for path, text in expected.items()
        if not path.exists() or path.read_text() != text
    ]
    assert stale == [], "stale drawings: run `python -m scripts.draw_graphs` and commit them"


def test_drawings_open_members_as_deep_as_they_nest() -> None:
    staff = draw_graphs.OUT / "staff.md"
    text = staff.read_text()
    assert "## Members opened (xray=2)" in text
    assert "research\\3aresearcher\\3amodel(model)" in text  # Mermaid escapes ":" in ids
    governance = (draw_graphs.OUT / "governance.md").read_text()
    assert "xray=1" not in governance  # no members: the top level only


def test_check_reports_a_stale_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(draw_graphs, "REPO", tmp_path)
    monkeypatch.setattr(draw_graphs, "OUT", tmp_path / "docs" / "graphs")
    assert draw_graphs.main([]) == 0
    assert draw_graphs.main(["--check"]) == 0
    pipeline = tmp_path / "docs" / "graphs" / "pipeline.md"
    pipeline.write_text(pipeline.read_text().replace("gate", "review"))
    assert draw_graphs.main(["--check"]) == 1
    assert capsys.readouterr().err.strip().endswith("stale: docs/graphs/pipeline.md")
