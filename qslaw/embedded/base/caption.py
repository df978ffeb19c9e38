"""LLaVA stage-1 on the embedded base: the projector learns to caption images through the frozen LM.

How it works
------------
After the CLIP tower has been pretrained contrastively (`qslaw.embedded.base.contrastive`), the projector
is aligned as in LLaVA-1.5's feature-alignment stage: tower and LM frozen, the projector alone
trained on captioning. Like LLaVA's `--version plain` (no system prompt, no roles) each pair is::

    <s><image>×P\nDescribe the image briefly. {caption}</s>
    |-------- labels = -100 ------------------||- loss --|

`<image>` is expanded by the processor itself, so the prompt holds exactly `num_image_tokens`
placeholder ids. The prompt ids are identical for every pair and computed once; the caption ids are
`tokenize(" " + caption) + [eos]` (byte-level BPE never merges across the "." / " " boundary, so
this equals tokenizing the whole string). Batches are right-padded with the pad id (= unk) and
masked. Pixel values of all pairs are computed once by the image processor: `(N, 3, S, S)` fp32.

Loss: the mean cross-entropy over caption tokens, as `LlavaForConditionalGeneration(labels=...)` computes it,
but with logits only from the position before the batch's first caption token on (`caption_loss`: the
model's ``logits_to_keep``), so the image and prompt positions skip ``lm_head`` and the softmax; the
gradient reaches the projector through the frozen LM. AdamW + warm-up/cosine as for the LM.

The held-out pairs (shared with the contrastive phase) are scored every `eval_every` steps; `Plateau`
stops when their caption loss stops falling and the best projector is restored. The report gives,
on the held-out pairs: caption loss and teacher-forced token accuracy before and after, and the loss
after training with each image swapped for another pair's ("mismatched"): the gap between matched
and mismatched loss says how much the frozen LM already reads from the image. The step budget matters: with
60 steps the held-out loss was 0.76 with the right picture and 0.78 with another (the LM hardly read it); 400
more steps on the same base brought it to 0.46 against 0.55, and the fp LoRA fine-tune on the task
(`benchmarks.benchmark_check`) then scored IMG 52.4 % instead of 35.7 % (chance 25.7), a sentence's missing
word 50 % instead of 21 %. The default was 400 steps (a fresh build: 0.46 against 0.59; 116-219 s of the
base's build time on the 2-core CPU on 2026-12-03) and is 300 since (three fresh builds the same day: 0.45-0.47
against 0.53-0.61, 94-97 s with `caption_loss`; the fine-tuned IMG scores in the README).

Word term (``word_weight`` > 0 and `WordTargets` given, `qslaw.embedded.base.grounding`): the projector's output is
caught by a forward hook and the loss gains ``word_weight · (1 − mean cos)`` between each labelled patch's
projected token (in the compared dims) and the summed embedding of the words naming its object. Early stopping
then follows the held-out caption loss plus the weighted word term; the report gives the held-out mean cosine
before and after and per evaluation (None without the term).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from qslaw.embedded.base.grounding import word_loss
from qslaw.embedded.base.pretrain import Plateau, cosine_lr, make_optimizer

CAPTION_INSTRUCTION = "Describe the image briefly."
TRAINABLE_PREFIXES = ("model.multi_modal_projector.",)


@dataclass(frozen=True)
class CaptionTrainConfig:
    """Hyper-parameters of the projector's caption alignment (a view of `EmbeddedModelSpec`)."""

    max_steps: int
    """Upper bound on optimiser steps; also the cosine horizon."""
    batch_size: int
    """Pairs per step."""
    lr: float
    """Peak learning rate of the projector."""
    warmup_steps: int
    """Linear warm-up steps."""
    eval_every: int
    """Steps between held-out evaluations."""
    patience: int
    """Evaluations without improvement before stopping."""
    min_delta: float
    """Relative improvement of held-out caption loss that counts as progress."""
    seed: int
    """Seed of the pair order."""
    word_weight: float = 0.0
    """Weight of the patch-word term (0: caption loss only)."""


@dataclass(frozen=True)
class WordTargets:
    """Per-pair patch targets of the word term (`qslaw.embedded.base.grounding.word_targets`)."""

    targets: torch.Tensor
    """`(N, patches, dims)` summed word embeddings."""
    mask: torch.Tensor
    """`(N, patches)` bool: the patch's cell holds a named object."""
    dims: slice
    """The projected token's dims compared with the targets."""


