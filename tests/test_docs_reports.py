"""The tables in README.md and docs/ are the committed benchmark JSON, via bench/report.py."""

from __future__ import annotations

import json
from pathlib import Path

from bench import REPO, report


def test_every_generated_table_matches_its_committed_json() -> None:
    stale = [
        str(doc.relative_to(REPO))
        for doc in report.documents()
        if report.render(doc.read_text()) != doc.read_text()
    ]
    assert not stale, f"stale tables in {stale}: run python bench/report.py"


def test_the_figures_in_readme_and_performance_report_are_generated() -> None:
    for name in ("README.md", "docs/performance.md", "docs/hardware-model.md"):
        text = (REPO / name).read_text()
        blocks = list(report.BLOCK.finditer(text))
        assert blocks, f"{name} has no generated table"
        for block in blocks:
            assert (REPO / block["path"]).is_file(), block["path"]


def test_a_changed_figure_makes_its_table_stale(tmp_path: Path) -> None:
    data = json.loads((REPO / "docs/placement.json").read_text())
    source = tmp_path / "placement.json"
    source.write_text(json.dumps(data))
    document = report.render(f"<!-- report: placement {source} -->\n<!-- end report -->\n")
    assert report.render(document) == document
    data["results"][0]["host_bound"] += data["results"][0]["distinct"]
    source.write_text(json.dumps(data))
    assert report.render(document) != document
