"""Two ranks (torchrun, gloo on CPU) train to the same loss curve as one rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[2] / "support" / "ranks_worker.py"
RENDEZVOUS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


def run(cmd: list[str], out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    result = subprocess.run([*cmd, str(WORKER), str(out)], env={**env, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_ranks_match_one_rank(tmp_path: Path) -> None:
    one = run([sys.executable], tmp_path / "one.json")
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
              tmp_path / "two.json")
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert len(one["history"]) == len(two["history"]) == 4
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), (a, b)
    for name, value in one["digest"].items():
        assert two["digest"][name] == pytest.approx(value, rel=1e-4, abs=1e-4), name
