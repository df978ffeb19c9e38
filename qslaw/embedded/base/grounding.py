"""Grid grounding of the embedded base's vision side: where each patch's object is, and which words name it.

How it works
------------
Why: the embedded world's where-questions ask for an object's grid cell, and the fine-tuned base wrote the
right cell in only a third of its solutions (README, "Where an object is"). Contrastive pretraining trains
the tower only through its pooled CLS vector, and caption alignment only through the caption's next-token
loss; neither asks a patch token to carry *where its object is* or *which words name it*. Two auxiliary
terms do, each on a temporary head or on a target computed once:

1. **Tower** (`qslaw.embedded.base.contrastive`: a phase of ``tower_cell_steps`` after the InfoNCE one, the term at
   ``tower_cell_weight`` beside InfoNCE; with the term from the first step the colours suffered more, README).
   The pictures are flat shapes on a white canvas divided into a ``grid × grid`` of cells. For every
   patch, its non-background pixels (any channel off the background by more than ``tol`` in processed
   units) are counted; with at least ``min_pixels`` of them the patch's cell is the cell holding their
   centroid, else it has none.
   The target is ``[row one-hot, column one-hot]`` (``2·grid`` numbers, all zero for an empty patch); a
   temporary linear head reads the patch states of ``vision_feature_layer`` (the ones LLaVA projects) and
   the term is ``Σ_dims (head(h) − target)²`` averaged over patches. It needs no caption: the geometry
   is the label.
2. **Projector** (`qslaw.embedded.base.caption`, weight ``caption_word_weight``). Each caption is parsed back into
   its objects (`qslaw.embedded.world.scenes.parse_caption`: cell → colour, shape, the cell's words). A patch whose
   cell holds an object gets the target ``Σ_w E[first token of " w"]`` over that object's colour, shape
   and cell words, in the LM input embedding's token-code subspace (the compiled circuits' ``T`` dims, the
   subspace the copy circuit reads; the whole embedding without circuits). The term is
   ``1 − mean cos(projected patch token[T], target)`` over those patches. A patch token then starts out
   close to the words a solution must write about its object, which the LM's copy circuit can reuse.

Both are off by default (``tower_cell_steps: 0``, ``caption_word_weight: 0``). Measured with
`benchmarks.benchmark_check` (one fine-tune each; README "Grid grounding"): on world seed 1 they raised the share
of where-solutions writing the right cell from 34 % to 61-75 %, but with the word term the fine-tuned model lost
the colour words (21-36 %), and the tower phase alone gave IMG 51.8, 47.6 and 33.3 on world seeds 1, 0 and 2
against the default's 47.6, 52.4 and 39.9.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


def patch_cells(pixels: torch.Tensor, background: Sequence[float], patch_size: int, grid: int,
                min_pixels: int = 3, tol: float = 1e-2) -> torch.Tensor:
    """Cell (``row · grid + col``) of each patch's non-background pixels' centroid, or −1: `(N, patches)` long.

    `pixels` are processed images `(N, C, H, W)`; `background` is the background colour in the same units,
    one value per channel. Patches are in row-major order, as CLIP's patch embedding flattens them."""
    n, _, h, w = pixels.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"patch_size: {patch_size} does not tile a {h}×{w} image")
    bg = torch.tensor(background, dtype=pixels.dtype).view(1, -1, 1, 1)
    ink = ((pixels - bg).abs() > tol).any(1).float()  # (N, H, W)
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand_as(ink) + 0.5
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w).expand_as(ink) + 0.5
    gh, gw = h // patch_size, w // patch_size

    def per_patch(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n, gh, patch_size, gw, patch_size).sum((2, 4)).reshape(n, gh * gw)

    count = per_patch(ink)
    cy = per_patch(ink * ys) / count.clamp(min=1)
    cx = per_patch(ink * xs) / count.clamp(min=1)
    row = (cy * grid / h).long().clamp(0, grid - 1)
    col = (cx * grid / w).long().clamp(0, grid - 1)
    return torch.where(count >= min_pixels, row * grid + col, torch.full_like(row, -1))


def cell_targets(cells: torch.Tensor, grid: int) -> torch.Tensor:
    """``[row one-hot, column one-hot]`` per patch, zeros where the patch has no cell: `(N, patches, 2·grid)`."""
    present = cells >= 0
    safe = cells.clamp(min=0)
    rows = nn.functional.one_hot(safe // grid, grid)
    cols = nn.functional.one_hot(safe % grid, grid)
    return torch.cat([rows, cols], -1).float() * present[..., None]


def cell_loss(head: nn.Module, patch_states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error of the head's cell read-out, summed over its dims and averaged over patches."""
    return (head(patch_states) - targets).pow(2).sum(-1).mean()


def word_targets(cells: torch.Tensor, objects: Sequence[Mapping[int, Sequence[str]]], tokenizer: object,
                 embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets `(N, patches, dims)`, mask `(N, patches)`): the summed embedding rows of the words naming each
    patch's object, where the patch's cell holds one.

    `objects[i]` maps pair i's cells to the words that name its object there; `embedding` is the LM input
    embedding restricted to the dims the projected tokens are compared on. A word counts by its first token
    (as written after a space), as the option-letter circuit identifies an option by its first word."""
    first: dict[str, int] = {}

    def token(word: str) -> int:
        if word not in first:
            first[word] = tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]
        return first[word]

    n, p = cells.shape
    targets, mask = torch.zeros(n, p, embedding.shape[1]), torch.zeros(n, p, dtype=torch.bool)
    for i, by_cell in enumerate(objects):
        vectors = {cell: embedding[[token(w) for w in words]].sum(0) for cell, words in by_cell.items()}
        for j, cell in enumerate(cells[i].tolist()):
            if cell in vectors:
                targets[i, j], mask[i, j] = vectors[cell], True
    return targets, mask


def word_loss(tokens: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 − mean cos`` between projected patch tokens and their word targets over the masked patches (0 if none)."""
    if not mask.any():
        return tokens.sum() * 0.0
    return 1.0 - nn.functional.cosine_similarity(tokens[mask], targets[mask], dim=-1).mean()
