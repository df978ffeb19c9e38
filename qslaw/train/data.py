"""Training samples from prepared tables: task conversations, caption conversations, text chunks, mixes.

How it works
------------
Every builder returns a list of encoded samples (see :mod:`qslaw.train.encode`). Selection follows the
released recipe: multimodal subsets are a deterministic prefix in table order (not a random subset), text
is joined with ``"\\n\\n"``, tokenized once and cut into exact chunks. :func:`mix` combines ``n`` multimodal
samples with ``round(ratio · n)`` text chunks (capped by what the corpus holds); the training loop
shuffles the union every epoch, so batches are text:multimodal ≈ ratio in expectation and the realised
ratio is reported — the released recipe.

The optional linear schedule (the paper's "progressive integration") moves the *text share* of the stream
``f = r / (1 + r)`` linearly from ``f0`` (ratio ``r0``) to ``f1`` (ratio ``r1``) over the phase. The text
count is the schedule's integral, ``n_text = round(n_mm · f̄ / (1 − f̄))`` with ``f̄ = (f0 + f1) / 2``, and
:func:`schedule_slots` marks which positions of the stream are text by a cumulative-sum (low-discrepancy)
rule, so the share in every window of the stream follows the line exactly up to one sample and no random
draw is involved; :func:`scheduled_batches` fills the text and multimodal slots with a fresh seeded
permutation of each kind every epoch.
"""

from __future__ import annotations

import math

import torch

from qslaw.data.render import chunk_ids
from qslaw.train.encode import encode_chunk, encode_conversation, image_token_count, load_image


def conversations(rows: list[dict], processor: object, config: object, max_length: int,
                  limit: int | None = None, images_only: bool = False) -> list[dict]:
    """Encoded (prompt, response[, image]) rows, the first ``limit`` that qualify."""
    n_image = image_token_count(config)
    out = []
    for row in rows:
        if limit is not None and len(out) >= limit:
            break
        image = load_image(row.get("image"))
        if images_only and image is None:
            continue
        out.append(encode_conversation(processor, row["prompt"], row["response"], image, n_image, max_length))
    return out


def text_chunks(lines: list[str], tokenizer: object, length: int, limit: int | None = None) -> list[dict]:
    """Exact ``length``-token chunks of the joined corpus, loss on every token."""
    ids = tokenizer("\n\n".join(lines), add_special_tokens=True).input_ids
    chunks = chunk_ids(ids, length)
    return [encode_chunk(c) for c in chunks[:limit]]


def mix(multimodal: list[dict], text: list[dict], ratio: float,
        ratio_end: float | None = None) -> tuple[list[dict], dict]:
    """``multimodal`` plus ``round(ratio · len(multimodal))`` text chunks (or a linear schedule's count when
    ``ratio_end`` is given), capped by the corpus; returns samples and the realised ratio."""
    wanted = (round(ratio * len(multimodal)) if ratio_end is None
              else scheduled_text_count(len(multimodal), ratio, ratio_end))
    n_text = min(len(text), wanted)
    stats = {"mix_multimodal": len(multimodal), "mix_text": n_text,
             "mix_text_ratio": n_text / len(multimodal) if multimodal else 0.0}
    return multimodal + text[:n_text], stats


def text_share(ratio: float) -> float:
    """Fraction of the stream that is text for a text:multimodal ``ratio``."""
    return ratio / (1.0 + ratio)


def scheduled_text_count(n_multimodal: int, ratio_start: float, ratio_end: float) -> int:
    """Text chunks a linear schedule from ``ratio_start`` to ``ratio_end`` needs for ``n_multimodal`` samples."""
    mean = (text_share(ratio_start) + text_share(ratio_end)) / 2
    return round(n_multimodal * mean / (1.0 - mean))


def schedule_slots(n_total: int, n_text: int, share_start: float, share_end: float) -> list[bool]:
    """``True`` where position ``i`` of an ``n_total`` stream is text: exactly ``n_text`` of them, spaced so the
    local share follows the line from ``share_start`` to ``share_end``."""
    if not 0 <= n_text <= n_total:
        raise ValueError(f"n_text: must be in [0, {n_total}], got {n_text}")
    weights = [share_start + (share_end - share_start) * i / max(1, n_total - 1) for i in range(n_total)]
    total = sum(weights)
    scale = n_text / total if total else 0.0
    slots, acc, placed = [], 0.0, 0
    for w in weights:
        acc += w * scale
        take = placed < n_text and math.floor(acc + 1e-9) > placed
        slots.append(take)
        placed += take
    for i in range(n_total - 1, -1, -1):  # float slack: top up from the end (the last positions lean text-ward)
        if placed == n_text:
            break
        if not slots[i]:
            slots[i], placed = True, placed + 1
    return slots


def scheduled_batches(is_text: list[bool], slots: list[bool], batch_size: int, seed: int,
                      epoch: int) -> list[list[int]]:
    """Sample indices in schedule order: text slots get the text samples, the rest the multimodal ones, each
    kind in a seeded permutation that changes every epoch; cut into consecutive batches."""
    text = [i for i, t in enumerate(is_text) if t]
    other = [i for i, t in enumerate(is_text) if not t]
    if sum(slots) != len(text) or len(slots) != len(is_text):
        raise ValueError(f"schedule: {sum(slots)} text slots of {len(slots)} for {len(text)} text samples "
                         f"of {len(is_text)}")
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    text = [text[j] for j in torch.randperm(len(text), generator=g).tolist()]
    other = [other[j] for j in torch.randperm(len(other), generator=g).tolist()]
    it_text, it_other = iter(text), iter(other)
    order = [next(it_text) if slot else next(it_other) for slot in slots]
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
