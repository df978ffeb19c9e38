"""benchmark_summary: mean, spread and distance from chance over several benchmark_check reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.benchmark_summary import load_report, main, summarize, table


def write_run(root: Path, name: str, img: float, txt: float, no: float, chance_img: float = 25.0) -> Path:
    acc = {"Avg": (img + txt + no) / 3, "NAT": 70.0, "SOC": 60.0, "LAN": 50.0, "TXT": txt, "IMG": img, "NO": no,
           "G1-6": 65.0, "G7-12": 55.0}
    report = {"fp_lora": {"accuracy": acc, "chance_IMG": chance_img, "chance_TXT": 30.0, "chance_NO": 25.0},
              "untuned_choice_probe": {"accuracy": {k: 26.0 for k in acc}}}
    run = root / name
    run.mkdir()
    (run / "report.json").write_text(json.dumps(report))
    return run


def test_mean_spread_and_distance_from_chance(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "a", 54.0, 86.0, 76.0), write_run(tmp_path, "b", 50.0, 70.0, 72.0, chance_img=26.0)]
    summary = summarize([load_report(r) for r in runs], ["a", "b"])
    img = summary["by_category"]["IMG"]
    assert img["fp_lora"] == {"mean": 52.0, "sd": pytest.approx(2.828, abs=1e-3), "min": 50.0, "max": 54.0}
    assert img["chance_mean"] == 25.5 and img["above_chance_mean"] == 26.5 and img["above_chance_worst"] == 24.0
    assert not img["meets_goal"]
    txt = summary["by_category"]["TXT"]
    assert txt["above_chance_mean"] == 48.0 and txt["meets_goal"]
    assert "chance_mean" not in summary["by_category"]["NAT"]
    assert summary["per_run"]["b"]["IMG"] == 50.0
    text = table(summary)
    assert "| IMG | 52.0 | 2.8 | 50.0-54.0 | 26.0 | 25.5 | +26.5 / +24.0 |" in text
    assert "| TXT | 78.0 | 11.3 | 70.0-86.0 | 26.0 | 30.0 | +48.0 / +40.0 (goal met) |" in text


def test_one_run_has_zero_spread(tmp_path: Path) -> None:
    summary = summarize([load_report(write_run(tmp_path, "a", 54.0, 86.0, 76.0))], ["a"])
    assert summary["by_category"]["IMG"]["fp_lora"]["sd"] == 0.0


def test_cli_writes_summary_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = [write_run(tmp_path, n, 50.0 + i, 80.0, 75.0) for i, n in enumerate("abc")]
    main([*map(str, runs), "--out", str(tmp_path / "summary")])
    assert "| IMG | 51.0 | 1.0 |" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary" / "summary.json").read_text())
    assert summary["runs"] == [str(r) for r in runs]
    assert (tmp_path / "summary" / "contexts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_run_names_the_file_and_key(tmp_path: Path) -> None:
    run = write_run(tmp_path, "a", 54.0, 86.0, 76.0)
    report = json.loads((run / "report.json").read_text())
    del report["fp_lora"]["chance_IMG"]
    (run / "report.json").write_text(json.dumps(report))
    with pytest.raises(SystemExit, match=r"a/report.json: missing 'fp_lora.chance_IMG'"):
        main([str(run), "--out", str(tmp_path / "summary")])
    with pytest.raises(SystemExit, match="no such file"):
        main([str(tmp_path / "missing")])
    (run / "report.json").write_text("{")
    with pytest.raises(SystemExit, match=r"a/report.json: not JSON"):
        main([str(run)])
    assert not (tmp_path / "summary").exists()
