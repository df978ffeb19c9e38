"""Windowed language-model perplexity: the pinned WikiText protocol for the base, fp and adapted models.

How it works
------------
The texts are joined with ``"\\n\\n"`` and tokenized **once**, with the tokenizer's own special tokens (for
LLaMA/LLaVA tokenizers: one BOS at the very start, no EOS). The id stream of length ``T`` is cut into
``W = T // window`` non-overlapping windows of exactly ``window`` tokens (``render.chunk_ids``: the
remainder is dropped; no BOS is added per window). Each window is one row of a ``(b, window)`` batch; the
model returns logits ``(b, window, V)``, and token ``t`` of a window is scored from positions ``< t`` of the
same window, so each window predicts ``window - 1`` tokens::

    nll = sum over windows, t = 1..window-1 of  -log softmax(logits[t-1])[id[t]]  /  (W * (window - 1))
    ppl = exp(nll)

Logits are upcast to float32 before the log-softmax; the sum is accumulated in float64. The model is called
as ``model(input_ids=...)`` with no mask (every position is real), so a ``LlamaForCausalLM`` and a text-only
``LlavaForConditionalGeneration`` go through the same code.

This is GPTQ/OmniQuant's ``wikitext2`` evaluation, which QSLAW's code inherits: the same join, single
tokenization and non-overlapping windows; their mean of per-window mean losses equals our mean over all
predicted tokens because every window predicts the same number of tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from qslaw.data.render import chunk_ids
from qslaw.eval.runtime import evaluating, model_device


def text_windows(tokenizer: object, texts: Sequence[str], window: int) -> torch.Tensor:
    """`(n_windows, window)` ids of the joined texts, tokenized once; error if not even one window fits."""
    if window < 2:
        raise ValueError(f"window: must be >= 2 to predict anything, got {window}")
    ids = tokenizer("\n\n".join(texts))["input_ids"]
    if len(ids) < window:
        raise ValueError(f"window: {window} tokens is longer than the whole text ({len(ids)} tokens)")
    return torch.tensor(chunk_ids(ids, window), dtype=torch.long)


@torch.inference_mode()
def window_nll_sum(model: nn.Module, windows: torch.Tensor) -> float:
    """Summed next-token NLL over a `(b, window)` batch of windows."""
    logits = model(input_ids=windows.to(model_device(model)), use_cache=False).logits
    targets = windows[:, 1:].to(logits.device)
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="sum")
    return float(nll.double())


def perplexity(model: nn.Module, tokenizer: object, texts: Sequence[str], window: int,
               batch_size: int = 8) -> dict:
    """`{"perplexity", "nll", "tokens", "windows", "window"}` of `model` on `texts` under the protocol above."""
    windows = text_windows(tokenizer, texts, window)
    with evaluating(model):
        total = sum(window_nll_sum(model, windows[i:i + batch_size]) for i in range(0, len(windows), batch_size))
    tokens = len(windows) * (window - 1)
    nll = total / tokens
    return {"perplexity": math.exp(nll), "nll": nll, "tokens": tokens, "windows": len(windows), "window": window}
