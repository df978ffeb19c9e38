"""Grid grounding: patch cells from pixels, their targets, and the two auxiliary terms learning what they ask."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from standin_world import standin_pairs
from tiny_models import IMAGE_SIZE, IMAGE_TOKEN, N_IMAGE_TOKENS, tiny_llava
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaModel

from qslaw.embedded.base.caption import CaptionData, CaptionTrainConfig, WordTargets, align_projector
from qslaw.embedded.base.contrastive import ContrastiveTrainConfig, pretrain_tower
from qslaw.embedded.base.grounding import cell_targets, patch_cells, word_loss, word_targets
from qslaw.embedded.base.tokenizer import train_tokenizer
from qslaw.embedded.world.scenes import GRID, parse_caption, render_scene, sample_scene


def as_pixels(images: list) -> torch.Tensor:
    """RGB images in [0, 1], `(N, 3, H, W)`; the white background is 1.0."""
    return torch.stack([torch.tensor(np.asarray(im.convert("RGB")), dtype=torch.float32).permute(2, 0, 1) / 255
                        for im in images])


def test_patch_cells_find_each_object_and_leave_white_patches_empty() -> None:
    rng = random.Random(3)
    scenes = [sample_scene(rng) for _ in range(12)]
    cells = patch_cells(as_pixels([render_scene(s, 64) for s in scenes]), [1.0, 1.0, 1.0], 8, GRID)
    assert cells.shape == (12, 64)
    for scene, row in zip(scenes, cells, strict=True):
        found = set(row.tolist()) - {-1}
        assert found == {o.cell for o in scene.objects}
        for obj in scene.objects:  # the patch under the object's centre names its cell
            cy, cx = int((obj.row + 0.5) * 64 / GRID), int((obj.col + 0.5) * 64 / GRID)
            assert row[(cy // 8) * 8 + cx // 8] == obj.cell
    blank = patch_cells(torch.ones(1, 3, 64, 64), [1.0, 1.0, 1.0], 8, GRID)
    assert (blank == -1).all()


def test_patch_cell_is_where_its_ink_lies_and_needs_enough_ink() -> None:
    pixels = torch.ones(1, 3, 24, 24)  # cells of 8 px; one 12 px patch spans cells 0, 1, 3 and 4
    pixels[0, 0, 9:12, 9:12] = 0.0  # 9 ink pixels inside cell 4 (row 1, column 1)
    pixels[0, 1, 0:2, 20] = 0.0  # 2 ink pixels in the top-right patch, in cell 2: too few
    assert patch_cells(pixels, [1.0, 1.0, 1.0], 12, 3).tolist() == [[4, -1, -1, -1]]
    assert patch_cells(pixels, [1.0, 1.0, 1.0], 12, 3, min_pixels=2).tolist() == [[4, 2, -1, -1]]
    with pytest.raises(ValueError, match="^patch_size"):
        patch_cells(pixels, [1.0, 1.0, 1.0], 7, 3)


def test_cell_targets_are_row_and_column_one_hots() -> None:
    targets = cell_targets(torch.tensor([[5, -1, 0]]), 3)
    assert targets.tolist() == [[[0, 1, 0, 0, 0, 1], [0] * 6, [1, 0, 0, 1, 0, 0]]]


def test_word_targets_sum_each_words_first_token() -> None:
    tok = train_tokenizer(["a small red circle is in the top left and a blue square in the center"] * 30, 300)
    embedding = torch.randn(len(tok), 5)
    objects = [{0: ("red", "circle", "top", "left")}, {4: ("blue", "square", "center")}]
    cells = torch.tensor([[0, -1, 4], [4, 4, 0]])
    targets, mask = word_targets(cells, objects, tok, embedding)
    ids = {w: tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in ("red", "circle", "top", "left")}
    assert mask.tolist() == [[True, False, False], [True, True, False]]
    assert torch.allclose(targets[0, 0], embedding[list(ids.values())].sum(0))
    assert torch.equal(targets[1, 0], targets[1, 1]) and not targets[0, 1].any() and not targets[1, 2].any()
    assert word_loss(targets * 3, targets, mask).abs() < 1e-6
    assert word_loss(-targets, targets, mask) == pytest.approx(2.0, abs=1e-5)


def test_tower_grid_term_teaches_patch_states_their_cells() -> None:
    pairs = standin_pairs(96, size=32, seed=4)
    pixels = as_pixels([im for im, _ in pairs]) * 2 - 1
    targets = cell_targets(patch_cells(pixels, [1.0, 1.0, 1.0], 8, GRID), GRID)
    torch.manual_seed(0)
    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=8))
    lm = LlamaModel(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2))
    ids = [[1 + (i * 7 + k) % 48 for k in range(5)] for i in range(96)]
    split = (list(range(80)), list(range(80, 96)))
    cfg = ContrastiveTrainConfig(max_steps=40, batch_size=16, lr=3e-3, eval_every=20, patience=5, min_delta=0.0,
                                 seed=0, cell_weight=1.0, feature_layer=-2)
    result = pretrain_tower(tower, lm, pixels, ids, 0, split, cfg, progress=False, cell_targets=targets)
    assert result.cell_loss_after < 0.5 * result.cell_loss_before
    assert [set(row) >= {"cell_loss"} for row in result.curve] == [True] * len(result.curve)
    off = pretrain_tower(tower, lm, pixels, ids, 0, split, ContrastiveTrainConfig(2, 16, 1e-3, 1, 5, 0.0, 0),
                         progress=False, cell_targets=targets)
    assert off.cell_loss_before is None and off.curve[-1]["cell_loss"] is None


def test_projector_word_term_turns_object_tokens_toward_their_words() -> None:
    model = tiny_llava(seed=1)
    g = torch.Generator().manual_seed(0)
    n = 24
    pixels = torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    data = CaptionData([1, *[IMAGE_TOKEN] * N_IMAGE_TOKENS, 5],
                       [torch.randint(6, 90, (4,), generator=g).tolist() + [2] for _ in range(n)], pixels)
    dims = slice(0, 16)
    targets = torch.randn(n, N_IMAGE_TOKENS, 16, generator=g)
    mask = torch.rand(n, N_IMAGE_TOKENS, generator=g) < 0.6
    words = WordTargets(targets, mask, dims)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = CaptionTrainConfig(max_steps=60, batch_size=8, lr=1e-2, warmup_steps=2, eval_every=60, patience=5,
                             min_delta=0.0, seed=0, word_weight=1.0)
    result = align_projector(model, data, (list(range(n)), list(range(n))), 0, cfg, progress=False, words=words)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("model.multi_modal_projector.") for k in changed)
    assert result.word_cos_after > result.word_cos_before + 0.2
    assert not model.model.multi_modal_projector._forward_hooks  # the tap is removed


def test_parse_caption_reads_the_standin_captions_too() -> None:
    _, caption = standin_pairs(1, seed=2)[0]
    scene = parse_caption(caption)
    assert scene.objects and len(scene.objects) == caption.count(" is in the ")
