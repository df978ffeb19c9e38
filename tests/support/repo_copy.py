"""A throwaway copy of this repository for end-to-end pipeline tests (see ``pipelines.workspace``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipelines.workspace import make_repo_copy, pipeline_env

__all__ = ["dvc", "make_repo_copy", "pipeline_env"]


def dvc(repo: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=pipeline_env(repo),
                          capture_output=True, text=True, timeout=timeout)
