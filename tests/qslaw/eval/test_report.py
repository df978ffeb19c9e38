"""Report artefacts: a PNG bar chart and per-category deltas."""

from __future__ import annotations

from pathlib import Path

import pytest

from qslaw.eval.report import category_bar_chart, delta_table

ADAPTED = {"accuracy": {"Avg": 80.0, "NAT": 90.0, "IMG": 70.0, "G1-6": 85.0}, "counts": {}}
BASE = {"accuracy": {"Avg": 60.0, "NAT": 50.0, "TXT": 40.0, "G1-6": 85.0}, "counts": {}}


def test_delta_table_per_shared_category_in_order() -> None:
    deltas = delta_table(ADAPTED, BASE)
    assert list(deltas) == ["Avg", "NAT", "G1-6"]
    assert deltas == pytest.approx({"Avg": 20.0, "NAT": 40.0, "G1-6": 0.0})
    assert delta_table(ADAPTED["accuracy"], BASE["accuracy"]) == deltas


def test_bar_chart_writes_a_png(tmp_path: Path) -> None:
    path = category_bar_chart({"adapted": ADAPTED, "fp base": BASE}, tmp_path / "plots" / "sqa.png")
    assert path == tmp_path / "plots" / "sqa.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
