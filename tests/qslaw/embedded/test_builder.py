"""The embedded base: a tiny build on inline stand-in data loads, generates, and keeps the llava-hf contracts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from standin_world import standin_corpus, standin_instructions, standin_pairs
from transformers import AutoProcessor, AutoTokenizer, LlamaForCausalLM, LlavaForConditionalGeneration

from qslaw.embedded.base.builder import (
    REPORT_NAME,
    EmbeddedModelSpec,
    assemble_llava,
    build_embedded_base,
    llama_config,
    make_processor,
)
from qslaw.embedded.base.caption import caption_loss, collate, encode_pairs, freeze_all_but_projector
from qslaw.embedded.base.instruct import InstructTrainConfig, encode_records, instruct_tune
from qslaw.embedded.base.tokenizer import VICUNA_SYSTEM, train_tokenizer

TINY = EmbeddedModelSpec(
    vocab_size=400, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
    max_position_embeddings=256, image_size=32, patch_size=8, vision_hidden_size=64, vision_intermediate_size=128,
    vision_num_layers=1, vision_num_heads=2, lm_max_steps=30, lm_batch_size=8, lm_seq_len=64, lm_warmup_steps=5,
    lm_eval_every=10, lm_val_chunks=8, tower_max_steps=6, tower_cell_steps=4, tower_batch_size=8, tower_eval_every=3,
    caption_max_steps=6, caption_batch_size=8, caption_warmup_steps=2, caption_eval_every=3, caption_holdout=8,
    instruct_max_steps=6, instruct_batch_size=4, instruct_text_rows=2, instruct_text_len=32, instruct_warmup_steps=1,
    instruct_eval_every=3, caption_word_weight=1.0,
    lm_circuits=False,  # two layers; the circuits have their own tests (test_circuits.py)
)
PROMPT_MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    train, val = standin_corpus(6000, n_facts=20)
    out = tmp_path_factory.mktemp("embedded") / "base"
    report = build_embedded_base(out, train, val, standin_pairs(40, size=TINY.image_size), TINY, progress=False,
                                 instructions=standin_instructions(24, size=TINY.image_size))
    return out, report


@pytest.fixture(scope="module")
def loaded(base: tuple[Path, dict]) -> tuple[LlavaForConditionalGeneration, object]:
    return LlavaForConditionalGeneration.from_pretrained(base[0]).eval(), AutoProcessor.from_pretrained(base[0])


def test_saved_base_loads_and_generates(loaded: tuple) -> None:
    model, processor = loaded
    image, _ = standin_pairs(1, size=TINY.image_size, seed=9)[0]
    prompt = processor.apply_chat_template(PROMPT_MESSAGES, add_generation_prompt=True)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 1 and inputs["input_ids"].shape[1] < out.shape[1] <= inputs["input_ids"].shape[1] + 5


def test_output_dir_is_complete_and_alone(base: tuple[Path, dict]) -> None:
    out, _ = base
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json", REPORT_NAME):
        assert (out / name).is_file(), name
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no staging leftovers


def test_tokenizer_round_trips_and_keeps_image_token(base: tuple[Path, dict], loaded: tuple) -> None:
    tok = AutoTokenizer.from_pretrained(base[0])
    for text in ("The red circle is in the top left.", "  two  spaces,\nnew lines\n\n", "ünïcödé 日本 ✓ zorbel"):
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    image_id = loaded[0].config.image_token_index
    assert tok("<image>", add_special_tokens=False)["input_ids"] == [image_id]
    ids = tok("a<image>\nb")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(image_id) == 1
    assert (tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token) == ("<s>", "</s>", "<unk>", "<unk>")


def test_tokenizer_keeps_the_chat_scaffold_whole_and_option_markers_apart(base: tuple[Path, dict]) -> None:
    tok = AutoTokenizer.from_pretrained(base[0])
    prompt = "the hill. USER: Which one?\nContext: N/A\nOptions: (A) moss (B) seeds ASSISTANT: The answer is B."
    pieces = [tok.decode([i]) for i in tok(prompt, add_special_tokens=False)["input_ids"]]
    for word in (" USER", " ASSISTANT", "Context", "Options", " answer"):
        assert word in pieces, (word, pieces)
    letter = tok.convert_tokens_to_ids("A")
    assert tok(prompt, add_special_tokens=False)["input_ids"].count(letter) == 2  # "(A)" and "N/A"; not ASSISTANT
    assert pieces[pieces.index("(") : pieces.index("(") + 3] == ["(", "A", ")"]


def test_chat_template_renders_vicuna_v1() -> None:
    tok = train_tokenizer(["USER: ASSISTANT: hello world"] * 20, 300)
    messages = [{"role": "user", "content": "<image>\nWhat colour?"}, {"role": "assistant", "content": "Red."},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And now?"}]}]
    full = tok.apply_chat_template(messages[:2], tokenize=False)
    assert full == f"{VICUNA_SYSTEM} USER: <image>\nWhat colour? ASSISTANT: Red.</s>"
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == full + "USER: <image>\nAnd now? ASSISTANT:"


@pytest.mark.parametrize("strategy", ["default", "full"])
def test_processor_expands_image_to_what_the_model_expects(strategy: str) -> None:
    spec = EmbeddedModelSpec(**{**TINY.__dict__, "vision_feature_select_strategy": strategy})
    tok = train_tokenizer(["a red square and a blue circle"] * 20, 300)
    model = assemble_llava(LlamaForCausalLM(llama_config(spec, tok)), spec, tok.convert_tokens_to_ids("<image>"))
    processor = make_processor(tok, spec)
    inputs = processor(images=standin_pairs(1, size=32)[0][0], text="<image>\nHi", return_tensors="pt")
    n_ids = int((inputs["input_ids"] == model.config.image_token_index).sum())
    with torch.no_grad():
        features = model.model.get_image_features(inputs["pixel_values"]).pooler_output[0]
        model(**inputs)  # raises if ids and features disagree
    assert n_ids == features.shape[0] == spec.num_image_tokens() == (32 // 8) ** 2 + (strategy == "full")


def test_decoder_linears_tile_into_quant_groups(loaded: tuple) -> None:
    layers = loaded[0].model.language_model.layers
    linears = [m for m in layers.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 7 * TINY.num_hidden_layers
    assert all(m.in_features % TINY.group_size == 0 for m in linears)
    assert EmbeddedModelSpec().decoder_in_features()["down_proj"] % 128 == 0


@pytest.mark.parametrize(("field", "value"), [
    ("hidden_size", 192), ("intermediate_size", 320), ("num_attention_heads", 3), ("patch_size", 7),
    ("vision_feature_select_strategy", "cls"), ("lm_lr", 0.0), ("caption_min_delta", 1.5), ("lm_max_steps", 0),
    ("vision_feature_layer", -5), ("lm_seq_len", 4096), ("vocab_size", 100), ("seed", 1.5),
    ("tower_cell_weight", -1.0), ("caption_word_weight", float("nan")), ("caption_word_weight", "1"),
    ("tower_cell_steps", -1),
])
def test_invalid_spec_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        EmbeddedModelSpec(**{field: value})


def test_build_report_has_param_counts_curves_and_timings(base: tuple[Path, dict], loaded: tuple) -> None:
    out, report = base
    assert json.loads((out / REPORT_NAME).read_text()) == json.loads(json.dumps(report))
    params = report["params"]
    parts = ("vision_tower", "projector", "language_model", "lm_head")
    assert all(params[k] > 0 for k in parts) and sum(params[k] for k in parts) == params["total"]
    assert params["total"] == sum(p.numel() for p in loaded[0].parameters())
    curve = report["lm"]["curve"]
    assert curve[0]["step"] == 0 and curve[-1]["step"] == report["lm"]["steps"]
    assert all({"step", "train_loss", "val_ppl"} <= row.keys() for row in curve)
    assert report["lm"]["final_val_ppl"] == min(row["val_ppl"] for row in curve)
    caption = report["caption"]
    assert all(math.isfinite(caption[k]) for k in ("loss_before", "loss_after", "loss_mismatched_after"))
    tower = report["tower"]
    assert tower["curve"][0]["step"] == 0 and 0 <= tower["retrieval_after"] <= 1 and tower["chance"] == 1 / 8
    grid = report["tower_grid"]  # TINY switches the grid phase and the word term on
    assert tower["cell_loss_before"] is None and grid["steps"] == TINY.tower_cell_steps
    assert grid["cell_loss_before"] > 0 and math.isfinite(grid["cell_loss_after"])
    assert -1 <= caption["word_cos_before"] <= 1 and -1 <= caption["word_cos_after"] <= 1
    assert set(report["wall_s"]) == {"tokenizer", "lm_pretrain", "encode_pairs", "tower_pretrain", "tower_grid",
                                     "projector_align", "encode_instructions", "instruct_tune", "save", "total"}
    instruct = report["instruct"]
    assert instruct["records"] == 24 and instruct["answers"] > 48  # two answers per record, tokens counted
    assert instruct["curve"][0]["step"] == 0 and instruct["steps"] == 6
    assert all(0 <= instruct[k] <= 1 for k in ("acc_before", "acc_after", "acc_mismatched_after"))
    assert instruct["loss_after"] < instruct["loss_before"]


def test_lm_loss_decreases_during_pretraining(base: tuple[Path, dict]) -> None:
    lm = base[1]["lm"]
    train_losses = [row["train_loss"] for row in lm["curve"][1:]]
    assert train_losses[-1] < train_losses[0]
    assert lm["final_val_ppl"] < 0.5 * lm["initial_val_ppl"]


def test_caption_pretraining_does_not_hurt_held_out_loss(base: tuple[Path, dict]) -> None:
    caption = base[1]["caption"]
    assert caption["loss_after"] <= caption["loss_before"]


def test_caption_loss_equals_the_full_logits_loss_and_its_projector_gradient(loaded: tuple) -> None:
    # logits only from the first caption position on: the same loss and gradient, with captions of unequal length
    model, processor = loaded
    data = encode_pairs(processor, standin_pairs(6, size=TINY.image_size))
    batch = collate(data, [0, 1, 2, 3, 4, 5], processor.tokenizer.pad_token_id)
    assert len({int((row != -100).sum()) for row in batch["labels"]}) > 1
    trainable = freeze_all_but_projector(model)
    grads = []
    try:
        for loss_of in (lambda: model(**batch).loss, lambda: caption_loss(model, batch)):
            loss = loss_of()
            grads.append((loss.detach(), torch.autograd.grad(loss, trainable)))
    finally:
        for param in model.parameters():
            param.requires_grad_(True)
    (full, full_grads), (kept, kept_grads) = grads
    assert torch.allclose(kept, full, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(kept_grads, full_grads))
    assert "labels" in batch  # the caller's batch is left whole


def test_instruct_tuning_trains_only_the_projector_and_lm_attention(loaded: tuple) -> None:
    model, processor = loaded
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = encode_records(processor, standin_instructions(12, size=TINY.image_size, seed=5))
    cfg = InstructTrainConfig(max_steps=4, batch_size=4, text_rows=2, text_len=32, lr=1e-3, warmup_steps=0,
                              eval_every=2, patience=5, min_delta=0.0, seed=0)
    # held out = trained on: the loss falls, so the tuned (not the initial) weights are the best ones kept
    result = instruct_tune(model, data, (list(range(12)), list(range(12))), standin_corpus(3000, n_facts=10)[0],
                           processor.tokenizer, cfg, progress=False)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    model.load_state_dict(before)
    assert changed and result.best_step > 0, result.curve
    for name in changed:
        assert name.startswith("model.multi_modal_projector.") or (
            name.startswith("model.language_model.layers.") and ".self_attn." in name), name
    assert any(".self_attn.q_proj." in n for n in changed) and any("multi_modal_projector" in n for n in changed)
    assert all(p.requires_grad for p in model.parameters())


def test_build_without_instructions_or_grid_terms_skips_them(tmp_path: Path) -> None:
    spec = EmbeddedModelSpec(**{**TINY.__dict__, "lm_max_steps": 4, "tower_max_steps": 2, "caption_max_steps": 2,
                                "tower_cell_weight": 0.0, "caption_word_weight": 0.0})
    train, val = standin_corpus(2000, n_facts=10)
    report = build_embedded_base(tmp_path / "b", train, val, standin_pairs(12, size=TINY.image_size), spec,
                                 progress=False)
    assert report["instruct"] is None and "instruct_tune" not in report["wall_s"]
    assert report["tower_grid"] is None and report["caption"]["word_cos_before"] is None


@pytest.mark.slow
def test_default_build_learns(tmp_path: Path) -> None:
    """A default-size build on ~300k words and 2000 pairs learns (wall time goes to the report, not asserted)."""
    train, val = standin_corpus(300_000)
    report = build_embedded_base(tmp_path / "base", train, val, standin_pairs(2000), EmbeddedModelSpec())
    assert report["lm"]["final_val_ppl"] < report["lm"]["initial_val_ppl"] / 10
    assert report["tower"]["retrieval_after"] > 5 * report["tower"]["chance"]
    assert report["caption"]["loss_after"] < report["caption"]["loss_before"]