@dataclass
class CaptionData:
    """All pairs, encoded once: shared prompt ids, per-pair caption ids, and pixel values."""

    prompt_ids: list[int]
    caption_ids: list[list[int]]
    pixel_values: torch.Tensor


@dataclass
class CaptionResult:
    """What caption pretraining reports (held-out figures unless named otherwise)."""

    curve: list[dict[str, float | None]] = field(default_factory=list)
    """One row per evaluation: step, mean train loss since the previous row, held-out caption loss, token accuracy
    and word cosine (None without the word term)."""
    loss_before: float = math.nan
    loss_after: float = math.nan
    token_acc_before: float = math.nan
    token_acc_after: float = math.nan
    loss_mismatched_after: float = math.nan
    word_cos_before: float | None = None
    word_cos_after: float | None = None
    best_step: int = 0
    steps: int = 0
    stopped_early: bool = False


def encode_pairs(processor: object, pairs: Sequence[tuple[Image.Image, str]]) -> CaptionData:
    """Tokenize the shared prompt (image tokens expanded by the processor) and every caption; process all images."""
    images = [image.convert("RGB") for image, _ in pairs]
    prompt = f"{processor.image_token}\n{CAPTION_INSTRUCTION}"
    prompt_ids = list(processor(images=images[:1], text=prompt)["input_ids"][0])
    tok = processor.tokenizer
    captions = tok([" " + caption.strip() for _, caption in pairs], add_special_tokens=False)["input_ids"]
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return CaptionData(prompt_ids, [ids + [tok.eos_token_id] for ids in captions], pixels)


def collate(data: CaptionData, idx: Sequence[int], pad_id: int, image_idx: Sequence[int] | None = None) -> dict:
    """Right-padded model inputs for pairs `idx`; images come from `image_idx` (default: the same pairs)."""
    rows = [data.prompt_ids + data.caption_ids[i] for i in idx]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full_like(input_ids, -100)
    mask = torch.zeros_like(input_ids)
    n_prompt = len(data.prompt_ids)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = torch.tensor(row)
        labels[r, n_prompt : len(row)] = input_ids[r, n_prompt : len(row)]
        mask[r, : len(row)] = 1
    pixels = data.pixel_values[list(image_idx if image_idx is not None else idx)]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels}


@torch.no_grad()
def teacher_forced(model: nn.Module, data: CaptionData, idx: list[int], pad_id: int, batch_size: int,
                   mismatched: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(next-token labels, logits) per batch of pairs `idx`, aligned; `mismatched` rolls images by one."""
    images = idx[1:] + idx[:1] if mismatched else idx
    for i in range(0, len(idx), batch_size):
        batch = collate(data, idx[i : i + batch_size], pad_id, images[i : i + batch_size])
        labels = batch.pop("labels")[:, 1:]
        yield labels, model(**batch).logits[:, :-1].float()


def caption_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The mean cross-entropy over the batch's caption tokens, as ``model(**batch).loss`` gives it, with logits
    only from the position before the batch's first caption token on (``logits_to_keep``): the image and prompt
    positions, over half of each row, never reach ``lm_head`` or the softmax."""
    batch = dict(batch)
    labels = batch.pop("labels")
    first = int((labels != -100).any(0).nonzero()[0])
    logits = model(**batch, logits_to_keep=labels.shape[1] - first + 1).logits[:, :-1]
    return nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels[:, first:].flatten(), ignore_index=-100)


def caption_scores(model: nn.Module, data: CaptionData, idx: list[int], pad_id: int, batch_size: int,
                   mismatched: bool = False) -> tuple[float, float]:
    """Held-out (mean caption-token loss, teacher-forced token accuracy); `mismatched` rolls images by one."""
    was_training, loss_sum, correct, count = model.training, 0.0, 0, 0
    model.eval()
    for labels, logits in teacher_forced(model, data, idx, pad_id, batch_size, mismatched):
        keep = labels != -100
        loss_sum += nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
        correct += (logits.argmax(-1)[keep] == labels[keep]).sum().item()
        count += keep.sum().item()
    model.train(was_training)
    return loss_sum / count, correct / count


