"""A throwaway copy of this repository with its own git, DVC and MLflow state, and the environment to run it.

Used by the end-to-end tests and by ``pipelines.bench_overhead``: the pipeline files of the working tree
(committed or not) are copied into a new directory, a params profile becomes its ``params.yaml`` and the
whole is committed in a fresh git repository, so ``dvc repro`` and the Prefect flow run there exactly as in a
checkout, without touching this one. ``pipeline_env`` puts this interpreter's folder first on PATH, works
offline, tracks into the copy's ``mlflow.db`` and drops the rendezvous variables an in-process DeepSpeed
run may have left behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("qslaw", "steps", "pipelines", "infra", "profiles", "dvc.yaml", "params.yaml", "pyproject.toml",
          ".dvc/config", ".dvcignore", ".gitignore", "prefect.yaml")


def make_repo_copy(dest: Path, params_profile: str = "profiles/smoke.yaml") -> Path:
    """Copy the project's pipeline files into ``dest``, use ``params_profile`` as params.yaml, git-commit it."""
    for name in COPIED:
        src = ROOT / name
        if not src.exists():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, target)
    shutil.copy2(ROOT / params_profile, dest / "params.yaml")
    git = ["git", "-c", "user.name=qslaw-test", "-c", "user.email=test@qslaw.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "test copy"], cwd=dest, check=True)
    return dest


def pipeline_env(repo: Path) -> dict[str, str]:
    """Environment for running stages in ``repo``: venv on PATH, offline, tracking into the copy."""
    rendezvous = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}  # left by in-process DeepSpeed
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QSLAW_", "MLFLOW_", "PREFECT_API")) and k not in rendezvous}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               DVC_NO_ANALYTICS="1", DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true")
    return env
