"""Language-model pretraining of the embedded base: next-token loss on the world corpus, early-stopped on validation.

How it works
------------
Data: the training texts are joined one per line (WikiText-style lines that already end in "\\n"
are not doubled) and tokenized once (no specials), giving one
long id stream of `N` tokens. Each epoch starts at a random offset in `[0, seq_len)`, cuts the stream
into chunks of `seq_len - 1` ids, prepends `<s>` to each (every prompt the model later sees starts
with bos) and shuffles the chunks; batches are `(batch_size, seq_len)` int64. Validation chunks are
cut the same way from the validation texts (offset 0, at most `max_val_chunks`, so an evaluation
costs a fixed, small number of forward passes).

Objective: the usual causal-LM loss, `L = -mean_t log p(x_{t+1} | x_{≤t})`, computed by
`LlamaForCausalLM(labels=input_ids)` (it shifts internally). Validation perplexity is
`exp(mean over validation chunks of L)` (chunks have equal length, so this is the token mean).

Optimiser: AdamW (β = 0.9, 0.95, no weight decay: we *want* the LM to memorise the corpus facts)
with linear warm-up then cosine decay to 10 % of the peak over `max_steps` (`cosine_lr`). Every
`eval_every` steps the validation perplexity is measured; `Plateau` stops training once it has not
improved by a relative `min_delta` for `patience` evaluations, and the best weights seen are
restored at the end, so an over-run costs time but never quality.

Precision: fp32. On the project's 2-core AVX-512 CPU (no AMX) bf16 autocast was measured *slower*
for this width (≈4.0k vs 6.9k tokens/s at 4 × 256, batch 16 × 128), so we do not use it.
Threads: `torch_threads` sets `torch.set_num_threads` for the build to the cores that are idle when it
starts (sampled from /proc/stat over 0.25 s, at least 1; the load average would still count the
previous pipeline stage) and restores the previous value afterwards. On the
2-core machine two busy OpenMP threads next to another busy process were measured 5-10× slower per
step than one thread (their barriers wait on a descheduled partner), so we never oversubscribe.
Results then depend slightly on the thread count (float reduction order).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

T = TypeVar("T")


@dataclass(frozen=True)
class LMTrainConfig:
    """Hyper-parameters of one LM pretraining run (a view of `EmbeddedModelSpec`)."""

    max_steps: int
    """Upper bound on optimiser steps; also the cosine horizon."""
    batch_size: int
    """Chunks per step."""
    seq_len: int
    """Tokens per chunk, bos included."""
    lr: float
    """Peak learning rate."""
    warmup_steps: int
    """Linear warm-up steps."""
    eval_every: int
    """Steps between validation evaluations."""
    patience: int
    """Evaluations without improvement before stopping."""
    min_delta: float
    """Relative improvement of validation perplexity that counts as progress."""
    max_val_chunks: int
    """Cap on validation chunks per evaluation."""
    seed: int
    """Seed of the chunk order."""
    synthetic_share: float = 0.0
    """Share of each batch's rows replaced by synthetic rows when `pretrain_lm` gets a generator."""


@dataclass
class Plateau:
    """Early-stopping tracker over a value to minimise (a perplexity or a loss).

    `update` returns True when `value` is a new best (so the caller keeps those weights); `stale` counts
    evaluations since the value last fell by more than a relative `min_delta` below `anchor`.
    """

    patience: int
    min_delta: float
    best: float = math.inf
    anchor: float = math.inf
    stale: int = 0

    def update(self, value: float) -> bool:
        if value < self.anchor * (1.0 - self.min_delta):
            self.anchor, self.stale = value, 0
        else:
            self.stale += 1
        new_best = value < self.best
        self.best = min(self.best, value)
        return new_best

    @property
    def stopped(self) -> bool:
        return self.stale >= self.patience


@dataclass
class LMResult:
    """What LM pretraining reports: the curve and the summary figures."""

    curve: list[dict[str, float | None]] = field(default_factory=list)
    """One row per evaluation: step, mean train loss since the previous row (None at step 0), validation perplexity."""
    best_step: int = 0
    best_val_ppl: float = math.inf
    initial_val_ppl: float = math.inf
    steps: int = 0
    stopped_early: bool = False
    tokens_seen: int = 0


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is no /proc."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def idle_cores(interval: float = 0.25) -> int:
    """Cores not busy with other processes, sampled over `interval` seconds (at least 1; all where unknown)."""
    cores = os.cpu_count() or 1
    before = _cpu_times()
    time.sleep(interval)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return cores
    busy = cores * (after[0] - before[0]) / (after[1] - before[1])
    return max(1, min(cores, round(cores - busy)))


