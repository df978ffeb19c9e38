"""The whole DAG end to end with the smoke profile, in a temporary copy of the repository."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from repo_copy import dvc, make_repo_copy, pipeline_env

STAGES = ("base", "prepare", "validate", "quantize", "warmup", "hybrid", "evaluate", "export")
LINEAGE = ("git.commit", "git.dirty", "params.hash", "base.model", "base.revision", "pkg.torch", "pkg.transformers")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo_copy(tmp_path_factory.mktemp("dag") / "repo")
    result = dvc(repo, "repro")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return repo


def test_every_declared_out_exists(repo: Path) -> None:
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for out in stage["outs"]:
            assert (repo / out).exists(), (name, out)
            assert any((repo / out).iterdir()), (name, out)
    for path in ("artifacts/quantize/model/quant_config.json", "artifacts/hybrid/adapter/adapter_config.json",
                 "artifacts/export/model_card.md", "artifacts/validate/data_docs/index.html",
                 "artifacts/warmup/trainables.safetensors", "artifacts/evaluate/categories.png"):
        assert (repo / path).exists(), path


def test_metrics_have_every_key(repo: Path) -> None:
    metrics = json.loads((repo / "artifacts/evaluate/metrics.json").read_text())
    for model in ("adapted", "fp_base"):
        assert {"Avg", "NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12"} <= set(metrics[model]["accuracy"])
        assert {"parse_failure_rate", "perplexity"} <= set(metrics[model])
    assert "ppl_ratio" in metrics and "Avg" in metrics["delta"]
    shown = dvc(repo, "metrics", "show", "--json")
    assert shown.returncode == 0 and "adapted" in shown.stdout


def test_mlflow_has_one_parent_and_a_child_per_stage_with_lineage(repo: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=pipeline_env(repo)["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("qslaw")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("qslaw.kind") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("qslaw.kind") == "stage"]
    assert len(parents) == 1
    assert sorted(r.info.run_name for r in children) == sorted(STAGES)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        assert all(tag in child.data.tags for tag in LINEAGE), child.info.run_name
    by_stage = {r.info.run_name: r for r in children}
    assert any(k.startswith("dvc.dep.") for k in by_stage["quantize"].data.tags)
    assert "adapted_acc_Avg" in by_stage["evaluate"].data.metrics
    base = by_stage["base"].data.metrics  # the build report's figures, flattened
    assert {"lm_final_val_ppl", "tower_retrieval_after", "caption_loss_after", "caption_loss_mismatched_after",
            "wall_s_total", "params_projector"} <= set(base), sorted(base)
    assert by_stage["quantize"].data.params["quantize.bits"] == "4"


def test_second_repro_skips_every_stage(repo: Path) -> None:
    start = time.perf_counter()
    result = dvc(repo, "repro")
    assert result.returncode == 0
    assert "up to date" in result.stdout
    assert not any(f"Running stage '{s}'" in result.stdout for s in STAGES)
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("edited,changed", [
    ("qslaw/eval/scienceqa.py", {"evaluate", "export"}),
    ("qslaw/embedded/world/txt_questions.py", {"base", "prepare"}),
])
def test_an_edit_reruns_only_the_stages_whose_code_imports_it(repo: Path, edited: str, changed: set[str]) -> None:
    path = repo / edited
    original = path.read_text()
    try:
        path.write_text(original + "\n# edited\n")
        result = dvc(repo, "status", "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        stale = set(json.loads(result.stdout or "{}"))
    finally:
        path.write_text(original)
    assert stale == changed  # DVC reruns downstream stages only if an upstream output then changes
