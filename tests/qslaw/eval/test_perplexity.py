"""Perplexity protocol: exact value on a uniform model, window bookkeeping, real LLaMA/LLaVA models."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from tiny_models import VOCAB
from torch import nn

from qslaw.eval.perplexity import perplexity, text_windows


class CharTokenizer:
    """One id per character (offset past BOS=1), BOS prepended once, like a LLaMA tokenizer."""

    def __call__(self, text: str) -> dict:
        return {"input_ids": [1] + [2 + ord(c) % (VOCAB - 2) for c in text]}


class Uniform(nn.Module):
    """Logits all equal: every next token has probability 1/V."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.calls: list[tuple[int, ...]] = []

    def forward(self, input_ids: torch.Tensor, **_: object) -> SimpleNamespace:
        self.calls.append(tuple(input_ids.shape))
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


def test_uniform_model_has_perplexity_vocab_size() -> None:
    model = Uniform(32)
    result = perplexity(model, CharTokenizer(), ["abcdefgh", "ijklmnop"], window=5, batch_size=2)
    # 1 BOS + 8 + 2 ("\n\n") + 8 = 19 tokens -> 3 windows of 5, 4 dropped; 4 predicted tokens per window
    assert result["windows"] == 3 and result["tokens"] == 12 and result["window"] == 5
    assert result["perplexity"] == pytest.approx(32, rel=1e-6)
    assert result["nll"] == pytest.approx(math.log(32), rel=1e-6)
    assert model.calls == [(2, 5), (1, 5)]


def test_windows_are_consecutive_and_bos_only_once() -> None:
    windows = text_windows(CharTokenizer(), ["abc", "de"], window=3)
    ids = CharTokenizer()("abc\n\nde")["input_ids"]
    assert windows.tolist() == [ids[0:3], ids[3:6]]
    assert (windows == 1).sum() == 1


def test_text_shorter_than_a_window_names_window() -> None:
    with pytest.raises(ValueError, match="window"):
        perplexity(Uniform(8), CharTokenizer(), ["ab"], window=10)


def test_llama_and_text_only_llava_agree_with_manual_loss(llama: nn.Module, llava: nn.Module) -> None:
    texts = ["the quick brown fox", "jumps over the lazy dog"]
    for model in (llama, llava):
        result = perplexity(model, CharTokenizer(), texts, window=8, batch_size=3)
        windows = text_windows(CharTokenizer(), texts, 8)
        with torch.no_grad():
            manual = torch.stack([model(input_ids=w[None], labels=w[None]).loss for w in windows]).mean()
        assert result["nll"] == pytest.approx(manual.item(), rel=1e-5)
        assert not model.training