@contextlib.contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Use `n` (default: `idle_cores()`) intra-op threads inside the block, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, n or idle_cores()))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cosine_lr(step: int, peak: float, warmup: int, total: int, floor: float = 0.1) -> float:
    """Learning rate at `step`: linear warm-up to `peak`, then cosine decay to `floor * peak` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def encode_corpus(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> torch.Tensor:
    """Join `texts` one per line and tokenize once, without specials: a 1-D int64 id stream."""
    ids = tokenizer("\n".join(text.rstrip("\n") for text in texts), add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def chunk_stream(stream: torch.Tensor, seq_len: int, bos_id: int, offset: int = 0) -> torch.Tensor:
    """Cut `stream[offset:]` into rows of `seq_len - 1` ids and prepend bos: `(n_chunks, seq_len)`."""
    body = seq_len - 1
    n = (stream.numel() - offset) // body
    if n < 1:
        raise ValueError(f"corpus too short: {stream.numel()} tokens for seq_len {seq_len}")
    rows = stream[offset : offset + n * body].view(n, body)
    return torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), rows], dim=1)


def batches(stream: torch.Tensor, cfg: LMTrainConfig, bos_id: int,
            synthetic: Callable[[int, int], torch.Tensor] | None = None) -> Iterator[torch.Tensor]:
    """Endless `(batch_size, seq_len)` batches: a new random offset and chunk order every epoch.

    With `synthetic` (``row(seq_len, bos_id)``, e.g. `qslaw.embedded.base.circuits.SyntheticRows.row`) the first
    ``round(synthetic_share · batch_size)`` rows of every batch are replaced by its rows.
    """
    rng = random.Random(cfg.seed)
    n_synthetic = round(cfg.synthetic_share * cfg.batch_size) if synthetic is not None else 0
    while True:
        chunks = chunk_stream(stream, cfg.seq_len, bos_id, rng.randrange(cfg.seq_len - 1))
        order = torch.randperm(len(chunks), generator=torch.Generator().manual_seed(rng.randrange(2**31)))
        for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            batch = chunks[order[i : i + cfg.batch_size]].clone()
            for r in range(n_synthetic):
                batch[r] = synthetic(cfg.seq_len, bos_id)
            yield batch


@torch.no_grad()
def perplexity(model: nn.Module, chunks: torch.Tensor, batch_size: int) -> float:
    """exp of the mean causal-LM loss over equal-length `chunks` (model put back in its previous mode)."""
    was_training = model.training
    model.eval()
    losses = [model(input_ids=chunks[i : i + batch_size], labels=chunks[i : i + batch_size]).loss.item()
              for i in range(0, len(chunks), batch_size)]
    model.train(was_training)
    return math.exp(sum(losses) / len(losses))


def make_optimizer(params: Iterable[nn.Parameter], lr: float) -> torch.optim.AdamW:
    """AdamW (β = 0.9, 0.95, no weight decay) over the parameters that require grad."""
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, betas=(0.9, 0.95), weight_decay=0.0)


def pretrain_lm(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    corpus_train: list[str],
    corpus_validation: list[str],
    cfg: LMTrainConfig,
    progress: bool = True,
    synthetic: Callable[[int, int], torch.Tensor] | None = None,
) -> LMResult:
    """Train `model` (a LlamaForCausalLM) in place on the corpus (plus `synthetic` rows, see `batches`);
    restore its best-validation weights (validation is corpus text only)."""
    bos = tokenizer.bos_token_id
    val = chunk_stream(encode_corpus(tokenizer, corpus_validation), cfg.seq_len, bos)[: cfg.max_val_chunks]
    data = batches(encode_corpus(tokenizer, corpus_train), cfg, bos, synthetic)
    opt = make_optimizer(model.parameters(), cfg.lr)
    result, plateau = LMResult(), Plateau(cfg.patience, cfg.min_delta)
    result.initial_val_ppl = perplexity(model, val, cfg.batch_size)
    plateau.update(result.initial_val_ppl)
    result.curve.append({"step": 0, "train_loss": None, "val_ppl": result.initial_val_ppl})
    best_state, running = copy.deepcopy(model.state_dict()), []
    model.train()
    bar = tqdm(total=cfg.max_steps, desc="LM pretrain", disable=not progress, dynamic_ncols=True)
    for step in range(1, cfg.max_steps + 1):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step - 1, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        x = next(data)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running.append(loss.item())
        result.steps, result.tokens_seen = step, result.tokens_seen + x.numel()
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            ppl = perplexity(model, val, cfg.batch_size)
            result.curve.append({"step": step, "train_loss": sum(running) / len(running), "val_ppl": ppl})
            running = []
            bar.set_postfix(loss=f"{result.curve[-1]['train_loss']:.3f}", val_ppl=f"{ppl:.2f}")
            if plateau.update(ppl):
                best_state, result.best_step = copy.deepcopy(model.state_dict()), step
            if plateau.stopped:
                result.stopped_early = step < cfg.max_steps
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    result.best_val_ppl = plateau.best
    return result


def timed(fn: Callable[..., T], *args: object, **kwargs: object) -> tuple[T, float]:
    """Call `fn` and return (its result, wall seconds)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
