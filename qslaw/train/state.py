"""Trainable state as safetensors, and the training curves as PNG/CSV.

How it works
------------
A stage saves only what it trained — the tensors whose names fall in the named trainable groups (``gamma``,
``projector``, ...) — as a flat ``{qualified name: tensor}`` safetensors file; a later stage loads it back
by name into the same architecture. Loading is strict both ways: a tensor with no matching parameter, a
shape mismatch, or an expected group with no tensor in the file is an error naming the key.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from qslaw.model.surgery import TRAINABLE_GROUPS


def trainable_state(model: nn.Module, groups: list[str]) -> dict[str, torch.Tensor]:
    """Detached copies of every parameter in the named groups."""
    return {n: p.detach().float().contiguous().clone() for n, p in model.named_parameters()
            if any(TRAINABLE_GROUPS[g](n) for g in groups)}


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    save_file(state, str(path))


@torch.no_grad()
def load_state(model: nn.Module, path: Path) -> list[str]:
    """Copy tensors from a safetensors file into same-named parameters; returns the names loaded."""
    state = load_file(str(path))
    params = dict(model.named_parameters())
    for name, tensor in state.items():
        if name not in params:
            raise ValueError(f"{path}: tensor {name!r} has no matching parameter in the model")
        if params[name].shape != tensor.shape:
            raise ValueError(f"{path}: {name!r} has shape {tuple(tensor.shape)}, model expects "
                             f"{tuple(params[name].shape)}")
        params[name].copy_(tensor.to(params[name].dtype))
    return sorted(state)


HISTORY_FIELDS = ["step", "epoch", "loss", "lr"]


def write_history(history: list[dict], path: Path) -> None:
    """One row per optimizer step (a header only when nothing was trained)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]) if history else HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def plot_history(history: list[dict], path: Path, title: str) -> Path:
    """Loss and learning rate against step, one PNG (empty axes, titled as given, when nothing trained)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(steps, [r["loss"] for r in history])
    ax_loss.set(xlabel="step", ylabel="loss", title=f"{title}: loss")
    ax_lr.plot(steps, [r["lr"] for r in history], color="tab:orange")
    ax_lr.set(xlabel="step", ylabel="learning rate", title=f"{title}: learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
