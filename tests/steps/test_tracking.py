"""steps.tracking against a temporary git repo and sqlite store: parent/child runs, lineage tags, failure."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from steps import tracking
from steps.tracking import PACKAGES, lineage_tags, log_artifact, log_curve, log_figure, log_metrics, stage_run

DVC_YAML = {"stages": {
    "prepare": {"cmd": "python -m steps.prepare data", "params": ["prepare"], "outs": ["data"]},
    "quantize": {"cmd": "python -m steps.quantize data artifacts/quantize",
                 "deps": ["data/shards", "steps/quantize.py"], "params": ["quantize"],
                 "outs": ["artifacts/quantize"]},
}}
PARAMS = {"prepare": {"n": 4}, "quantize": {"bits": 4, "group_size": 128, "method": "rtn", "targets": ["q", "k"]}}


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=qslaw", "-c", "user.email=qslaw@example.com", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def write_lock(repo: Path, md5: str) -> None:
    lock = {"schema": "2.0", "stages": {"prepare": {"cmd": "x", "outs": [
        {"path": "data", "hash": "md5", "md5": md5, "size": 1, "nfiles": 1}]}}}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module: creating its tables takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def repo(tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """A committed git repo with params.yaml, dvc.yaml and dvc.lock; cwd inside it; a fresh experiment."""
    for key in ("QSLAW_PARENT_RUN_ID", "QSLAW_PREFECT_FLOW_RUN_ID", "QSLAW_TRACKING", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("QSLAW_EXPERIMENT", f"test-{request.node.name}")
    git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    write_lock(tmp_path, "0" * 32)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "init")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # the repo root is found from any folder inside it
    return tmp_path


def runs(kind: str) -> list:
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(os.environ["QSLAW_EXPERIMENT"])
    found = client.search_runs([experiment.experiment_id], f"tags.`qslaw.kind` = '{kind}'")
    return sorted(found, key=lambda r: r.info.start_time)


def test_stages_share_one_parent_and_carry_lineage(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QSLAW_PREFECT_FLOW_RUN_ID", "flow-run-1")
    (repo / "artifacts" / "base").mkdir(parents=True)
    (repo / "artifacts" / "base" / "base_info.json").write_text(json.dumps({"model": "embedded", "revision": "r1"}))
    with stage_run("prepare", {"prepare": PARAMS["prepare"]}) as run:
        assert run.info.run_id == mlflow.active_run().info.run_id
        log_metrics({"rows": 10})
    write_lock(repo, "a" * 32 + ".dir")  # DVC rewrites dvc.lock between stages: same parent
    with stage_run("quantize", {"quantize": PARAMS["quantize"]}):
        log_curve("loss", [(0, 2.0), (5, 1.5), (10, 1.0)])
        (repo / "report.json").write_text("{}")
        log_artifact(repo / "report.json")
        (repo / "plot.png").write_bytes(b"\x89PNG not really")
        log_figure(repo / "plot.png", "loss_curve")

    (parent,) = runs("pipeline")
    children = runs("stage")
    assert [c.data.tags["qslaw.stage"] for c in children] == ["prepare", "quantize"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.info.status == "FINISHED" and parent.data.tags["prefect.flow_run_id"] == "flow-run-1"
    head = git(repo, "rev-parse", "HEAD")
    for child in children:
        tags = child.data.tags
        assert child.info.status == "FINISHED" and child.info.run_name == tags["qslaw.stage"]
        assert tags["git.commit"] == head and tags["git.dirty"] == "false"
        assert tags["base.model"] == "embedded" and tags["base.revision"] == "r1"
        assert tags["prefect.flow_run_id"] == "flow-run-1"
        assert {f"pkg.{name}" for name in PACKAGES} <= tags.keys() and tags["pkg.mlflow"] == mlflow.__version__
    prepare, quantize = (c.data for c in children)
    assert prepare.params == {"prepare.n": "4"} and prepare.metrics["rows"] == 10.0
    assert set(prepare.metrics) == {"rows", "stage_wall_s", "stage_peak_rss_mib"}  # the stage's cost, logged
    assert prepare.metrics["stage_peak_rss_mib"] > 10
    assert quantize.params == {"quantize.bits": "4", "quantize.group_size": "128", "quantize.method": "rtn",
                               "quantize.targets": '["q", "k"]'}
    assert quantize.tags["params.hash"] == tracking.params_hash({"quantize": PARAMS["quantize"]})
    assert quantize.tags["dvc.dep.data/shards"] == "a" * 32 + ".dir"  # a dep inside prepare's out
    assert not any(k.startswith("dvc.dep.") for k in prepare.tags)
    history = mlflow.MlflowClient().get_metric_history(children[1].info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (5, 1.5), (10, 1.0)]
    client = mlflow.MlflowClient()
    assert [a.path for a in client.list_artifacts(children[1].info.run_id)] == ["figures", "report.json"]
    assert [a.path for a in client.list_artifacts(children[1].info.run_id, "figures")] == ["figures/loss_curve.png"]


def test_changed_params_start_a_new_parent(repo: Path) -> None:
    with stage_run("prepare", PARAMS):
        pass
    with stage_run("prepare", PARAMS):
        pass
    (repo / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "prepare": {"n": 8}}))
    with stage_run("prepare", PARAMS):
        pass
    first, second = runs("pipeline")
    assert first.data.tags["qslaw.pipeline_key"] != second.data.tags["qslaw.pipeline_key"]
    assert second.data.tags["git.dirty"] == "true"
    parents = [c.data.tags["mlflow.parentRunId"] for c in runs("stage")]
    assert parents == [first.info.run_id, first.info.run_id, second.info.run_id]


def test_each_prefect_flow_run_gets_its_own_parent(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for flow_run_id in ("run-a", "run-a", "run-b"):
        monkeypatch.setenv("QSLAW_PREFECT_FLOW_RUN_ID", flow_run_id)
        with stage_run("prepare", PARAMS):
            pass
    assert [p.data.tags["prefect.flow_run_id"] for p in runs("pipeline")] == ["run-a", "run-b"]
    assert len(runs("stage")) == 3


def test_exception_fails_the_child_and_propagates(repo: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), stage_run("prepare", PARAMS):
        raise RuntimeError("boom")
    (child,) = runs("stage")
    (parent,) = runs("pipeline")
    assert child.info.status == "FAILED" and parent.info.status == "FAILED"
    assert mlflow.active_run() is None


def test_parent_run_id_from_env(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment(os.environ["QSLAW_EXPERIMENT"])
    outer = client.create_run(experiment_id, tags={"owner": "someone"})
    monkeypatch.setenv("QSLAW_PARENT_RUN_ID", outer.info.run_id)
    with stage_run("quantize", PARAMS):
        pass
    (child,) = runs("stage")
    assert child.data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert runs("pipeline") == []
    assert client.get_run(outer.info.run_id).info.status == "RUNNING"  # its owner ends it


def test_tracking_off_is_a_no_op(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QSLAW_TRACKING", "0")
    with stage_run("prepare", PARAMS) as run:
        assert run is None
        log_metrics({"a": 1.0})
        log_curve("loss", [(0, 1.0)])
        log_artifact(repo / "missing.txt")
        log_figure(repo / "missing.png", "fig")
    assert mlflow.MlflowClient().get_experiment_by_name(os.environ["QSLAW_EXPERIMENT"]) is None


def test_lineage_without_lock_or_base_info(repo: Path) -> None:
    (repo / "dvc.lock").unlink()
    tags = lineage_tags("quantize")
    assert tags["git.dirty"] == "false" and "params.hash" not in tags
    assert not any(k.startswith(("dvc.dep.", "base.")) for k in tags)


def test_default_store_lives_in_the_repo(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri(tracking.repo_root()) == f"sqlite:///{repo / 'mlflow.db'}"
