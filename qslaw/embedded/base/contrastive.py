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

Grid term (``cell_weight`` > 0, `qslaw.embedded.base.grounding`): a third temporary head, linear on the patch
states of ``feature_layer``, reads each patch's grid row and column (zeros for an empty patch) and the loss
gains ``cell_weight · Σ_dims (head(h) − target)²`` averaged over patches. InfoNCE only reaches patch states
through the CLS, which needs no patch to know where it is; this term makes the states the projector reads
carry it. Early stopping and the best weights follow the held-out total (InfoNCE + weighted grid term).

Probe: held-out image→caption retrieval top-1 accuracy among the held-out pairs (chance = 1/n), and the grid
term's held-out loss.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from qslaw.embedded.base.grounding import cell_loss
from qslaw.embedded.base.pretrain import Plateau, cosine_lr, make_optimizer


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
    cell_weight: float = 0.0
    """Weight of the patch grid-cell term (0: InfoNCE only)."""
    feature_layer: int = -2
    """Tower hidden state whose patch states the grid term reads (LLaVA's `vision_feature_layer`)."""


@dataclass
class ContrastiveResult:
    """What contrastive pretraining reports (held-out figures)."""

    curve: list[dict[str, float | None]] = field(default_factory=list)
    """One row per evaluation: step, mean train loss since the previous row, held-out loss (InfoNCE + weighted
    grid term), retrieval top-1 and the grid term's held-out loss (None without it)."""
    retrieval_before: float = math.nan
    retrieval_after: float = math.nan
    chance: float = math.nan
    cell_loss_before: float | None = None
    cell_loss_after: float | None = None
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


def tower_losses(tower: nn.Module, heads: ContrastiveHeads, pixels: torch.Tensor, text: torch.Tensor,
                 cell_head: nn.Module | None, targets: torch.Tensor | None,
                 feature_layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(logits, InfoNCE loss, grid-term loss or None) of one batch, from one tower forward."""
    out = tower(pixel_values=pixels, output_hidden_states=cell_head is not None)
    logits = heads(out.pooler_output, text)
    grid = None if cell_head is None else cell_loss(cell_head, out.hidden_states[feature_layer][:, 1:], targets)
    return logits, clip_loss(logits), grid


@torch.no_grad()
def held_out_scores(tower: nn.Module, heads: ContrastiveHeads, pixels: torch.Tensor, text: torch.Tensor,
                    cell_head: nn.Module | None = None, targets: torch.Tensor | None = None, cell_weight: float = 0.0,
                    feature_layer: int = -2) -> tuple[float, float, float | None]:
    """(total loss, image→caption top-1 accuracy, grid-term loss or None) over all held-out pairs at once."""
    was_training = tower.training
    tower.eval()
    logits, loss, grid = tower_losses(tower, heads, pixels, text, cell_head, targets, feature_layer)
    tower.train(was_training)
    hits = (logits.argmax(1) == torch.arange(len(logits))).float().mean().item()
    if grid is None:
        return loss.item(), hits, None
    return (loss + cell_weight * grid).item(), hits, grid.item()


def pretrain_tower(tower: nn.Module, language_model: nn.Module, pixels: torch.Tensor, caption_ids: list[list[int]],
                   pad_id: int, split: tuple[list[int], list[int]], cfg: ContrastiveTrainConfig,
                   progress: bool = True, cell_targets: torch.Tensor | None = None) -> ContrastiveResult:
    """Train the CLIP `tower` in place against frozen caption vectors; restore its best held-out weights.

    `cell_targets` `(N, patches, 2·grid)` (`qslaw.embedded.base.grounding.cell_targets`) switch the grid term on when
    ``cfg.cell_weight`` > 0."""
    train_idx, held = split
    text = caption_vectors(language_model, caption_ids, pad_id)
    torch.manual_seed(cfg.seed)
    heads = ContrastiveHeads(tower.config.hidden_size, text.shape[1])
    use_grid = cell_targets is not None and cfg.cell_weight > 0
    cell_head = nn.Linear(tower.config.hidden_size, cell_targets.shape[-1]) if use_grid else None
    params = [*tower.parameters(), *heads.parameters(), *(cell_head.parameters() if use_grid else ())]
    opt, rng = make_optimizer(params, cfg.lr), random.Random(cfg.seed)
    result, plateau, order = ContrastiveResult(chance=1 / len(held)), Plateau(cfg.patience, cfg.min_delta), []

    def held_out() -> tuple[float, float, float | None]:
        return held_out_scores(tower, heads, pixels[held], text[held], cell_head,
                               cell_targets[held] if use_grid else None, cfg.cell_weight, cfg.feature_layer)

    loss0, result.retrieval_before, result.cell_loss_before = held_out()
    plateau.update(loss0)
    result.cell_loss_after = result.cell_loss_before
    result.curve.append({"step": 0, "train_loss": None, "heldout_loss": loss0, "retrieval": result.retrieval_before,
                         "cell_loss": result.cell_loss_before})
    best, running = {k: v.clone() for k, v in tower.state_dict().items()}, []
    tower.train()
    bar = tqdm(total=cfg.max_steps, desc="tower contrastive", disable=not progress, dynamic_ncols=True)
    for step in range(1, cfg.max_steps + 1):
        if len(order) < cfg.batch_size:
            order = rng.sample(train_idx, len(train_idx))
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step - 1, cfg.lr, max(1, cfg.max_steps // 20), cfg.max_steps)
        _, loss, grid = tower_losses(tower, heads, pixels[idx], text[idx], cell_head,
                                     cell_targets[idx] if use_grid else None, cfg.feature_layer)
        if grid is not None:
            loss = loss + cfg.cell_weight * grid
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running.append(loss.item())
        result.steps = step
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            held_loss, hits, grid_loss = held_out()
            result.curve.append({"step": step, "train_loss": sum(running) / len(running),
                                 "heldout_loss": held_loss, "retrieval": hits, "cell_loss": grid_loss})
            running = []
            bar.set_postfix(loss=f"{held_loss:.3f}", top1=f"{hits:.3f}")
            if plateau.update(held_loss):
                best, result.best_step, result.retrieval_after = tower.state_dict(), step, hits
                result.cell_loss_after = grid_loss
                best = {k: v.clone() for k, v in best.items()}
            if plateau.stopped:
                break
    bar.close()
    tower.load_state_dict(best)
    result.retrieval_after = result.retrieval_after if result.best_step else result.retrieval_before
    return result
