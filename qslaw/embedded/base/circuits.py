"""Compiled in-context circuits for the embedded LM: copy (induction) and option-letter lookup, built into the init.

Why
---
A ScienceQA answer needs two in-context skills: copy what the context says (the hint's day, the option's
words) and turn the chosen content into its option letter. Gradient descent finds neither in the embedded
base's 4-minute CPU budget: the 4 × 256 Llama trained *only* on repeated random-token rows still predicts
the repeats at chance after 1,500 steps (the induction "plateau", Olsson et al. 2022), so every fine-tuned
model answered at chance and the benchmark could not tell methods apart. So we write the circuits into the
initial weights, as compiled transformers do (Tracr, Lindner et al. 2023), keep them fixed while the rest of
the LM pretrains around them, and let every later stage (quantization, γ, LoRA) treat them as ordinary weights.

How it works
------------
The residual stream (width ``d``) gets reserved subspaces: ``T`` (token code, ``n`` dims, the only trainable
embedding dims), ``PV`` (previous token's code), ``O`` (copied code, read by ``lm_head``), ``LID`` (one dim per
option letter A–E, set only in those letters' embeddings), ``P2`` (the letter three tokens back), ``LT`` (the
letter found for this token), ``AN`` (the letter to answer) and ``C`` (a constant, the last dim). With
``n = min(head_dim, (d - 21) // 3)`` the default 256-wide LM uses ``n = 64``. Heads 0-1 of layers 0-2 and head 2
of layer 1 are set:

| layer.head | query · key (RoPE pairs)                              | value → out  | does                         |
|------------|-------------------------------------------------------|--------------|------------------------------|
| 0.0        | C · R(1)C on the 4 fastest pairs (peak at Δ = −1)      | T → PV       | previous-token head          |
| 0.1        | C · R(3)C (peak at Δ = −3)                             | LID → P2     | "(X) w": letter of option word |
| 1.0        | P·T · P·PV on the slow (position-invariant) pairs      | T → O        | induction: copy what followed |
| 1.1        | P'·T · P'·PV, slow pairs                               | P2 → LT      | letter of this token's option |
| 1.2        | C · ΣP2 on the slowest pair (position-invariant)       | PV → O (×¾)  | favour the options' words     |
| 2.0        | C · C on one mid pair (recency) + C · ΣLT (typed)      | LT → AN      | letter of the latest match    |

Head 1.2 attends to the token after each option's first word (where 0.1 put the option's letter and 0.0 the
word's code) and writes a share of those codes into ``O``, so wherever the model writes, the options' words get
part of a copy's logit. A fine-tuned model recalls a NO answer from memory as one sentence ("The capital of Sydym
is …"); the base's memory alone writes the right value there for 40 % of the test questions and some option for
53 %; a base built with head 1.2 on the same world, 53 % and 71 % (`option_boost` in the build report
measures the margin; after pretraining it reads ≈ 0 at "The answer is", the LM having learned to discount it there).
``lm_head`` reads ``O`` with the token codes (copying) and the answer letters ``" A"…" E"`` read ``AN``.
``rope_theta`` is 10⁶ so the slow half of each head's pairs rotates < 0.3 rad over a 256-token prompt. At init
the default LM copies repeated random tokens (``repeat_top1`` 0.90) and names the letter of the option a text
has just mentioned (``lookup_accuracy`` 0.81, chance ≈ 0.32); after pretraining 0.95 and 0.79 (build report).
`protect` registers gradient masks that keep the compiled rows, the reserved embedding dims, the norms'
reserved entries and the letter readout fixed, and stops every other head and MLP from writing into the
letter subspaces; `SyntheticRows` mixes a share of repeated-token and option-lookup rows into pretraining so
the rest of the LM learns to use (not overwrite) the circuits.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import torch
from torch import nn

LETTERS = "ABCDE"
"""Option letters the lookup circuit knows (ScienceQA has at most 5 choices)."""


OPTION_SHARPNESS = 1.3
"""Query/key weight of head 1.2 (option first words): their score exceeds a plain token's by about 10."""
OPTION_GAIN = 0.75
"""Head 1.2's write into ``O``: spread over the options, each gets a fraction of a copied token's logit."""
COMPILED_HEADS = (2, 3, 2)
"""Compiled heads (the first ones) of layers 0, 1, 2; layer 1's third is head 1.2 (option first words)."""


