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

More than one rank (``deepspeed`` or ``torchrun`` launcher; gloo on CPU): ``batch_size`` stays the global
batch, each rank trains on its strided share of every batch (same order on every rank, so the run matches
one rank's up to the per-rank loss averaging), and the logged loss is the mean over ranks.

Guard rails: a non-finite loss raises ``FloatingPointError`` naming the phase, step and epoch *before* the
optimizer applies it, so the last checkpoint stays the last good state. With a
:class:`~qslaw.train.checkpoint.CheckpointSpec` the loop checkpoints every ``every`` steps and at the end,
and a rerun of the same run (same fingerprint) resumes from the last complete checkpoint — weights,
optimizer, scheduler, RNG and data position — and ends where an uninterrupted run ends. The environment
variable ``QSLAW_FAULT_KILL_AFTER_STEP=N`` makes the process SIGKILL itself after step N (fault injection
for the resume tests; never set in normal runs).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from qslaw.train.checkpoint import CheckpointSpec, find_resume, save_checkpoint


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


def is_main_process() -> bool:
    """Rank 0, or no launcher at all: the process that writes a stage's outputs."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def single_process_env() -> None:
    """Rendezvous variables for one process when no launcher set them."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def deepspeed_config(path: Path, spec: LoopSpec, world_size: int = 1) -> dict:
    """The repo's DeepSpeed JSON with this phase's batch size, ZeRO stage and precision filled in.

    ``batch_size`` is the global batch: each of ``world_size`` ranks takes ``batch_size / world_size`` of it."""
    if spec.batch_size % world_size:
        raise ValueError(f"batch_size: {spec.batch_size} is not divisible by the {world_size} ranks")
    config = json.loads(Path(path).read_text())
    config["train_micro_batch_size_per_gpu"] = spec.batch_size // world_size
    config["train_batch_size"] = spec.batch_size
    config["gradient_accumulation_steps"] = 1
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
    order: Callable[[int], list[list[int]]] | None = None,
    checkpoint: CheckpointSpec | None = None,
) -> list[dict]:
    """Train the parameters in ``param_groups`` (each with its own ``lr``); returns the per-step history.

    ``order(epoch)`` gives the batches of sample indices of an epoch (default: a seeded shuffle);
    ``checkpoint`` turns on checkpointing and resuming (see the module docstring)."""
    import deepspeed  # heavy; imported only when training

    if not samples:
        raise ValueError(f"{spec.desc}: no training samples")
    single_process_env()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    total = spec.steps(len(samples))
    resume = find_resume(checkpoint, rank, world) if checkpoint else None
    if resume:
        resume.load_trainables(model)
    optimizer = torch.optim.AdamW(param_groups, weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(spec.warmup_ratio * total), total)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(ds_config, spec, world))
    history: list[dict] = []
    if resume:
        resume.load_optimizer(engine.optimizer, scheduler)
        history = resume.history
        engine.global_steps = engine.global_samples = len(history)
        engine.global_samples *= spec.batch_size
    engine.train()
    kill_after = int(os.environ.get("QSLAW_FAULT_KILL_AFTER_STEP", "0"))
    bar = tqdm(total=total, initial=len(history), desc=spec.desc, disable=not progress or rank != 0)
    step = 0
    for epoch in range(spec.epochs):
        for position, idx in enumerate(order(epoch) if order else batches(len(samples), spec, epoch)):
            step += 1
            if step <= len(history):
                continue  # trained before the checkpoint we resumed from
            # this rank's share of the global batch (all of it on one rank); a last partial batch smaller
            # than the world lends a sample to the ranks that would get none (every rank must step)
            mine = idx[rank::world] or [idx[rank % len(idx)]]
            batch = {k: v.to(engine.device) for k, v in collate([samples[i] for i in mine]).items()}
            if spec.precision == "bf16" and "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
            loss = engine(**batch).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{spec.desc}: loss is {loss.item()} at step {step} (epoch {epoch}); "
                                         "stopped before the optimizer applied it"
                                         + (f"; the last good checkpoint is kept in {checkpoint.directory}"
                                            if checkpoint else ""))
            engine.backward(loss)
            engine.step()
            row = {"step": step, "epoch": epoch, "loss": mean_over_ranks(loss.detach(), world),
                   "lr": scheduler.get_last_lr()[0]}
            history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
            if checkpoint and (step % checkpoint.every == 0 or step == total):
                save_checkpoint(checkpoint, rank, world, model, engine.optimizer, scheduler,
                                {"step": step, "epoch": epoch, "batch": position}, history)
            if kill_after and step == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    engine.eval()
    release_flat_buffers(model)
    return history


def mean_over_ranks(value: torch.Tensor, world_size: int) -> float:
    """The loss averaged over ranks (what the averaged gradient corresponds to); itself on one rank."""
    if world_size == 1:
        return value.item()
    import torch.distributed as dist

    value = value.clone().float()
    dist.all_reduce(value)
    return value.item() / world_size


@torch.no_grad()
def release_flat_buffers(model: nn.Module) -> None:
    """Give every parameter its own storage again (ZeRO leaves them as views into flat buffers)."""
    for p in model.parameters():
        p.data = p.data.clone()