def freeze_all_but_projector(model: nn.Module) -> list[nn.Parameter]:
    """Freeze every parameter except the projector's; return the trainable ones."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(TRAINABLE_PREFIXES))
    return [p for p in model.parameters() if p.requires_grad]


def projector_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the projector's weights."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(TRAINABLE_PREFIXES)}


def split_pairs(n: int, holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle pair indices with `seed`; the last `holdout` are held out (at least one pair trains)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    holdout = min(holdout, n - 1)
    return order[: n - holdout], order[n - holdout :]


class ProjectedTokens:
    """A forward hook on LLaVA's projector keeping its latest output (the projected image tokens)."""

    def __init__(self, model: nn.Module) -> None:
        self.tokens: torch.Tensor | None = None
        self.handle = model.model.multi_modal_projector.register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        self.tokens = output

    def remove(self) -> None:
        self.handle.remove()


@torch.no_grad()
def word_cosine(model: nn.Module, data: CaptionData, idx: list[int], words: WordTargets, batch_size: int) -> float:
    """Mean cosine between projected tokens and their word targets over the labelled patches of pairs `idx`."""
    was_training, tap, total, count = model.training, ProjectedTokens(model), 0.0, 0
    model.eval()
    try:
        for i in range(0, len(idx), batch_size):
            rows = idx[i : i + batch_size]
            model.model.get_image_features(pixel_values=data.pixel_values[rows])
            mask = words.mask[rows]
            total += (1 - word_loss(tap.tokens[..., words.dims], words.targets[rows], mask)).item() * mask.sum().item()
            count += mask.sum().item()
    finally:
        tap.remove()
        model.train(was_training)
    return total / count if count else math.nan


def align_projector(model: nn.Module, data: CaptionData, split: tuple[list[int], list[int]], pad_id: int,
                    cfg: CaptionTrainConfig, progress: bool = True, words: WordTargets | None = None) -> CaptionResult:
    """Caption-train `model`'s projector in place (tower and LM frozen); restore the best held-out weights.

    With `words` and ``cfg.word_weight`` > 0 the patch-word term joins the caption loss (module docstring)."""
    train_idx, held = split
    trainable = freeze_all_but_projector(model)
    opt = make_optimizer(trainable, cfg.lr)
    result, plateau, rng = CaptionResult(), Plateau(cfg.patience, cfg.min_delta), random.Random(cfg.seed)
    use_words = words is not None and cfg.word_weight > 0

    def held_out() -> tuple[float, float, float | None, float]:
        """Held-out (caption loss, token accuracy, word cosine or None, the total early stopping follows)."""
        loss, acc = caption_scores(model, data, held, pad_id, cfg.batch_size)
        if not use_words:
            return loss, acc, None, loss
        cos = word_cosine(model, data, held, words, cfg.batch_size)
        return loss, acc, cos, loss + cfg.word_weight * (1 - cos)

    result.loss_before, result.token_acc_before, result.word_cos_before, total = held_out()
    plateau.update(total)
    result.curve.append({"step": 0, "train_loss": None, "heldout_loss": result.loss_before,
                         "heldout_token_acc": result.token_acc_before, "word_cos": result.word_cos_before})
    tap = ProjectedTokens(model) if use_words else None
    best, running, order = projector_state(model), [], []
    model.train()
    bar = tqdm(total=cfg.max_steps, desc="projector alignment", disable=not progress, dynamic_ncols=True)
    for step in range(1, cfg.max_steps + 1):
        if len(order) < cfg.batch_size:
            order = rng.sample(train_idx, len(train_idx))
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step - 1, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        loss = caption_loss(model, collate(data, idx, pad_id))
        if use_words:
            loss = loss + cfg.word_weight * word_loss(tap.tokens[..., words.dims], words.targets[idx], words.mask[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running.append(loss.item())
        result.steps = step
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            held_loss, held_acc, cos, total = held_out()
            result.curve.append({"step": step, "train_loss": sum(running) / len(running),
                                 "heldout_loss": held_loss, "heldout_token_acc": held_acc, "word_cos": cos})
            running = []
            bar.set_postfix(loss=f"{held_loss:.3f}", acc=f"{held_acc:.3f}")
            if plateau.update(total):
                best, result.best_step = projector_state(model), step
            if plateau.stopped:
                result.stopped_early = step < cfg.max_steps
                break
    bar.close()
    if tap is not None:
        tap.remove()
    model.load_state_dict(best, strict=False)
    for param in model.parameters():
        param.requires_grad_(True)
    model.eval()
    result.loss_after, result.token_acc_after = caption_scores(model, data, held, pad_id, cfg.batch_size)
    result.loss_mismatched_after = caption_scores(model, data, held, pad_id, cfg.batch_size, mismatched=True)[0]
    if use_words:
        result.word_cos_after = word_cosine(model, data, held, words, cfg.batch_size)
    return result
