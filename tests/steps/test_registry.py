"""Registry promotion (steps.promote) and the comparison report (steps.compare) on a sqlite MLflow store
holding crafted pipeline runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
import pytest

from qslaw.config import load_params
from steps import compare, promote
from steps.common import StageError

ROOT = Path(__file__).resolve().parents[2]
LINEAGE = {"git.commit": "abc123", "params.hash": "p" * 16, "base.model": "embedded", "pkg.torch": "2.13.0"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> mlflow.MlflowClient:
    root = tmp_path_factory.mktemp("registry")
    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def pipeline(client: mlflow.MlflowClient, experiment_id: str, method: str, avg: float, ppl: float) -> str:
    """A crafted pipeline run: parent + hybrid and evaluate children + an export child; returns the export run id."""
    parent = client.create_run(experiment_id, run_name=f"run-{method}", tags={"qslaw.kind": "pipeline"})
    pid = parent.info.run_id

    def child(name: str, params: dict, metrics: dict) -> str:
        run = client.create_run(experiment_id, run_name=name, tags={"qslaw.kind": "stage",
                                                                     "mlflow.parentRunId": pid})
        for k, v in params.items():
            client.log_param(run.info.run_id, k, v)
        for k, v in metrics.items():
            client.log_metric(run.info.run_id, k, v)
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    child("hybrid", {"train.method": method}, {"trainable_lora": 1000.0, "trainable_projector": 50.0,
                                               "stage_peak_rss_mib": 900.0, "stage_wall_s": 100.0})
    child("evaluate", {"evaluate.limit": "0"}, {**{f"adapted_acc_{c}": avg for c in compare.CATEGORIES},
                                                "adapted_parse_failure_rate": 0.1, "adapted_perplexity": ppl,
                                                "ppl_ratio": ppl / 7.0, "stage_peak_rss_mib": 700.0,
                                                "stage_wall_s": 50.0})
    export = child("export", {}, {"stage_wall_s": 5.0})
    client.set_terminated(pid)
    return export


def export_dirs(tmp: Path, client: mlflow.MlflowClient, export_run: str, method: str, avg: float,
                ppl: float) -> tuple[Path, Path]:
    export, evaluate = tmp / "export", tmp / "evaluate"
    export.mkdir(parents=True)
    evaluate.mkdir(parents=True)
    run = client.get_run(export_run)
    (export / "registry.json").write_text(json.dumps({"model_name": "qslaw-embedded", "method": method,
                                                      "run_id": export_run, "artifact_uri": run.info.artifact_uri}))
    (export / "lineage.json").write_text(json.dumps(LINEAGE))
    (export / "model_card.md").write_text(f"# qslaw-embedded\n\nMethod `{method}`.\n")
    (evaluate / "metrics.json").write_text(json.dumps({"adapted": {"accuracy": {"Avg": avg}, "perplexity": ppl},
                                                       "fp_base": {"accuracy": {"Avg": 0.0}, "perplexity": 7.0}}))
    return export, evaluate


def test_gate_promotes_refuses_and_explains_in_the_registry(client: mlflow.MlflowClient, tmp_path: Path) -> None:
    experiment = client.create_experiment("promote-test")
    params = load_params(ROOT / "profiles" / "smoke.yaml")
    params = dataclasses.replace(params, promote=dataclasses.replace(params.promote, margin=1.0, ppl_bound=1.5))
    results = []
    for i, (method, avg, ppl) in enumerate([("qslaw", 40.0, 9.0), ("qlora", 40.5, 9.0), ("lora_fp", 50.0, 12.0),
                                            ("qslaw", 45.0, 8.0)]):
        export_run = pipeline(client, experiment, method, avg, ppl)
        dirs = export_dirs(tmp_path / str(i), client, export_run, method, avg, ppl)
        results.append(promote.run(params, *dirs, client=client))
    assert [r["alias"] for r in results] == ["champion", "challenger", "challenger", "champion"]
    assert "accuracy: Avg 40.50 < champion Avg 40.00 + margin 1.00" in results[1]["message"]
    assert "language retention: perplexity 12.000 > fp base 7.000" in results[2]["message"]
    champion = client.get_model_version_by_alias("qslaw-embedded", "champion")
    assert champion.version == results[3]["version"] and results[3]["previous_champion"] == results[0]["version"]
    assert champion.tags["git.commit"] == "abc123" and champion.tags["qslaw.method"] == "qslaw"
    assert champion.description.startswith("# qslaw-embedded")
    refused = client.get_model_version("qslaw-embedded", results[2]["version"])
    assert refused.tags["qslaw.gate"].startswith("not promoted (challenger): language retention")
    again = promote.run(params, *export_dirs(tmp_path / "again", client, refused.run_id, "lora_fp", 50.0, 12.0),
                        client=client)
    assert again["version"] == refused.version and again["message"].startswith("already registered")


def test_promote_refuses_an_untracked_export(tmp_path: Path, client: mlflow.MlflowClient) -> None:
    (tmp_path / "registry.json").write_text(json.dumps({"model_name": "m", "method": "qslaw"}))
    with pytest.raises(StageError, match="tracking off"):
        promote.run(load_params(ROOT / "profiles" / "smoke.yaml"), tmp_path, tmp_path, client=client)


def test_comparison_report_has_every_evaluated_run_and_is_logged(client: mlflow.MlflowClient, tmp_path: Path) -> None:
    experiment = client.create_experiment("compare-test")
    for method, avg in (("qslaw", 44.0), ("qlora", 41.0)):
        pipeline(client, experiment, method, avg, 8.0)
    client.create_run(experiment, run_name="unfinished", tags={"qslaw.kind": "pipeline"})  # no evaluate: left out
    rows = compare.run(tmp_path / "report", client=client, experiment="compare-test")
    assert [r["method"] for r in rows] == ["qlora", "qslaw"]  # newest first
    assert rows[0]["Avg"] == 41.0 and rows[0]["trainable_params"] == 1050
    assert rows[0]["peak_rss_mib"] == 900.0 and rows[0]["stages_wall_s"] == 155.0
    text = (tmp_path / "report" / "comparison.md").read_text()
    assert "| run-qslaw | qslaw | 44.0 |" in text and "unfinished" not in text
    assert (tmp_path / "report" / "categories.png").stat().st_size > 0 and (tmp_path / "report" / "cost.png").exists()
    logged = client.search_runs([experiment], "tags.`qslaw.kind` = 'report'")
    assert len(logged) == 1
    assert {f.path for f in client.list_artifacts(logged[0].info.run_id)} >= {"comparison.md", "categories.png"}