@dataclass(frozen=True)
class Layout:
    """Reserved residual dims of the compiled circuits."""

    n: int
    hidden: int
    head_dim: int
    m: int = len(LETTERS)

    def dims(self, name: str) -> slice:
        n, m, b = self.n, self.m, 3 * self.n
        return {"T": slice(0, n), "PV": slice(n, 2 * n), "O": slice(2 * n, 3 * n), "LID": slice(b, b + m),
                "P2": slice(b + m, b + 2 * m), "LT": slice(b + 2 * m, b + 3 * m), "AN": slice(b + 3 * m, b + 4 * m),
                "letters": slice(b, b + 4 * m)}[name]

    @property
    def const(self) -> int:
        return self.hidden - 1


def layout_for(hidden_size: int, num_heads: int, num_layers: int) -> Layout:
    """The circuit layout for an LM shape; ValueError naming what is too small."""
    head_dim = hidden_size // num_heads
    if num_layers < 3:
        raise ValueError(f"num_hidden_layers: the compiled circuits need >= 3 decoder layers, got {num_layers}")
    if num_heads < 2:
        raise ValueError(f"num_attention_heads: the compiled circuits need >= 2 heads, got {num_heads}")
    n = min(head_dim, (hidden_size - 4 * len(LETTERS) - 1) // 3)
    if n < 16 or head_dim < 32:
        raise ValueError(f"hidden_size: {hidden_size} with {num_heads} heads leaves too few dims for the compiled "
                         "circuits (need a token code of >= 16 dims and head_dim >= 32)")
    return Layout(n, hidden_size, head_dim)


def letter_token_ids(tokenizer: object) -> tuple[list[int], list[int]]:
    """Ids of the option letters as written in options ``"(A)"`` and as answered ``" A"``; each must be one token."""
    inside, answered = [], []
    for letter in LETTERS:
        a = tokenizer(f"({letter})", add_special_tokens=False).input_ids
        b = tokenizer(f" {letter}", add_special_tokens=False).input_ids
        if len(b) != 1 or tokenizer.convert_tokens_to_ids(letter) not in a:
            raise ValueError(f"tokenizer: option letter {letter!r} must be its own token in '({letter})' and "
                             f"' {letter}'")
        inside.append(tokenizer.convert_tokens_to_ids(letter))
        answered.append(b[0])
    return inside, answered


def content_token_ids(tokenizer: object) -> torch.Tensor:
    """Every id of `tokenizer` that is not a special token (what repeated-token rows and probes draw from)."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special])


def _positional(attn: nn.Module, row: int, pairs: list[int], freqs: list[float], scale: float, shift: int,
                const: int, half: int) -> None:
    """Query C on `pairs`, key C rotated by `shift` positions: the score peaks at Δ = -shift."""
    for p in pairs:
        attn.q_proj.weight[row + p, const] = scale
        attn.k_proj.weight[row + p, const] = scale * math.cos(shift * freqs[p])
        attn.k_proj.weight[row + p + half, const] = scale * math.sin(shift * freqs[p])


@torch.no_grad()
def install_circuits(lm: nn.Module, tokenizer: object, seed: int = 0) -> Layout:
    """Write the circuits into a freshly initialised ``LlamaForCausalLM`` (in place); returns the layout."""
    cfg = lm.config
    lay = layout_for(cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers)
    inside, answered = letter_token_ids(tokenizer)
    hd, half, n, m, c = lay.head_dim, lay.head_dim // 2, lay.n, lay.m, lay.const
    theta = cfg.rope_parameters["rope_theta"]
    freqs = [theta ** (-2 * p / hd) for p in range(half)]
    fast, slow, recency = [0, 1, 2, 3], list(range(half // 2, half)), 6
    slow_dims = slow + [p + half for p in slow]
    g = torch.Generator().manual_seed(seed)

    def projection(rows: int, cols: int) -> torch.Tensor:
        q, _ = torch.linalg.qr(torch.randn(cols, rows, generator=g))
        return q.T * math.sqrt(cols / rows)

    T, PV, OUT, LID, P2, LT, AN = (lay.dims(k) for k in ("T", "PV", "O", "LID", "P2", "LT", "AN"))
    E = lm.model.embed_tokens.weight
    E.zero_()
    E[:, T] = torch.randn(E.shape[0], n, generator=g)
    E[:, c] = 4.0
    for r, i in enumerate(inside):
        E[i, LID.start + r] = 2.0
    l0, l1, l2 = (lm.model.layers[i].self_attn for i in range(3))
    for a, heads in zip((l0, l1, l2), COMPILED_HEADS, strict=True):
        for w in (a.q_proj, a.k_proj, a.v_proj):
            w.weight[: heads * hd] = 0
        a.o_proj.weight[:, : heads * hd] = 0
    # 0.0 previous token -> PV ; 0.1 the token three back (an option's letter, seen from its first word) -> P2
    _positional(l0, 0, fast, freqs, 3.0, 1, c, half)
    l0.v_proj.weight[0:n, T] = torch.eye(n)
    l0.o_proj.weight[PV, 0:n] = torch.eye(n)
    _positional(l0, hd, fast, freqs, 3.0, 3, c, half)
    l0.v_proj.weight[hd:hd + m, LID] = torch.eye(m)
    l0.o_proj.weight[P2, hd:hd + m] = torch.eye(m)
    # 1.0 induction: this token's code against the previous-token code of each key -> copy what followed
    # 1.1 the same match, reading the letter three back from there -> the option letter of this token
    p0, p1 = projection(len(slow_dims), n), projection(len(slow_dims), n)
    for i, dim in enumerate(slow_dims):
        l1.q_proj.weight[dim, T] = p0[i]
        l1.k_proj.weight[dim, PV] = p0[i]
        l1.q_proj.weight[hd + dim, T] = 1.5 * p1[i]
        l1.k_proj.weight[hd + dim, PV] = 1.5 * p1[i]
    l1.v_proj.weight[0:n, T] = torch.eye(n)
    l1.o_proj.weight[OUT, 0:n] = torch.eye(n)
    l1.v_proj.weight[hd:hd + m, P2] = torch.eye(m)
    l1.o_proj.weight[LT, hd:hd + m] = torch.eye(m)
    # 1.2 every option's first word (the key just after it carries its letter in P2 and the word in PV) -> O:
    # the options get a share of a copy's logit wherever the model writes, so a value recalled weakly from
    # memory is written as the option it is closest to
    for q in (2 * hd + half - 1, 3 * hd - 1):  # both halves of the slowest pair: the score barely depends on distance
        l1.q_proj.weight[q, c] = OPTION_SHARPNESS
        l1.k_proj.weight[q, P2] = OPTION_SHARPNESS
    l1.v_proj.weight[2 * hd:2 * hd + n, PV] = torch.eye(n)
    l1.o_proj.weight[OUT, 2 * hd:2 * hd + n] = OPTION_GAIN * torch.eye(n)
    # 2.0 the most recent position that found a letter (recency on one mid pair + typed on ΣLT) -> AN
    _positional(l2, 0, [recency], freqs, 2.0, 0, c, half)
    l2.q_proj.weight[slow[-1], c] = 12.0
    l2.k_proj.weight[slow[-1], LT] = 12.0 / math.sqrt(m)
    l2.v_proj.weight[0:m, LT] = torch.eye(m)
    l2.o_proj.weight[AN, 0:m] = 4.0 * torch.eye(m)
    W = lm.lm_head.weight
    W.zero_()
    W[:, OUT] = E[:, T]
    for r, token in enumerate(answered):
        W[token, OUT] = 0
        W[token, AN.start + r] = 4.0
    return lay


def protect(lm: nn.Module, lay: Layout, tokenizer: object) -> list:
    """Gradient masks that keep the compiled circuits fixed while the rest of the LM trains; returns the hooks.

    Frozen: heads 0-1 of layers 0-2 and head 2 of layer 1, every embedding dim but the token code, the letter
    readout of ``lm_head`` and the norms' entries on the letter subspaces and the constant. Zeroed and frozen:
    what any other head or MLP writes into the letter subspaces, so nothing the LM learns can overwrite them.
    Remove the hooks (``h.remove()``) after pretraining; later stages train the weights as usual.
    """
    hd, letters = lay.head_dim, lay.dims("letters")
    _, answered = letter_token_ids(tokenizer)
    hooks = []

    def keep(param: nn.Parameter, mask: torch.Tensor) -> None:
        if param.requires_grad:  # a frozen parameter needs no mask
            hooks.append(param.register_hook(lambda grad, mask=mask: grad * mask))

    with torch.no_grad():
        for i, layer in enumerate(lm.model.layers):
            a = layer.self_attn
            heads = COMPILED_HEADS[i] if i < len(COMPILED_HEADS) else 0
            compiled = slice(0, heads * hd)
            for w in (a.q_proj, a.k_proj, a.v_proj):
                mask = torch.ones_like(w.weight)
                mask[compiled] = 0
                keep(w.weight, mask)
            others = slice(heads * hd, None)
            a.o_proj.weight[letters, others] = 0
            mask = torch.ones_like(a.o_proj.weight)
            mask[:, compiled] = 0
            mask[letters, others] = 0
            keep(a.o_proj.weight, mask)
            layer.mlp.down_proj.weight[letters] = 0
            mask = torch.ones_like(layer.mlp.down_proj.weight)
            mask[letters] = 0
            keep(layer.mlp.down_proj.weight, mask)
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                mask = torch.ones_like(norm.weight)
                mask[letters] = 0
                mask[lay.const] = 0
                keep(norm.weight, mask)
        mask = torch.ones_like(lm.model.norm.weight)
        mask[letters] = 0
        keep(lm.model.norm.weight, mask)
        mask = torch.zeros_like(lm.model.embed_tokens.weight)
        mask[:, lay.dims("T")] = 1
        keep(lm.model.embed_tokens.weight, mask)
        mask = torch.ones_like(lm.lm_head.weight)
        mask[:, lay.dims("AN")] = 0
        mask[answered] = 0
        keep(lm.lm_head.weight, mask)
    return hooks


class SyntheticRows:
    """Pretraining rows that exercise the circuits: repeated random-token spans and option-letter lookups.

    A repeat row is ``<s>`` then spans of 8-40 random non-special tokens, each shown twice; a lookup row is
    blocks ``"Options: (A) w1 (B) w2 …\\nw2 is B. w1 is A. …"`` over 2-5 corpus words. Half of each.
    """

    def __init__(self, tokenizer: object, texts: list[str], seed: int) -> None:
        self.tokenizer, self.rng = tokenizer, random.Random(seed)
        self.words = sorted({w for t in texts for w in re.findall(r"[A-Za-z][a-z'-]{2,}", t)})
        self.vocab = content_token_ids(tokenizer)
        self.generator = torch.Generator().manual_seed(seed)

    def lookup_block(self) -> str:
        k = self.rng.randint(2, 5)
        words = self.rng.sample(self.words, k)
        order = list(range(k))
        self.rng.shuffle(order)
        options = " ".join(f"({LETTERS[i]}) {w}" for i, w in enumerate(words))
        return f"Options: {options}\n" + " ".join(f"{words[i]} is {LETTERS[i]}." for i in order) + "\n"

    def row(self, seq_len: int, bos_id: int) -> torch.Tensor:
        ids = [bos_id]
        repeat = self.rng.random() < 0.5
        while len(ids) < seq_len:
            if repeat:
                span = self.vocab[torch.randint(0, self.vocab.numel(), (self.rng.randint(8, 40),),
                                                generator=self.generator)].tolist()
                ids += span + span
            else:
                ids += self.tokenizer(self.lookup_block(), add_special_tokens=False).input_ids
        return torch.tensor(ids[:seq_len])


@torch.no_grad()
def repeat_top1(lm: nn.Module, ids: torch.Tensor, bos_id: int, length: int = 40, rows: int = 8, seed: int = 0) -> float:
    """Top-1 accuracy on the second copy of ``rows`` random sequences drawn from the token ids ``ids``."""
    g = torch.Generator().manual_seed(seed)
    seg = ids[torch.randint(0, ids.numel(), (rows, length), generator=g)]
    x = torch.cat([torch.full((rows, 1), bos_id), seg, seg], 1)
    logits = lm(input_ids=x).logits
    # position t predicts t + 1; the second copy is x[:, length + 1:], predicted from positions length .. 2·length-1
    pred = logits[:, length:-1].argmax(-1)
    return float((pred == x[:, length + 1:]).float().mean())


LOOKUP_WORDS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "reptile", "bird", "fish", "mammal", "moss",
                "berries", "seeds", "roots", "red", "green", "circle", "square", "the rand", "the ploth")
"""Option contents of the lookup probe (ScienceQA-like answers of one or two words)."""


@torch.no_grad()
def lookup_accuracy(lm: nn.Module, tokenizer: object, items: int = 100, seed: int = 0) -> float:
    """Share of prompts "Options: … ASSISTANT: <lecture>. The answer is <content>. The answer is" whose most
    likely next letter among the options is the one of <content> (chance ≈ 0.32 over 2-5 options)."""
    _, answered = letter_token_ids(tokenizer)
    rng, hits = random.Random(seed), 0
    for _ in range(items):
        k = rng.randint(2, 5)
        words, answer = rng.sample(LOOKUP_WORDS, k), rng.randrange(k)
        options = " ".join(f"({LETTERS[i]}) {w}" for i, w in enumerate(words))
        text = (f"Which one?\nContext: N/A\nOptions: {options} ASSISTANT: A habitat is the place where an animal lives "
                f"and finds its food and shelter. Some animals live in caves and others live in rivers or in the "
                f"hills. The answer is {words[answer]}. The answer is")
        ids = tokenizer(text, return_tensors="pt").input_ids
        logits = lm(input_ids=ids).logits[0, -1]
        hits += max(range(k), key=lambda i: logits[answered[i]]) == answer
    return hits / items


@torch.no_grad()
def option_boost(lm: nn.Module, tokenizer: object, items: int = 50, seed: int = 0) -> float:
    """Mean logit margin of the options' first tokens over the other option words' first tokens, at the end of
    "Options: … ASSISTANT: … The answer is": how much head 1.2 (with whatever the LM learned around it)
    favours words the options offer. ≈ 0 for an LM that ignores the options."""
    rng, total = random.Random(seed), 0.0
    firsts = {w: tokenizer(" " + w, add_special_tokens=False).input_ids[0] for w in LOOKUP_WORDS}
    for _ in range(items):
        k = rng.randint(2, 5)
        words = rng.sample(LOOKUP_WORDS, k)
        shown = {firsts[w] for w in words}
        others = sorted({firsts[w] for w in LOOKUP_WORDS} - shown)
        options = " ".join(f"({LETTERS[i]}) {w}" for i, w in enumerate(words))
        ids = tokenizer(f"Which one?\nContext: N/A\nOptions: {options} ASSISTANT: The answer is",
                        return_tensors="pt").input_ids
        logits = lm(input_ids=ids).logits[0, -1]
        total += float(logits[sorted(shown)].mean() - logits[others].mean())
    return total / items
