"""MLflow tracking for the stages: one parent run per pipeline execution, one child run per stage.

Use inside a stage::

    with stage_run("quantize", {"quantize": cfg_dict}) as run:   # run is None when tracking is off
        log_metrics({"quant.error": 0.012})
        log_curve("loss", [(0, 2.3), (10, 1.9)])
        log_artifact(out_dir / "report.json")

Where runs go: ``MLFLOW_TRACKING_URI`` when set (a team server), else ``sqlite:///<repo>/mlflow.db`` with
artifacts in ``<repo>/mlartifacts``; experiment ``qslaw`` (``QSLAW_EXPERIMENT`` overrides). ``<repo>`` is
the git toplevel of the working directory. ``QSLAW_TRACKING=0`` turns every function here into a no-op
and mlflow is never imported (it is imported lazily anyway, to keep stage start-up fast).

How the parent is found: ``QSLAW_PARENT_RUN_ID`` if set (its owner manages its status). Otherwise the run
of the experiment tagged ``qslaw.kind=pipeline`` and ``qslaw.pipeline_key=<key>`` is reused or created,
with ``key = sha256(HEAD commit, git diff HEAD of tracked files, params.yaml, Prefect flow-run id)``.
The diff leaves out ``dvc.lock`` and ``.gitignore`` files, which DVC itself rewrites between stages, so
every stage of one ``dvc repro`` lands under one parent with no shared process, while a changed param or
code change starts a new parent; under Prefect each flow run gets its own parent. The parent's status
follows its stages: RUNNING while one runs, then FINISHED or FAILED like the last one.

Lineage tags on each child (``lineage_tags``): ``git.commit``, ``git.dirty`` (the same diff is non-empty),
``params.hash`` (sha256 of the canonical JSON of the stage's params), ``dvc.dep.<path>`` (md5 in dvc.lock of
every dep of the stage that is an out of an upstream stage; templated ``${...}`` deps are skipped),
``base.model``/``base.revision`` (from ``artifacts/base/base_info.json``), ``pkg.<name>`` versions, and
``prefect.flow_run_id`` when ``QSLAW_PREFECT_FLOW_RUN_ID`` is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

EXPERIMENT = "qslaw"
BASE_INFO = Path("artifacts/base/base_info.json")
PACKAGES = ("torch", "transformers", "peft", "deepspeed", "bitsandbytes", "datasets", "mlflow", "dvc",
            "great_expectations")
# files DVC rewrites while a pipeline runs: they must not change the pipeline key or the dirty flag
DIFF_EXCLUDES = (":(exclude,glob)**/dvc.lock", ":(exclude,glob)**/.gitignore")
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def tracking_enabled() -> bool:
    """Tracking is on unless QSLAW_TRACKING is off; under a multi-rank launcher only rank 0 tracks."""
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return False
    return os.environ.get("QSLAW_TRACKING", "1").strip().lower() not in ("0", "false", "no", "off")


def _git(root: Path, *args: str) -> str | None:
    """stdout of a git command in ``root``, or None when git fails (no repo, no commit)."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    except OSError:
        return None
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def repo_root() -> Path:
    """The git toplevel of the working directory, or the working directory outside git."""
    top = _git(Path.cwd(), "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top else Path.cwd().resolve()


def git_state(root: Path) -> tuple[str, str]:
    """(HEAD commit or "none", ``git diff HEAD`` of tracked files minus the files DVC rewrites)."""
    commit = (_git(root, "rev-parse", "HEAD") or "none").strip()
    diff = _git(root, "diff", "HEAD", "--binary", "--", ".", *DIFF_EXCLUDES) or ""
    return commit, diff


def pipeline_key(root: Path) -> str:
    commit, diff = git_state(root)
    params = root / "params.yaml"
    h = hashlib.sha256()
    for part in (commit.encode(), diff.encode(), params.read_bytes() if params.exists() else b"",
                 os.environ.get("QSLAW_PREFECT_FLOW_RUN_ID", "").encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """Dataclasses, paths and tuples as JSON-able values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"hybrid": {"lora_r": 8}}`` → ``{"hybrid.lora_r": "8"}``; lists as JSON, long values truncated."""
    flat: dict[str, str] = {}
    for key, value in _plain(params).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            flat[name] = text[:MAX_PARAM_CHARS]
    return flat


def params_hash(params: Mapping[str, Any]) -> str:
    canonical = json.dumps(_plain(params), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _tag_key(key: str) -> str:
    """MLflow tag keys allow alphanumerics, ``_ - . /`` and spaces; anything else becomes ``_``."""
    return re.sub(r"[^\w./\- ]", "_", key)


def _load_yaml(path: Path) -> dict:
    import yaml

    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def upstream_dep_hashes(root: Path, stage: str) -> dict[str, str]:
    """dvc.lock md5 of each dep of ``stage`` (per dvc.yaml) that is, or lies inside, an upstream out."""
    lock = _load_yaml(root / "dvc.lock").get("stages", {})
    deps = _load_yaml(root / "dvc.yaml").get("stages", {}).get(stage, {}).get("deps", [])
    outs = {o["path"].rstrip("/"): o.get("md5", "") for name, entry in lock.items() if name != stage
            for o in entry.get("outs", [])}
    hashes = {}
    for dep in (d for d in deps if isinstance(d, str) and "${" not in d):
        dep = dep.removeprefix("./").rstrip("/")
        owner = next((o for o in outs if dep == o or dep.startswith(o + "/")), None)
        if owner is not None:
            hashes[dep] = outs[owner]
    return hashes


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not-installed"
    return versions


def lineage_tags(stage: str, params: Mapping[str, Any] | None = None, root: Path | None = None) -> dict[str, str]:
    """Every lineage tag of a stage's run (``params.hash`` only when its params are given)."""
    root = root or repo_root()
    commit, diff = git_state(root)
    tags = {"git.commit": commit, "git.dirty": str(bool(diff)).lower()}
    if params is not None:
        tags["params.hash"] = params_hash(params)
    tags |= {f"dvc.dep.{path}": md5 for path, md5 in upstream_dep_hashes(root, stage).items()}
    base_info = root / BASE_INFO
    if base_info.exists():
        info = json.loads(base_info.read_text())
        tags |= {"base.model": str(info.get("model", "")), "base.revision": str(info.get("revision", ""))}
    tags |= {f"pkg.{name}": version for name, version in package_versions().items()}
    if flow_run_id := os.environ.get("QSLAW_PREFECT_FLOW_RUN_ID"):
        tags["prefect.flow_run_id"] = flow_run_id
    return {_tag_key(k): v for k, v in tags.items()}


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def _experiment_id(client: Any, root: Path) -> str:
    """The experiment's id, created on first use (local artifacts go to ``<repo>/mlartifacts``)."""
    name = os.environ.get("QSLAW_EXPERIMENT", EXPERIMENT)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None if os.environ.get("MLFLOW_TRACKING_URI") else (root / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def _pipeline_parent(client: Any, experiment_id: str, root: Path) -> str:
    """The parent run of this pipeline execution: found by its key, or created."""
    key = pipeline_key(root)
    found = client.search_runs(
        [experiment_id], f"tags.`qslaw.pipeline_key` = '{key}' and tags.`qslaw.kind` = 'pipeline'",
        max_results=1, order_by=["attributes.start_time ASC"])
    if found:
        return found[0].info.run_id
    commit, diff = git_state(root)
    tags = {"qslaw.kind": "pipeline", "qslaw.pipeline_key": key, "git.commit": commit,
            "git.dirty": str(bool(diff)).lower()}
    if flow_run_id := os.environ.get("QSLAW_PREFECT_FLOW_RUN_ID"):
        tags["prefect.flow_run_id"] = flow_run_id
    return client.create_run(experiment_id, tags=tags, run_name=f"pipeline-{commit[:8]}-{key[:8]}").info.run_id


@contextlib.contextmanager
def stage_run(stage: str, params: Mapping[str, Any]) -> Iterator[Any]:
    """A child run named ``stage`` under the pipeline's parent, with params and lineage tags.

    Yields the active ``mlflow.ActiveRun`` (None when tracking is off). An exception inside ends the child
    (and a parent we own) FAILED and propagates.
    """
    if not tracking_enabled():
        yield None
        return
    import mlflow

    root = repo_root()
    mlflow.set_tracking_uri(tracking_uri(root))
    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client, root)
    parent_id = os.environ.get("QSLAW_PARENT_RUN_ID")
    owned = not parent_id
    parent_id = parent_id or _pipeline_parent(client, experiment_id, root)
    tags = {"qslaw.kind": "stage", "qslaw.stage": stage, **lineage_tags(stage, params, root)}
    if owned:
        client.update_run(parent_id, status="RUNNING")
    status = "FAILED"
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=stage, parent_run_id=parent_id,
                              tags=tags) as run:
            mlflow.log_params(flatten_params(params))
            start = time.perf_counter()
            yield run
            # what the stage cost: wall time and the process's peak resident memory (ru_maxrss is KiB on Linux)
            mlflow.log_metrics({"stage_wall_s": time.perf_counter() - start,
                                "stage_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
        status = "FINISHED"
    finally:
        if owned:
            client.set_terminated(parent_id, status)


def _active() -> Any:
    """The mlflow module when tracking is on and a run is active, else None (helpers become no-ops)."""
    if not tracking_enabled():
        return None
    import mlflow

    return mlflow if mlflow.active_run() is not None else None


def set_tags(tags: Mapping[str, str]) -> None:
    """Tags known only once the stage has run (e.g. the base stage's own model id and revision)."""
    if mlflow := _active():
        mlflow.set_tags({_tag_key(k): str(v) for k, v in tags.items()})


def numeric(report: Mapping[str, object]) -> dict[str, float]:
    """The numeric entries of a stage report (booleans as 0/1), for ``log_metrics``; strings go to params/tags."""
    return {k: float(v) for k, v in report.items() if isinstance(v, int | float)}


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    if mlflow := _active():
        mlflow.log_metrics({_tag_key(k): float(v) for k, v in metrics.items()}, step=step)


def log_curve(name: str, points: Sequence[tuple[int, float]]) -> None:
    """One metric with a value per step (a loss curve), sent in one batch."""
    if not (mlflow := _active()) or not points:
        return
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(_tag_key(name), float(value), now, int(step)) for step, value in points]
    mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    if mlflow := _active():
        mlflow.log_artifact(str(path), artifact_path)


def log_artifacts(directory: str | Path, artifact_path: str | None = None) -> None:
    if mlflow := _active():
        mlflow.log_artifacts(str(directory), artifact_path)


def log_figure(figure: Any, name: str) -> None:
    """A matplotlib figure or an image file, stored as ``figures/<name>`` (``.png`` added when missing)."""
    if not (mlflow := _active()):
        return
    name = name if Path(name).suffix else f"{name}.png"
    if isinstance(figure, str | Path):
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(figure, Path(tmp) / name)
            mlflow.log_artifact(str(Path(tmp) / name), "figures")
    else:
        mlflow.log_figure(figure, f"figures/{name}")
