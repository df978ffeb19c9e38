"""Checkpoints: a SIGKILLed run resumes to the uninterrupted result; a NaN keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from resume_worker import run_training
from tiny_models import tiny_llava, tiny_llava_batch

from qslaw.model.surgery import quantize_model, set_trainable
from qslaw.quant.spec import QuantSpec
from qslaw.train.checkpoint import CheckpointSpec, find_resume
from qslaw.train.encode import collate
from qslaw.train.loop import LoopSpec, batches, train

WORKER = Path(__file__).resolve().parents[2] / "support" / "resume_worker.py"


def test_a_sigkilled_run_resumes_from_its_last_checkpoint_to_the_same_result(tmp_path: Path) -> None:
    uninterrupted = run_training(tmp_path / "a")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    killed = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "b"), str(tmp_path / "b.json")],
                            env={**env, "QSLAW_FAULT_KILL_AFTER_STEP": "3"}, capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "b.json").exists()
    state = json.loads((tmp_path / "b" / "rank0" / "state.json").read_text())
    assert state["position"]["step"] == 2  # checkpoints every 2 steps: step 3's work was lost with the process
    assert not [p for p in (tmp_path / "b").iterdir() if p.name != "rank0"]  # no half-written checkpoint left

    resumed = run_training(tmp_path / "b")
    assert len(resumed["history"]) == len(uninterrupted["history"]) == 8
    for a, b in zip(uninterrupted["history"], resumed["history"], strict=True):
        assert a["step"] == b["step"] and a["lr"] == pytest.approx(b["lr"], rel=1e-9)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), (a, b)
    for name, value in uninterrupted["digest"].items():
        assert resumed["digest"][name] == pytest.approx(value, abs=1e-5), name


def test_a_checkpoint_of_another_run_or_world_size_is_ignored(tmp_path: Path) -> None:
    run_training(tmp_path / "c", every=4)
    assert find_resume(CheckpointSpec(tmp_path / "c", 4, "resume-test"), 0, 1).step == 8
    assert find_resume(CheckpointSpec(tmp_path / "c", 4, "another-run"), 0, 1) is None
    assert find_resume(CheckpointSpec(tmp_path / "c", 4, "resume-test"), 0, 2) is None


def test_a_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    model = quantize_model(tiny_llava(), QuantSpec(group_size=32, start_layer=0, gamma_mode="packed"))
    set_trainable(model, ["gamma", "projector"])
    batch = tiny_llava_batch(batch=12)
    samples = [{"input_ids": batch["input_ids"][i], "labels": batch["input_ids"][i],
                "pixel_values": batch["pixel_values"][i]} for i in range(12)]
    spec = LoopSpec(epochs=1, batch_size=4, seed=5, desc="hybrid γ")
    poisoned_step = 3
    poisoned = batches(12, spec, 0)[poisoned_step - 1][0]
    samples[poisoned] = {**samples[poisoned], "pixel_values": torch.full_like(samples[poisoned]["pixel_values"],
                                                                               float("nan"))}
    ckpt = CheckpointSpec(tmp_path / "ckpt", 1, "nan-test")
    trainable = [p for p in model.parameters() if p.requires_grad]
    with pytest.raises(FloatingPointError, match=rf"hybrid γ: loss is nan at step {poisoned_step} .*ckpt"):
        train(model, samples, lambda s: collate(s, 0), [{"params": trainable, "lr": 1e-2}], spec,
              "infra/deepspeed/zero2.json", progress=False, checkpoint=ckpt)
    resume = find_resume(ckpt, 0, 1)
    assert resume is not None and resume.step == poisoned_step - 1
    assert all(torch.isfinite(t).all() for t in resume.trainables.values())
