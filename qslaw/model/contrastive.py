"""Contrastive pretraining of the embedded base's CLIP tower against the pretrained LM's view of the captions.

How it works
------------
Why: a random tower's patch features are nearly constant across our pictures (mostly white
background), and teaching a frozen tiny LM to read them through a captioning loss alone does not
work in a CPU budget (measured: held-out caption loss with the right image ≈ with a wrong image after
300 steps). Real LLaVA never faces this: its CLIP tower was pretrained contrastively on image–text
pairs first. We do the same, at toy scale, before LLaVA's stage-1 projector alignment.

Text side (frozen, computed once): each caption is run through the pretrained LM's decoder
(`LlamaModel`, no lm_head) and its final hidden states are mean-pooled over caption tokens:
`t_i ∈ R^{d}` (d = LM width). Because the states are contextual, the pooled vector carries which
colour goes with which shape and cell, not only a bag of words.

Image side (trained): `CLIPVisionModel(pixels).pooler_output` (post-layernorm CLS) → a temporary
linear head → `v_i ∈ R^{d}`; a second temporary linear head maps `t_i`. Both are L2-normalised.

Loss (CLIP's symmetric InfoNCE) over a batch of B pairs with a learnable temperature
`τ = exp(-logit_scale)`, `logits = exp(logit_scale) · V Tᵀ` (B×B)::

    L = ½ (CE(logits, arange(B)) + CE(logitsᵀ, arange(B)))

Only the tower and the two heads learn; the heads are discarded afterwards (the llava-hf format has
no place for them and LLaVA never uses pooled features). The CLS attends to patch states of the
lower layers, so those become informative; this is why LLaVA reads features of layer -2, and why
the spec defaults to `vision_feature_layer=-2` (the last layer serves the CLS only).

Probe: held-out image→caption retrieval top-1 accuracy among the held-out pairs (chance = 1/n).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from qslaw.model.pretrain import Plateau, cosine_lr, make_optimizer


@dataclass(frozen=True)
class ContrastiveTrainConfig:
    """Hyper-parameters of the tower's contrastive pretraining (a view of `EmbeddedModelSpec`)."""

    max_steps: int
    """Upper bound on optimiser steps; also the cosine horizon."""
    batch_size: int
    """Pairs per step (the number of negatives + 1)."""
    lr: float
    """Peak learning rate of the tower and heads."""
    eval_every: int
    """Steps between held-out evaluations."""
    patience: int
    """Evaluations without relative improvement > min_delta before stopping."""
    min_delta: float
    """Relative held-out loss improvement that counts as progress."""
    seed: int
    """Seed of the heads' init and the pair order."""


@dataclass
class ContrastiveResult:
    """What contrastive pretraining reports (held-out figures)."""

    curve: list[dict[str, float | None]] = field(default_factory=list)
    """One row per evaluation: step, mean train loss since the previous row, held-out loss and retrieval top-1."""
    retrieval_before: float = math.nan
    retrieval_after: float = math.nan
    chance: float = math.nan
    best_step: int = 0
    steps: int = 0


@torch.no_grad()
def caption_vectors(language_model: nn.Module, caption_ids: list[list[int]], pad_id: int,
                    batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled final hidden states of each caption under the frozen LM decoder: `(N, d)`."""
    out = []
    for i in range(0, len(caption_ids), batch_size):
        rows = caption_ids[i : i + batch_size]
        ids = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, row in enumerate(rows):
            ids[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
        hidden = language_model(input_ids=ids, attention_mask=mask).last_hidden_state
        out.append((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
    return torch.cat(out)


class ContrastiveHeads(nn.Module):
    """Temporary projections of pooled image and caption vectors into one space, plus CLIP's logit scale."""

    def __init__(self, vision_width: int, text_width: int) -> None:
        super().__init__()
        self.image = nn.Linear(vision_width, text_width, bias=False)
        self.text = nn.Linear(text_width, text_width, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, pooled: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        v = nn.functional.normalize(self.image(pooled), dim=-1)
        t = nn.functional.normalize(self.text(text), dim=-1)
        return self.logit_scale.clamp(max=math.log(100)).exp() * v @ t.T


def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a square logit matrix whose diagonal holds the matching pairs."""
    target = torch.arange(len(logits))
    return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))


@torch.no_grad()
def held_out_scores(tower: nn.Module, heads: ContrastiveHeads, pixels: torch.Tensor,
                    text: torch.Tensor) -> tuple[float, float]:
    """(InfoNCE loss, image→caption top-1 accuracy) over all held-out pairs at once."""
    was_training = tower.training
    tower.eval()
    logits = heads(tower(pixel_values=pixels).pooler_output, text)
    tower.train(was_training)
    hits = (logits.argmax(1) == torch.arange(len(logits))).float().mean().item()
    return clip_loss(logits).item(), hits


def pretrain_tower(tower: nn.Module, language_model: nn.Module, pixels: torch.Tensor, caption_ids: list[list[int]],
                   pad_id: int, split: tuple[list[int], list[int]], cfg: ContrastiveTrainConfig,
                   progress: bool = True) -> ContrastiveResult:
    """Train the CLIP `tower` in place against frozen caption vectors; restore its best held-out weights."""
    train_idx, held = split
    text = caption_vectors(language_model, caption_ids, pad_id)
    torch.manual_seed(cfg.seed)
    heads = ContrastiveHeads(tower.config.hidden_size, text.shape[1])
    params = [*tower.parameters(), *heads.parameters()]
    opt, rng = make_optimizer(params, cfg.lr), random.Random(cfg.seed)
    result, plateau, order = ContrastiveResult(chance=1 / len(held)), Plateau(cfg.patience, cfg.min_delta), []
    loss0, result.retrieval_before = held_out_scores(tower, heads, pixels[held], text[held])
    plateau.update(loss0)
    result.curve.append({"step": 0, "train_loss": None, "heldout_loss": loss0, "retrieval": result.retrieval_before})
    best, running = {k: v.clone() for k, v in tower.state_dict().items()}, []
    tower.train()
    bar = tqdm(total=cfg.max_steps, desc="tower contrastive", disable=not progress, dynamic_ncols=True)
    for step in range(1, cfg.max_steps + 1):
        if len(order) < cfg.batch_size:
            order = rng.sample(train_idx, len(train_idx))
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step - 1, cfg.lr, max(1, cfg.max_steps // 20), cfg.max_steps)
        loss = clip_loss(heads(tower(pixel_values=pixels[idx]).pooler_output, text[idx]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running.append(loss.item())
        result.steps = step
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            held_loss, hits = held_out_scores(tower, heads, pixels[held], text[held])
            result.curve.append({"step": step, "train_loss": sum(running) / len(running),
                                 "heldout_loss": held_loss, "retrieval": hits})
            running = []
            bar.set_postfix(loss=f"{held_loss:.3f}", top1=f"{hits:.3f}")
            if plateau.update(held_loss):
                best, result.best_step, result.retrieval_after = tower.state_dict(), step, hits
                best = {k: v.clone() for k, v in best.items()}
            if plateau.stopped:
                break
    bar.close()
    tower.load_state_dict(best)
    result.retrieval_after = result.retrieval_after if result.best_step else result.retrieval_before
    return result
