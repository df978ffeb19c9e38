"""Visual instruction tuning of the embedded base: LLaVA-1.5's stage 2 at toy scale, before any task fine-tune.

Why, and where it stands
------------------------
The LLaVA checkpoints people fine-tune on ScienceQA have been instruction-tuned on VQA-style data: they
already read images. The embedded base does not. Measured on the embedded world (session 7):
- the projector alone (stage 1, tower and LM frozen) for 60 steps did not teach the 4-layer LM to read images:
  caption loss with the right image ≈ with another image (460 steps later did: `qslaw.embedded.base.caption`);
- a LoRA fine-tune on the task split does not either: one-shape colour questions stay near chance;
- this phase does teach reading, in its own format: after 200 steps, one-shape colour questions asked as here
  are answered 35/40 right (8/40 with another record's image) and "what colour is the circle" 22/40 (3/40);
- but the reading does not carry over to the task format (lecture, options, then the solution sentence): with
  the gold lecture and solution prefix the base picks the right colour option no more often with the right
  picture than with another one, and the fine-tuned IMG accuracy moved within noise (32.7 → 32.1-41.1 % over
  four variants, chance 25.7 %); tuned without corpus text it also cost 8 points of 4-way fact recognition.
So ``instruct_max_steps`` defaults to 0 (off; the build budget has no room for a phase that does not pay). The
phase stays for the open IMG problem: a reader that works wherever the model writes (a compiled image-word
head, as head 1.2 is for the options) is the next thing to try on top of it.

How it works
------------
Each record (``qslaw.data.sources.load_instructions``: an image and (question, answer) turns about it) is one
vicuna_v1 conversation, the format the task fine-tune uses::

    <s>{system} USER: <image>×P\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>…
    |------------------ labels = -100 ------------||- loss -|----- -100 -----||- loss -|

Trainable: the projector and the LM's attention projections (q, k, v, o). The tower, embeddings, MLPs, norms
and ``lm_head`` stay frozen, and `qslaw.embedded.base.circuits.protect` keeps the compiled heads fixed (the LM's
facts live mostly in its MLPs; measured: tuning the whole LM on Q&A alone cost 8 points of 4-way fact
recognition). Each batch also holds ``text_rows`` corpus chunks with the LM loss, so the attention keeps
serving text. AdamW with warm-up and cosine decay; `Plateau` stops on held-out answer loss and the best
weights are restored.

The report gives held-out exact-match answer accuracy (teacher forced) before and after, and after with every
image swapped for another held-out record's (``acc_mismatched_after``): the gap is what the LM reads from the
picture.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from qslaw.embedded.base.pretrain import Plateau, chunk_stream, cosine_lr, encode_corpus, make_optimizer
from qslaw.embedded.base.tokenizer import IMAGE, VICUNA_SYSTEM

TRAINABLE = ("model.multi_modal_projector.",)
ATTENTION = (".self_attn.q_proj.", ".self_attn.k_proj.", ".self_attn.v_proj.", ".self_attn.o_proj.")


@dataclass(frozen=True)
class InstructTrainConfig:
    """Hyper-parameters of the visual instruction tuning (a view of `EmbeddedModelSpec`)."""

    max_steps: int
    """Upper bound on optimiser steps; also the cosine horizon."""
    batch_size: int
    """Conversations per step."""
    text_rows: int
    """Corpus chunks per step (LM loss), so the LM keeps its text skills."""
    text_len: int
    """Tokens per corpus chunk, bos included."""
    lr: float
    """Peak learning rate."""
    warmup_steps: int
    """Linear warm-up steps."""
    eval_every: int
    """Steps between held-out evaluations."""
    patience: int
    """Evaluations without improvement before stopping."""
    min_delta: float
    """Relative improvement of held-out answer loss that counts as progress."""
    seed: int
    """Seed of the record order and text chunks."""


@dataclass
class InstructData:
    """Every record encoded once: token ids, answer mask and pixel values."""

    ids: list[list[int]]
    answer: list[list[bool]]
    pixel_values: torch.Tensor


@dataclass
class InstructResult:
    """What instruction tuning reports (held-out figures unless named otherwise)."""

    curve: list[dict[str, float | None]] = field(default_factory=list)
    """One row per evaluation: step, mean train loss since the previous row, held-out answer loss and accuracy."""
    acc_before: float = math.nan
    acc_after: float = math.nan
    acc_mismatched_after: float = math.nan
    loss_before: float = math.nan
    loss_after: float = math.nan
    best_step: int = 0
    steps: int = 0
    records: int = 0
    answers: int = 0


def encode_records(processor: object, records: Sequence[tuple[Image.Image, Sequence[tuple[str, str]]]]) -> InstructData:
    """Token ids (image expanded by the processor) and answer masks of every conversation; all pixel values."""
    tok = processor.tokenizer
    ids, answer, images = [], [], []
    for image, turns in records:
        image = image.convert("RGB")
        images.append(image)
        row: list[int] = []
        mask: list[bool] = []
        for k, (question, reply) in enumerate(turns):
            if k == 0:
                text = f"{VICUNA_SYSTEM} USER: {IMAGE}\n{question} ASSISTANT:"
                prompt = list(processor(images=[image], text=text)["input_ids"][0])
            else:
                prompt = tok(f"USER: {question} ASSISTANT:", add_special_tokens=False)["input_ids"]
            reply_ids = tok(f" {reply}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            row += [int(i) for i in prompt] + reply_ids
            mask += [False] * len(prompt) + [True] * len(reply_ids)
        ids.append(row)
        answer.append(mask)
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return InstructData(ids, answer, pixels)


def collate(data: InstructData, idx: Sequence[int], pad_id: int, image_idx: Sequence[int] | None = None) -> dict:
    """Right-padded conversations `idx` with labels on answers; images from `image_idx` (default: the same)."""
    width = max(len(data.ids[i]) for i in idx)
    input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full_like(input_ids, -100)
    mask = torch.zeros_like(input_ids)
    for r, i in enumerate(idx):
        row = torch.tensor(data.ids[i])
        input_ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
        keep = torch.tensor(data.answer[i])
        labels[r, : len(row)][keep] = row[keep]
    pixels = data.pixel_values[list(image_idx if image_idx is not None else idx)]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels}


@torch.no_grad()
def answer_scores(model: nn.Module, data: InstructData, idx: list[int], pad_id: int, batch_size: int,
                  mismatched: bool = False) -> tuple[float, float]:
    """Held-out (mean answer-token loss, exact-match answer accuracy) under teacher forcing.

    An answer counts when every one of its tokens, ``</s>`` included, is the argmax. `mismatched` rolls the
    images by one record, so the score says what the LM gets without the right picture."""
    was_training, loss_sum, tokens, exact, answers = model.training, 0.0, 0, 0, 0
    model.eval()
    images = idx[1:] + idx[:1] if mismatched else idx
    for i in range(0, len(idx), batch_size):
        batch = collate(data, idx[i : i + batch_size], pad_id, images[i : i + batch_size])
        labels = batch.pop("labels")[:, 1:]
        logits = model(**batch).logits[:, :-1].float()
        keep = labels != -100
        loss_sum += nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
        tokens += keep.sum().item()
        right = (logits.argmax(-1) == labels) | ~keep
        for r in range(len(labels)):
            # answer spans: runs of kept positions; a run is exact when all its positions are right
            starts = (keep[r] & ~torch.cat([torch.tensor([False]), keep[r, :-1]])).nonzero().flatten().tolist()
            for start in starts:
                end = start
                while end < keep.shape[1] and keep[r, end]:
                    end += 1
                exact += bool(right[r, start:end].all())
                answers += 1
    model.train(was_training)
    return loss_sum / tokens, exact / answers


def select_trainable(model: nn.Module) -> list[nn.Parameter]:
    """Projector and LM attention projections trainable, every other parameter frozen; the trainable ones."""
    for name, param in model.named_parameters():
        lm_attention = name.startswith("model.language_model.") and any(a in name for a in ATTENTION)
        param.requires_grad_(name.startswith(TRAINABLE) or lm_attention)
    return [p for p in model.parameters() if p.requires_grad]


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def instruct_tune(model: nn.Module, data: InstructData, split: tuple[list[int], list[int]], corpus: list[str],
                  tokenizer: object, cfg: InstructTrainConfig, progress: bool = True,
                  protect_hooks: object = None) -> InstructResult:
    """Tune `model` in place on the conversations `split[0]` + corpus chunks; restore the best held-out weights.

    `protect_hooks(model) -> hooks` registers gradient masks (the compiled circuits) once the trainable set is
    chosen; they are removed before returning."""
    train_idx, held = split
    pad_id = tokenizer.pad_token_id
    trainable = select_trainable(model)
    hooks = protect_hooks(model) if protect_hooks is not None else []
    text = None
    if cfg.text_rows:
        text = chunk_stream(encode_corpus(tokenizer, corpus), cfg.text_len, tokenizer.bos_token_id)
    opt = make_optimizer(trainable, cfg.lr)
    result, plateau = InstructResult(records=len(data.ids)), Plateau(cfg.patience, cfg.min_delta)
    rng = random.Random(cfg.seed)
    result.answers = sum(sum(m) for m in data.answer)
    result.loss_before, result.acc_before = answer_scores(model, data, held, pad_id, cfg.batch_size)
    plateau.update(result.loss_before)
    result.curve.append({"step": 0, "train_loss": None, "heldout_loss": result.loss_before,
                         "heldout_acc": result.acc_before})
    best, running, order = trainable_state(model), [], []
    model.train()
    bar = tqdm(total=cfg.max_steps, desc="visual instruction tuning", disable=not progress, dynamic_ncols=True)
    for step in range(1, cfg.max_steps + 1):
        if len(order) < cfg.batch_size:
            order = rng.sample(train_idx, len(train_idx))
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step - 1, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        loss = model(**collate(data, idx, pad_id)).loss
        if text is not None:
            rows = text[[rng.randrange(len(text)) for _ in range(cfg.text_rows)]]
            text_loss = model(input_ids=rows, labels=rows).loss
            share = cfg.text_rows / (cfg.text_rows + cfg.batch_size)
            loss = (1 - share) * loss + share * text_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running.append(loss.item())
        result.steps = step
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            held_loss, held_acc = answer_scores(model, data, held, pad_id, cfg.batch_size)
            result.curve.append({"step": step, "train_loss": sum(running) / len(running),
                                 "heldout_loss": held_loss, "heldout_acc": held_acc})
            running = []
            bar.set_postfix(loss=f"{held_loss:.3f}", acc=f"{held_acc:.3f}")
            if plateau.update(held_loss):
                best, result.best_step = trainable_state(model), step
            if plateau.stopped:
                break
    bar.close()
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in best.items():
            params[name].copy_(value)
    for param in model.parameters():
        param.requires_grad_(True)
    model.eval()
    result.loss_after, result.acc_after = answer_scores(model, data, held, pad_id, cfg.batch_size)
    result.acc_mismatched_after = answer_scores(model, data, held, pad_id, cfg.batch_size, mismatched=True)[1]
    return result
