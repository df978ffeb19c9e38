"""Training checkpoints that a SIGKILL cannot corrupt, and resuming from them bit for bit.

How it works
------------
A checkpoint is one directory per rank, ``<dir>/rank<r>/``, replaced as a whole through
:func:`qslaw.fsutil.atomic_dir` (written beside it, renamed when complete), so a kill mid-write leaves the
previous complete checkpoint and never a half one. It holds:

* ``trainables.safetensors`` — every parameter that requires grad, by qualified name;
* ``optimizer.safetensors`` — the *inner* torch optimizer's state (``state.<i>.<key>``, e.g. AdamW's
  ``exp_avg``, ``exp_avg_sq``, ``step``) and the tensors it updates (``master.<g>.<j>``): under DeepSpeed ZeRO
  these are the rank's flat fp32 master partitions (so bf16 training resumes with its fp32 masters, not
  rounded copies), without ZeRO the parameters themselves; plus ``rng.torch``, the CPU generator state;
* ``state.json`` — the step reached, the epoch and batch position, the scheduler state, the optimizer's
  hyper-parameters, the loss history so far, world size and a **fingerprint** of everything that decides
  the run (params, inputs, sample count, trainable names and shapes).

Resuming (see :func:`qslaw.train.loop.train`): trainables are copied in before ``deepspeed.initialize``
(so ZeRO builds its partitions from them), then masters, optimizer state, scheduler, RNG and the engine's
step counter are restored, and the loop skips the batches already trained (the order of an epoch is a pure
function of seed and epoch). A checkpoint with another fingerprint or world size is ignored — it belongs to
another run. No pickle is read or written anywhere: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from qslaw.fsutil import atomic_dir


@dataclass(frozen=True)
class CheckpointSpec:
    """Where and how often a training phase checkpoints."""

    directory: Path
    """This phase's checkpoint root (``rank<r>/`` lives below it)."""
    every: int
    """Steps between checkpoints (the last step always checkpoints)."""
    fingerprint: str
    """Identity of the run; a checkpoint with another one is never resumed."""

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"checkpoint every: must be >= 1, got {self.every}")


def fingerprint(*parts: object) -> str:
    """sha256 over a JSON rendering of ``parts`` (params dicts, input hashes, counts)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def inner_optimizer(optimizer: object) -> torch.optim.Optimizer:
    """The torch optimizer that holds the state (DeepSpeed's ZeRO wrapper keeps it as ``.optimizer``)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    if not isinstance(inner, torch.optim.Optimizer):
        raise TypeError(f"checkpoint: cannot find the torch optimizer inside {type(optimizer).__name__}")
    return inner


def rank_dir(spec: CheckpointSpec, rank: int) -> Path:
    return Path(spec.directory) / f"rank{rank}"


@torch.no_grad()
def save_checkpoint(spec: CheckpointSpec, rank: int, world_size: int, model: nn.Module, optimizer: object,
                    scheduler: object, position: dict, history: list[dict]) -> Path:
    """Write this rank's checkpoint atomically; returns its directory."""
    inner = inner_optimizer(optimizer)
    trainables = {n: p.detach().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}
    state = inner.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            tensors[f"state.{index}.{key}"] = (value if torch.is_tensor(value) else torch.tensor(value)).contiguous()
    for g, group in enumerate(inner.param_groups):
        for j, p in enumerate(group["params"]):
            tensors[f"master.{g}.{j}"] = p.detach().contiguous().clone()
    meta = {"fingerprint": spec.fingerprint, "world_size": world_size, "rank": rank, "position": position,
            "history": history, "scheduler": scheduler.state_dict(), "python_rng": random.getstate(),
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]}
    with atomic_dir(rank_dir(spec, rank)) as tmp:
        save_file(trainables, str(tmp / "trainables.safetensors"))
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta, default=list))
    return rank_dir(spec, rank)


@dataclass
class Resume:
    """A checkpoint read back: apply ``trainables`` before the engine exists, the rest after."""

    directory: Path
    meta: dict
    trainables: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]

    @property
    def step(self) -> int:
        return int(self.meta["position"]["step"])

    @property
    def history(self) -> list[dict]:
        return list(self.meta["history"])

    @torch.no_grad()
    def load_trainables(self, model: nn.Module) -> None:
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if params.keys() != self.trainables.keys():
            missing, extra = params.keys() - self.trainables.keys(), self.trainables.keys() - params.keys()
            raise ValueError(f"{self.directory}: trainables differ from the model's (missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(extra)[:3]})")
        for name, p in params.items():
            p.copy_(self.trainables[name].to(p.dtype))

    @torch.no_grad()
    def load_optimizer(self, optimizer: object, scheduler: object) -> None:
        inner = inner_optimizer(optimizer)
        for g, group in enumerate(inner.param_groups):
            for j, p in enumerate(group["params"]):
                saved = self.tensors[f"master.{g}.{j}"]
                if saved.shape != p.shape:
                    raise ValueError(f"{self.directory}: optimizer tensor {g}.{j} has shape {tuple(saved.shape)}, "
                                     f"expected {tuple(p.shape)} (another world size or parameter set?)")
                p.copy_(saved)
        state: dict[int, dict] = {}
        for key, value in self.tensors.items():
            if key.startswith("state."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        groups, offset = [], 0  # torch numbers parameters consecutively across groups
        for saved, live in zip(self.meta["param_groups"], inner.param_groups, strict=True):
            n = len(live["params"])
            groups.append({**saved, "params": list(range(offset, offset + n))})
            if "betas" in saved:
                groups[-1]["betas"] = tuple(saved["betas"])
            offset += n
        inner.load_state_dict({"state": state, "param_groups": groups})
        scheduler.load_state_dict(self.meta["scheduler"])
        torch.set_rng_state(self.tensors["rng.torch"])
        version, internal, gauss = self.meta["python_rng"]
        random.setstate((version, tuple(internal), gauss))


def find_resume(spec: CheckpointSpec, rank: int, world_size: int) -> Resume | None:
    """This rank's checkpoint if it belongs to this run (same fingerprint and world size), else None."""
    directory = rank_dir(spec, rank)
    if not (directory / "state.json").exists():
        return None
    meta = json.loads((directory / "state.json").read_text())
    if meta.get("fingerprint") != spec.fingerprint or meta.get("world_size") != world_size:
        return None
    return Resume(directory, meta, load_file(str(directory / "trainables.safetensors")),
                  load_file(str(directory / "optimizer.safetensors")))


def clear_checkpoints(directory: Path) -> None:
    """Remove a phase's checkpoints once the stage's outputs are complete."""
    shutil.rmtree(directory, ignore_errors=True)
