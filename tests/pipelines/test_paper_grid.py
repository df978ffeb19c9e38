"""The paper grid: which cells it runs in what order, their params, the pinned commit, and the report's rule."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipelines import paper_grid, paper_report
from pipelines.paper_grid import Cell, cell_params, cells, pinned_commit
from pipelines.paper_report import render, verdict

ROOT = Path(__file__).resolve().parents[2]


def test_the_grid_is_every_method_on_three_worlds_plus_ablation_and_validation_variants() -> None:
    grid = cells([0, 1, 2], ["table", "ablation", "validation"], [0])
    names = [c.name for c in grid]
    assert len(names) == len(set(names)) == 3 * (7 + 3) + 3
    assert {c.variant for c in grid if c.group == "table"} == set(paper_grid.METHOD_ORDER)
    assert {c.seed for c in grid if c.group == "validation"} == {0}
    assert all(c.split == "validation" for c in grid if c.group == "validation")
    assert all(c.split == "test" for c in grid if c.group != "validation")
    seed0 = [c.variant for c in grid if c.seed == 0]
    assert seed0[:4] == ["qslaw", "qslaw_text0", "qslaw_text0.5", "qslaw_text2"]  # share quantize + warmup
    assert cells([1], ["ablation"], [0]) == [c for c in grid if c.seed == 1 and c.group == "ablation"]


def test_cell_params_set_the_world_seed_and_overrides_and_name_a_bad_key() -> None:
    import yaml

    profile = yaml.safe_load((ROOT / "params.yaml").read_text())
    cell = Cell(2, "qslaw_tunetext1", "validation", "validation",
                {"evaluate.split": "validation", "hybrid.tune_text_ratio": 1.0})
    params = cell_params(profile, cell)
    assert params["world"]["seed"] == 2 and params["evaluate"]["split"] == "validation"
    assert params["hybrid"]["tune_text_ratio"] == 1.0 and profile["world"]["seed"] == 0
    with pytest.raises(KeyError, match="hybrid.lora_rank"):
        cell_params(profile, Cell(0, "x", "test", "table", {"hybrid.lora_rank": 8}))


def test_a_grid_stays_pinned_to_its_first_commit(tmp_path: Path) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    assert pinned_commit(tmp_path, None) == head
    assert json.loads((tmp_path / "grid.json").read_text())["commit"] == head
    (tmp_path / "grid.json").write_text(json.dumps({"commit": "0" * 40}))
    assert pinned_commit(tmp_path, None) == "0" * 40
    with pytest.raises(SystemExit, match="holds cells of commit 000000000000"):
        pinned_commit(tmp_path, "HEAD")


def test_the_decision_rule_needs_the_same_sign_on_three_seeds_and_a_mean_over_two_points() -> None:
    assert verdict([3.0, 2.5, 4.0], "qslaw", "qlora") == "**qslaw better**"
    assert verdict([-3.0, -2.5, -4.0], "qslaw", "qlora") == "**qlora better**"
    assert verdict([6.0, -0.5, 6.0], "qslaw", "qlora") == "not distinguishable"
    assert verdict([1.5, 1.5, 1.5], "qslaw", "qlora") == "not distinguishable"
    assert verdict([5.0, 5.0], "qslaw", "qlora") == "incomplete (2/3 seeds)"


def fake_cell(seed: int, variant: str, avg: float, ran: tuple[str, ...], cpu: float = 10.0) -> dict:
    from steps.compare import CATEGORIES

    stages = {s: {"lock": f"{s}-{seed}-{variant if s in ran else 'shared'}", "ran": s in ran, "wall_s": cpu,
                  "cpu_user_s": cpu, "cpu_sys_s": 1.0, "peak_rss_mib": 100.0 * (1 + paper_grid.STAGES.index(s))}
              for s in paper_grid.STAGES}
    model = {"accuracy": dict.fromkeys(CATEGORIES, avg), "parse_failure_rate": 0.01, "perplexity": 8.0}
    return {"cell": f"seed{seed}-{variant}-test", "seed": seed, "variant": variant, "split": "test",
            "group": "table", "commit": "a" * 40, "stages": stages, "hybrid": {"trainable_lora": 5},
            "metrics": {"adapted": model, "fp_base": {**model, "accuracy": dict.fromkeys(CATEGORIES, 25.0)},
                        "ppl_ratio": 2.0}}


def test_the_report_takes_a_restored_stage_cost_from_the_cell_that_computed_it() -> None:
    all_stages = paper_grid.STAGES
    cells_ = [fake_cell(0, "qslaw", 60.0, all_stages, cpu=50.0),
              fake_cell(0, "qlora", 50.0, ("hybrid", "evaluate", "export"))]
    cells_[1]["stages"]["quantize"]["lock"] = cells_[0]["stages"]["quantize"]["lock"]  # restored by DVC
    costs = paper_report.stage_costs(cells_)
    cost = paper_report.cell_cost(cells_[1], costs)
    assert cost["cpu_quantize"] == 51.0 and cost["cpu_hybrid"] == 11.0 and cost["cpu_warmup"] is None
    text = render(cells_)
    assert "| qslaw | 1 | 60.0 |" in text and "| qlora | 1 | 50.0 |" in text
    assert "| qslaw − qlora | s0: +10.0 | +10.0 | incomplete (1/3 seeds) |" in text
    assert "| fp base (untuned) | 1 | 25.0 |" in text and "aaaaaaaaaaaa" in text


def test_the_report_logs_one_mlflow_run_with_every_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    results = tmp_path / "results"
    results.mkdir()
    for c in (fake_cell(0, "qslaw", 60.0, paper_grid.STAGES), fake_cell(0, "qlora", 50.0, paper_grid.STAGES)):
        (results / f"{c['cell']}.json").write_text(json.dumps(c))
    paper_report.report(results, tmp_path / "paper_table.md", mlflow=True)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.run_name for r in runs] == ["paper_table"]
    assert runs[0].data.metrics["qslaw.Avg"] == 60.0 and runs[0].data.metrics["qlora.Avg"] == 50.0
    assert (tmp_path / "paper_table.png").exists()
    assert "| qslaw | 1 | 60.0 |" in (tmp_path / "paper_table.md").read_text()
