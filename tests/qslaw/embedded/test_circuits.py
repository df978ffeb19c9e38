"""Compiled in-context circuits: a fresh LM copies and looks up option letters; pretraining cannot overwrite them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from standin_world import standin_corpus
from transformers import LlamaForCausalLM

from qslaw.embedded.base.builder import EmbeddedModelSpec, llama_config
from qslaw.embedded.base.circuits import (
    COMPILED_HEADS,
    LETTERS,
    SyntheticRows,
    content_token_ids,
    install_circuits,
    layout_for,
    letter_token_ids,
    lookup_accuracy,
    option_boost,
    protect,
    repeat_top1,
)
from qslaw.embedded.base.pretrain import LMTrainConfig, batches
from qslaw.embedded.base.tokenizer import train_tokenizer

# answers and options as the task renders them, so the letters are tokens of their own
QA = [f"Options: (A) red (B) blue (C) green (D) moss (E) fish The answer is {x}." for x in LETTERS] * 40


@pytest.fixture(scope="module")
def tokenizer() -> object:
    train, _ = standin_corpus(6000, n_facts=20)
    return train_tokenizer(train + QA, 1024)


def fresh_lm(tokenizer: object, **overrides: object) -> LlamaForCausalLM:
    torch.manual_seed(0)
    spec = dataclasses.replace(EmbeddedModelSpec(), **overrides)
    return LlamaForCausalLM(llama_config(spec, tokenizer)).eval()


def test_fresh_lm_cannot_copy_or_look_up_but_compiled_one_can(tokenizer: object) -> None:
    plain, compiled = fresh_lm(tokenizer), fresh_lm(tokenizer)
    install_circuits(compiled, tokenizer)
    ids, bos = content_token_ids(tokenizer), tokenizer.bos_token_id
    assert repeat_top1(plain, ids, bos) < 0.05
    # an option letter in a random row looks like an option to head 1.2, which then favours a random word
    inside, _ = letter_token_ids(tokenizer)
    no_letters = ids[~torch.isin(ids, torch.tensor(inside))]
    assert repeat_top1(compiled, no_letters, bos) > 0.8
    assert repeat_top1(compiled, ids, bos) > 0.6
    assert lookup_accuracy(plain, tokenizer) < 0.5  # chance ≈ 0.32
    assert lookup_accuracy(compiled, tokenizer) > 0.55  # 0.63 with this 512-id tokenizer, 0.81 with the default one


def test_option_head_favours_the_words_the_options_offer(tokenizer: object) -> None:
    plain, compiled = fresh_lm(tokenizer), fresh_lm(tokenizer)
    layout = install_circuits(compiled, tokenizer)
    boost = option_boost(compiled, tokenizer)
    assert abs(option_boost(plain, tokenizer)) < 0.5
    with torch.no_grad():
        hd = layout.head_dim
        compiled.model.layers[1].self_attn.o_proj.weight[:, 2 * hd:3 * hd] = 0
    assert boost > 2.0 and option_boost(compiled, tokenizer) < boost / 2


def test_protect_keeps_the_circuits_through_training_and_lets_the_rest_learn(tokenizer: object) -> None:
    lm = fresh_lm(tokenizer)
    layout = install_circuits(lm, tokenizer)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    hooks = protect(lm, layout, tokenizer)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2, weight_decay=0.0)
    lm.train()
    x = torch.randint(4, len(tokenizer), (2, 32))
    for _ in range(3):
        lm(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    after = lm.state_dict()
    hd, letters = layout.head_dim, layout.dims("letters")
    for i in range(3):
        heads = COMPILED_HEADS[i]
        for name in ("q_proj", "k_proj", "v_proj"):
            key = f"model.layers.{i}.self_attn.{name}.weight"
            assert torch.equal(after[key][: heads * hd], before[key][: heads * hd]), key
            assert not torch.equal(after[key][heads * hd:], before[key][heads * hd:]), key
    for i in range(4):
        assert torch.equal(after[f"model.layers.{i}.mlp.down_proj.weight"][letters], torch.zeros_like(
            after[f"model.layers.{i}.mlp.down_proj.weight"][letters]))
    embed = "model.embed_tokens.weight"
    assert torch.equal(after[embed][:, layout.n:], before[embed][:, layout.n:])
    assert not torch.equal(after[embed][:, : layout.n], before[embed][:, : layout.n])
    _, answered = letter_token_ids(tokenizer)
    assert torch.equal(after["lm_head.weight"][answered], before["lm_head.weight"][answered])
    for hook in hooks:
        hook.remove()
    lm(input_ids=x, labels=x).loss.backward()
    opt.step()
    assert not torch.equal(lm.state_dict()["model.layers.0.self_attn.q_proj.weight"][: 2 * hd],
                           before["model.layers.0.self_attn.q_proj.weight"][: 2 * hd])


def test_layout_rejects_too_small_models_naming_the_field() -> None:
    with pytest.raises(ValueError, match="num_hidden_layers"):
        layout_for(256, 4, 2)
    with pytest.raises(ValueError, match="num_attention_heads"):
        layout_for(256, 1, 4)
    with pytest.raises(ValueError, match="hidden_size"):
        layout_for(64, 4, 4)
    with pytest.raises(ValueError, match="num_hidden_layers.*lm_circuits: false"):
        EmbeddedModelSpec(num_hidden_layers=2)
    assert EmbeddedModelSpec(num_hidden_layers=2, lm_circuits=False).num_hidden_layers == 2
    with pytest.raises(ValueError, match="lm_circuits"):
        EmbeddedModelSpec(lm_circuits=1)


def test_synthetic_rows_repeat_spans_and_list_options(tokenizer: object) -> None:
    rows = SyntheticRows(tokenizer, ["The red fox ran past the green moss and the blue fish."], seed=0)
    block = rows.lookup_block()
    options, answers = block.strip().split("\n")
    assert options.startswith("Options: (A) ")
    for sentence in answers.split(". "):
        word, letter = sentence.rstrip(".").rsplit(" is ", 1)
        assert f"({letter}) {word}" in options
    seen = {"repeat": 0, "lookup": 0}
    for _ in range(12):
        row = rows.row(64, tokenizer.bos_token_id)
        assert row.shape == (64,) and row[0] == tokenizer.bos_token_id
        seen["lookup" if "Options" in tokenizer.decode(row[1:]) else "repeat"] += 1
    assert seen["repeat"] and seen["lookup"]


def test_batches_replace_the_synthetic_share_of_rows() -> None:
    cfg = LMTrainConfig(max_steps=1, batch_size=8, seq_len=16, lr=1e-3, warmup_steps=0, eval_every=1, patience=1,
                        min_delta=0.0, max_val_chunks=1, seed=0, synthetic_share=0.25)
    stream = torch.arange(10, 1000)
    marker = torch.full((16,), 7)
    batch = next(batches(stream, cfg, 1, lambda seq_len, bos: marker))
    assert batch.shape == (8, 16)
    assert [bool((row == 7).all()) for row in batch] == [True, True] + [False] * 6
    assert not (next(batches(stream, cfg, 1)) == 7).any()


def test_protect_masks_only_what_trains(tokenizer: object) -> None:
    """With MLPs, norms, embeddings and lm_head frozen (as in visual instruction tuning) protect still guards the
    compiled heads and registers no hook on a frozen tensor."""
    lm = fresh_lm(tokenizer)
    layout = install_circuits(lm, tokenizer)
    for name, param in lm.named_parameters():
        param.requires_grad_(".self_attn." in name)
    hooks = protect(lm, layout, tokenizer)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    x = torch.randint(4, len(tokenizer), (2, 32))
    lm(input_ids=x, labels=x).loss.backward()
    opt.step()
    after, hd = lm.state_dict(), layout.head_dim
    key = "model.layers.1.self_attn.q_proj.weight"
    assert torch.equal(after[key][: COMPILED_HEADS[1] * hd], before[key][: COMPILED_HEADS[1] * hd])
    assert not torch.equal(after[key][COMPILED_HEADS[1] * hd:], before[key][COMPILED_HEADS[1] * hd:])
    assert torch.equal(after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])
    for hook in hooks:
        hook.remove()
