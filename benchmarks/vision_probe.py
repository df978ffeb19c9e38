"""What does a base read from the picture? Caption accuracy by attribute, right picture against another one.

How it works
------------
The held-out caption pairs of the build (`qslaw.embedded.base.caption.split_pairs` with the build report's
``caption_holdout`` and ``seed``) are scored teacher-forced in the caption-alignment format
(`qslaw.embedded.base.caption.collate`). Every caption token that names a scene attribute (a colour, a shape, a size,
a row or column word, a count) counts as right when the model's top-1 prediction at that place is that token.
Then the same captions are scored with every picture swapped for the next pair's ("another picture"). The gap
between the two is what the model reads from the picture for that attribute; no gap means it guesses from the
caption's wording alone, however high the figure is.

Measured on the default embedded base (params.yaml as of 2026-11-28: 400 caption steps; 128 held-out captions):

| attribute | right picture | another picture |
|-----------|---------------|-----------------|
| colour    | 38 %          | 15 %            |
| count     | 70 %          | 44 %            |
| size      | 53 %          | 48 %            |
| shape     | 33 %          | 34 %            |
| row word  | 53 %          | 54 %            |
| column    | 65 %          | 65 %            |

So the caption-aligned base reads colours and how many shapes there are, and reads neither shapes nor cells.
The IMG questions that ask for a colour of a one-shape picture are the ones the fine-tuned model gets right
(93-100 %); what needs a shape or a cell it must learn during the fine-tune, and how well it does moves a lot
from one world draw to the next (`benchmarks.benchmark_check`, README). The where-questions also moved with the
LoRA seed; that part was the where-lecture naming every option's first word, which sent the answer letter astray
(fixed in the world; README, "Where an object is"). Run::

    python -m benchmarks.vision_probe artifacts/base artifacts/prepare [--holdout 128] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from qslaw.embedded.base.caption import CaptionData, encode_pairs, split_pairs, teacher_forced
from qslaw.embedded.world.scenes import COLORS, POSITIONS, SHAPES, SIZES

KINDS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLORS),
    "shape": SHAPES + tuple(f"{s}s" for s in SHAPES),
    "size": tuple(SIZES),
    "row": tuple(sorted({p.split()[0] for p in POSITIONS})),
    "column": ("left", "right"),
    "count": tuple(str(n) for n in range(10)),
}
"""Attribute words of the scene captions, by kind (``center`` and ``middle`` count as row words)."""


def attribute_ids(tokenizer: object) -> dict[int, str]:
    """Token id → attribute kind, for every attribute word that is one token after a space."""
    out = {}
    for kind, words in KINDS.items():
        for word in words:
            ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                out[ids[0]] = kind
    return out


@torch.no_grad()
def attribute_accuracy(model: nn.Module, data: CaptionData, idx: list[int], pad_id: int, kinds: dict[int, str],
                       batch_size: int = 32, mismatched: bool = False) -> dict[str, tuple[int, int]]:
    """Kind → (right, total) top-1 predictions of attribute tokens in the captions ``idx`` (images rolled by one
    when ``mismatched``)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for labels, logits in teacher_forced(model, data, idx, pad_id, batch_size, mismatched):
        for label, guess in zip(labels.flatten().tolist(), logits.argmax(-1).flatten().tolist()):
            if label in kinds:
                counts[kinds[label]][0] += label == guess
                counts[kinds[label]][1] += 1
    return {kind: (right, total) for kind, (right, total) in sorted(counts.items())}


def probe(model: nn.Module, processor: object, pairs: list, holdout: int, seed: int) -> dict[str, dict[str, float]]:
    """Kind → accuracy with the right picture, with another one, and the number of tokens scored."""
    data = encode_pairs(processor, pairs)
    held = split_pairs(len(pairs), holdout, seed)[1]
    kinds, pad = attribute_ids(processor.tokenizer), processor.tokenizer.pad_token_id
    right = attribute_accuracy(model, data, held, pad, kinds)
    other = attribute_accuracy(model, data, held, pad, kinds, mismatched=True)
    return {kind: {"right_picture": r / n, "another_picture": other[kind][0] / n, "tokens": n}
            for kind, (r, n) in right.items()}


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from qslaw.data.prepare import read_rows
    from qslaw.train.encode import load_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_dir", type=Path)
    parser.add_argument("prepare_dir", type=Path, help="holds captions.parquet (the prepare stage's output)")
    parser.add_argument("--holdout", type=int, default=None, help="held-out pairs (default: the build's)")
    parser.add_argument("--seed", type=int, default=None, help="split seed (default: the build's)")
    args = parser.parse_args(argv)
    report = args.base_dir / "build_report.json"
    spec = json.loads(report.read_text())["spec"] if report.exists() else {}
    holdout = args.holdout if args.holdout is not None else spec.get("caption_holdout", 128)
    seed = args.seed if args.seed is not None else spec.get("seed", 0)
    rows = read_rows(args.prepare_dir / "captions.parquet")
    pairs = [(load_image(r["image"]), r["response"]) for r in rows]
    model = LlavaForConditionalGeneration.from_pretrained(args.base_dir, dtype=torch.float32).eval()
    result = probe(model, AutoProcessor.from_pretrained(args.base_dir), pairs, holdout, seed)
    print(f"{'attribute':10s} {'right picture':>14s} {'another':>8s} {'tokens':>7s}")
    for kind, r in result.items():
        print(f"{kind:10s} {100 * r['right_picture']:13.1f}% {100 * r['another_picture']:7.1f}% {r['tokens']:7d}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
