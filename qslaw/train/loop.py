"""The training loop shared by the warmup and hybrid stages, over a DeepSpeed engine.

How it works
------------
``train`` wraps the model in ``deepspeed.initialize`` with a torch ``AdamW`` over the caller's parameter
groups (weight decay 0, as released) and a cosine schedule with linear warm-up (``warmup_ratio`` of the
steps, 3 % as released). The DeepSpeed config comes from a JSON file kept in the repo
(``infra/deepspeed/zero2.json``); the loop fills in the micro-batch size, ZeRO stage and bf16 switch.
Passing a torch optimizer avoids DeepSpeed's JIT-built fused Adam; on a machine without a GPU DeepSpeed
selects its CPU accelerator and the gloo backend. A single process needs the usual rendezvous variables;
:func:`single_process_env` sets them (free port) when no launcher did.

Each epoch visits the samples in a seeded random order (the released warmup shuffles the text/multimodal
union every epoch); a batch is ``collate``-d on the fly. Returns the loss/learning-rate history. A tqdm bar
shows step, loss, learning rate and ETA.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup


@dataclass(frozen=True)
class LoopSpec:
    """One training phase."""

    epochs: int
    """Passes over the samples."""
    batch_size: int
    """Samples per optimizer step."""
    seed: int = 0
    """Seed of the sample order."""
    precision: str = "fp32"
    """'fp32' or 'bf16' (DeepSpeed bf16: bf16 weights and activations, fp32 master copy of the trainables)."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage."""
    warmup_ratio: float = 0.03
    """Fraction of steps with linear learning-rate warm-up."""
    desc: str = "train"
    """Progress-bar label."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs: must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision: must be 'fp32' or 'bf16', got {self.precision!r}")

    def steps(self, n_samples: int) -> int:
        return self.epochs * math.ceil(n_samples / self.batch_size)


def single_process_env() -> None:
    """Rendezvous variables for one process when no launcher set them."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def deepspeed_config(path: Path, spec: LoopSpec) -> dict:
    """The repo's DeepSpeed JSON with this phase's batch size, ZeRO stage and precision filled in."""
    config = json.loads(Path(path).read_text())
    config["train_micro_batch_size_per_gpu"] = spec.batch_size
    config.setdefault("zero_optimization", {})["stage"] = spec.zero_stage
    config["bf16"] = {"enabled": spec.precision == "bf16"}
    return config


def batches(n: int, spec: LoopSpec, epoch: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed * 1000 + epoch)).tolist()
    return [order[i:i + spec.batch_size] for i in range(0, n, spec.batch_size)]


def train(
    model: nn.Module,
    samples: Sequence[dict],
    collate: Callable[[list[dict]], dict],
    param_groups: list[dict],
    spec: LoopSpec,
    ds_config: Path,
    progress: bool = True,
) -> list[dict]:
    """Train the parameters in ``param_groups`` (each with its own ``lr``); returns the per-step history."""
    import deepspeed  # heavy; imported only when training

    if not samples:
        raise ValueError(f"{spec.desc}: no training samples")
    single_process_env()
    total = spec.steps(len(samples))
    optimizer = torch.optim.AdamW(param_groups, weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(spec.warmup_ratio * total), total)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(ds_config, spec))
    engine.train()
    history: list[dict] = []
    bar = tqdm(total=total, desc=spec.desc, disable=not progress)
    for epoch in range(spec.epochs):
        for idx in batches(len(samples), spec, epoch):
            batch = {k: v.to(engine.device) for k, v in collate([samples[i] for i in idx]).items()}
            if spec.precision == "bf16" and "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
            loss = engine(**batch).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{spec.desc}: loss is {loss.item()} at step {len(history) + 1} "
                                         f"(epoch {epoch}); stopping before the optimizer applies it")
            engine.backward(loss)
            engine.step()
            row = {"step": len(history) + 1, "epoch": epoch, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]}
            history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
    bar.close()
    engine.eval()
    release_flat_buffers(model)
    return history


@torch.no_grad()
def release_flat_buffers(model: nn.Module) -> None:
    """Give every parameter its own storage again (ZeRO leaves them as views into flat buffers)."""
    for p in model.parameters():
        p.data = p.data.clone()
