"""A trivial git + DVC repo whose dvc.yaml has the flow's stage names: the flow runs without the ML pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pipelines.adapt import STAGES

PYTHON_BIN = str(Path(sys.executable).parent)
PARAMS = """\
# trivial params: one section per stage
base:
  model: embedded
hybrid:
  lora_r: 16   # LoRA rank
  lr: 0.0002
export:
  gate: 0.5
"""
STAGE_SCRIPT = """\
import os, pathlib, sys, yaml
stage, *deps = sys.argv[1:]
text = "".join(pathlib.Path(d).read_text() for d in deps) + stage
if stage == "hybrid":
    text += " r=%s" % yaml.safe_load(open("params.yaml"))["hybrid"]["lora_r"]
if stage == "export":
    text += " flow=%s" % os.environ.get("QSLAW_PREFECT_FLOW_RUN_ID", "")
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out", stage + ".txt").write_text(text + "\\n")
"""


def dvc_yaml() -> dict:
    stages = {}
    for i, stage in enumerate(STAGES):
        deps = [f"out/{STAGES[i - 1]}.txt"] if i else []
        stages[stage] = {"cmd": " ".join(["python stage.py", stage, *deps]), "deps": ["stage.py", *deps],
                         "outs": [f"out/{stage}.txt"]}
        if stage == "hybrid":
            stages[stage]["params"] = ["hybrid.lora_r"]
    return {"stages": stages}


def run(cwd: Path, *cmd: str) -> str:
    env = dict(os.environ, PATH=os.pathsep.join([PYTHON_BIN, os.environ["PATH"]]), DVC_NO_ANALYTICS="1")
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_dvc_repo(root: Path, extra: dict[str, str] | None = None) -> Path:
    """git init + dvc init + params.yaml, dvc.yaml, stage.py and ``extra`` files, committed."""
    root.mkdir(parents=True, exist_ok=True)
    run(root, "git", "init", "-q")
    run(root, "git", "config", "user.name", "qslaw")
    run(root, "git", "config", "user.email", "qslaw@example.com")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    (root / "params.yaml").write_text(PARAMS)
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml(), sort_keys=False))
    (root / "stage.py").write_text(STAGE_SCRIPT)
    (root / ".gitignore").write_text("/out/\n")
    for name, text in (extra or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "trivial pipeline")
    return root


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    return make_dvc_repo(tmp_path / "repo")


@pytest.fixture
def params_text() -> str:
    return PARAMS


@pytest.fixture
def sh() -> Callable[..., str]:
    """``sh(cwd, *cmd)``: run a command with this interpreter's folder first on PATH, return its stdout."""
    return run


@pytest.fixture
def repo_factory() -> Callable[..., Path]:
    return make_dvc_repo
