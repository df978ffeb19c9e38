"""Every adaptation method through quantize → warmup → hybrid → evaluate → export on the smoke profile,
in-process, and what each may and may not change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qslaw.config import METHODS, Params, load_params

ROOT = Path(__file__).resolve().parents[2]
DS_CONFIG = ROOT / "infra" / "deepspeed" / "zero2.json"


def with_method(params: Params, method: str, checkpoints: Path) -> Params:
    return dataclasses.replace(
        params, train=dataclasses.replace(params.train, method=method, checkpoint_dir=str(checkpoints)),
        evaluate=dataclasses.replace(params.evaluate, limit=4))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, Path]:
    from steps import base, prepare

    params = load_params(ROOT / "profiles" / "smoke.yaml")
    root = tmp_path_factory.mktemp("methods")
    base.run(params, root / "base")
    prepare.run(params, root / "prepare")
    return params, root


@pytest.fixture(scope="module")
def outputs(world: tuple[Params, Path]) -> dict[str, Path]:
    """Run the five training/eval stages once per method (module scope: each test below reads them)."""
    from steps import evaluate, export, hybrid, quantize, warmup

    params, root = world
    done = {}
    for method in METHODS:
        p, out = with_method(params, method, root / "checkpoints"), root / method
        quantize.run(p, root / "base", root / "prepare", out / "quantize")
        warmup.run(p, out / "quantize", root / "prepare", DS_CONFIG, out / "warmup")
        hybrid.run(p, out / "quantize", out / "warmup", root / "prepare", DS_CONFIG, out / "hybrid")
        evaluate.run(p, root / "base", out / "hybrid", root / "prepare", out / "evaluate")
        result = export.run(p, root / "base", root / "prepare", out / "hybrid", out / "evaluate", out / "export")
        (out / "export_result.json").write_text(json.dumps(result))
        done[method] = out
    assert not any((root / "checkpoints").rglob("*.safetensors"))  # each stage removed its checkpoints
    return done


def tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def report(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("method", METHODS)
def test_each_method_runs_end_to_end_and_reloads(outputs: dict[str, Path], method: str) -> None:
    from qslaw.export.bundle import load_bundle

    out = outputs[method]
    metrics = report(out / "evaluate" / "metrics.json")
    assert metrics["adapted"]["accuracy"]["Avg"] >= 0 and metrics["protocol"]["questions"] == 4
    card = (out / "export" / "model_card.md").read_text()
    assert f"Method `{method}`" in card
    for field in ("## Base model", "- id: `embedded`", "## Data", "task_train.parquet", "## Evaluation protocol",
                  "## Metrics", "Language retention", "## Lineage", "git.commit", "pkg.torch", "## Known limitations"):
        assert field in card, field
    model, _ = load_bundle(out / "export")
    assert (out / "export" / "adapter").exists() == (method != "full_ft")
    assert (out / "export" / "gamma.safetensors").exists() == method.startswith("qslaw")
    assert type(model).__name__ in ("PeftModel", "PeftModelForCausalLM", "LlavaForConditionalGeneration")


@pytest.mark.parametrize("method", METHODS)
def test_the_merged_checkpoint_loads_in_plain_transformers_and_matches(outputs: dict[str, Path], method: str) -> None:
    from transformers import LlavaForConditionalGeneration

    merged_dir = outputs[method] / "export" / "merged"
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config and not (merged_dir / "quant_config.json").exists()
    model = LlavaForConditionalGeneration.from_pretrained(merged_dir)
    assert all(type(m).__name__ != "Linear4bit" for m in model.modules())
    result = report(outputs[method] / "export_result.json")
    assert result["merged_questions"] == 4
    # dequantize + merge is exact up to float rounding: the greedy answers agree with the packed model's
    assert result["merged_identical_outputs"] >= 3, result
    assert result["merged_acc_change"] == pytest.approx(result["merged_acc"] - result["packed_acc_same_questions"])
    assert "Merged full-precision checkpoint" in (outputs[method] / "export" / "model_card.md").read_text()


def test_weight_formats_follow_the_method(outputs: dict[str, Path]) -> None:
    for method in ("qslaw", "qslaw_no_warmup", "lwc_lora", "rtn_lora"):
        q = report(outputs[method] / "quantize" / "report.json")
        assert q["weights"] == "qslaw" and (outputs[method] / "quantize" / "model" / "quant_config.json").exists()
        layers = report(outputs[method] / "quantize" / "model" / "quant_config.json")["layers"]
        assert any(e["gamma"] for e in layers.values()) == method.startswith("qslaw"), method
    assert report(outputs["lwc_lora"] / "quantize" / "report.json")["calibration"] == "lwc"
    assert report(outputs["rtn_lora"] / "quantize" / "report.json")["calibration"] == "rtn"
    qlora = json.loads((outputs["qlora"] / "hybrid" / "model" / "config.json").read_text())
    assert qlora["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    assert qlora["quantization_config"]["bnb_4bit_use_double_quant"] is True
    for method in ("lora_fp", "full_ft"):
        config = json.loads((outputs[method] / "hybrid" / "model" / "config.json").read_text())
        assert "quantization_config" not in config and not (outputs[method] / "hybrid" / "model" /
                                                           "quant_config.json").exists()


def test_warmup_runs_only_for_qslaw(outputs: dict[str, Path]) -> None:
    for method, out in outputs.items():
        w = report(out / "warmup" / "report.json")
        assert w["skipped"] == (method != "qslaw"), method
        assert (out / "warmup" / "trainables.safetensors").exists() == (method == "qslaw")
        h = report(out / "hybrid" / "report.json")
        assert (h["steps_mix"] > 0) == method.startswith("qslaw"), method


@pytest.mark.parametrize("method", ["lwc_lora", "rtn_lora", "lora_fp", "qlora"])
def test_lora_baselines_change_only_the_projector_in_the_base(outputs: dict[str, Path], method: str) -> None:
    """The tuned base equals the quantize stage's bit for bit except the projector (the adapter is separate)."""
    before = tensors(outputs[method] / "quantize" / "model")
    after = tensors(outputs[method] / "hybrid" / "model")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("multi_modal_projector" in k for k in changed), sorted(changed)[:5]
    adapter = load_file(str(outputs[method] / "hybrid" / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)


def test_qslaw_changes_codes_projector_and_nothing_outside_the_decoder(outputs: dict[str, Path]) -> None:
    before = tensors(outputs["qslaw"] / "quantize" / "model")
    after = tensors(outputs["qslaw"] / "hybrid" / "model")
    changed = {k for k in before if k in after and not torch.equal(before[k], after[k])}
    assert any("multi_modal_projector" in k for k in changed)
    assert any(k.endswith((".codes", ".s", ".qweight", ".scales")) or ".layers." in k for k in changed)
    outside = {k for k in changed if "multi_modal_projector" not in k and "language_model.layers." not in k}
    assert not outside, sorted(outside)[:5]
    gamma = load_file(str(outputs["qslaw"] / "hybrid" / "gamma.safetensors"))
    assert gamma and any(not torch.all(t == 1) for t in gamma.values())


def test_full_ft_changes_llm_and_projector_never_the_vision_tower(outputs: dict[str, Path]) -> None:
    before = tensors(outputs["full_ft"] / "quantize" / "model")
    after = tensors(outputs["full_ft"] / "hybrid" / "model")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("language_model" in k for k in changed) and any("multi_modal_projector" in k for k in changed)
    assert not any("vision_tower" in k for k in changed)
    h = report(outputs["full_ft"] / "hybrid" / "report.json")
    assert h["trainable_llm"] > h["trainable_projector"] > 0


def test_a_linear_mix_schedule_moves_the_realised_text_share(world: tuple[Params, Path],
                                                            outputs: dict[str, Path]) -> None:
    from steps import hybrid

    params, root = world
    p = with_method(params, "qslaw_no_warmup", root / "checkpoints")
    p = dataclasses.replace(p, hybrid=dataclasses.replace(p.hybrid, mix_schedule="linear", text_ratio=0.25,
                                                          text_ratio_end=3.0, multimodal_samples=16))
    out = outputs["qslaw_no_warmup"]
    result = hybrid.run(p, out / "quantize", out / "warmup", root / "prepare", DS_CONFIG, root / "linear")
    assert result["mix_schedule"] == "linear"
    n_mm = result["mix_multimodal"]  # the smoke train split has fewer image questions than asked for
    assert n_mm >= 8 and result["mix_text"] == round(n_mm * 0.475 / 0.525)  # mean text share (0.2 + 0.75) / 2
    assert result["mix_text_share_first_quarter"] < 0.4 < result["mix_text_share_last_quarter"]


def test_hybrid_report_carries_the_checks_a_result_rests_on(outputs: dict[str, Path]) -> None:
    """γ moved, absorbing it left the logits as trained, LoRA starts from the absorbed weights, and the
    validation perplexity is recorded before and after each phase."""
    h = report(outputs["qslaw"] / "hybrid" / "report.json")
    blocks = [k for k in h if k.startswith("gamma_dev_rms_block")]
    assert blocks and h["gamma_dev_rms_max"] == max(h[k] for k in blocks) > 0
    assert 0 <= h["absorb_max_logit_diff"] <= 1e-3 * h["probe_max_abs_logit"]
    assert h["tune_start_max_logit_diff"] == 0.0
    assert all(h[k] > 1 for k in ("ppl_val_start", "ppl_val_after_mix", "ppl_val_after_tune"))
    lora = report(outputs["lora_fp"] / "hybrid" / "report.json")
    assert "ppl_val_after_mix" not in lora and "absorb_max_logit_diff" not in lora
    assert lora["tune_start_max_logit_diff"] == 0.0 and lora["ppl_val_after_tune"] > 1
    qlora = report(outputs["qlora"] / "hybrid" / "report.json")
    assert not any(k.startswith(("ppl_val", "tune_start")) for k in qlora)  # NF4: no eval-mode forward


def test_phase_two_mixes_in_corpus_chunks_after_those_phase_one_used(world: tuple[Params, Path]) -> None:
    from transformers import AutoProcessor

    from qslaw.data.prepare import read_rows
    from steps import hybrid

    params, root = world
    processor = AutoProcessor.from_pretrained(root / "base")
    chunks = hybrid.corpus_chunks(params, processor, root / "prepare")
    p = dataclasses.replace(params, hybrid=dataclasses.replace(params.hybrid, tune_text_ratio=0.0))
    tasks, stats = hybrid.tune_samples(p, processor, _model_config(root), root / "prepare", text_used=3)
    assert stats == {} and len(tasks) == len(read_rows(root / "prepare" / "task_train.parquet"))
    p = dataclasses.replace(params, hybrid=dataclasses.replace(params.hybrid, tune_text_ratio=0.5))
    mixed, stats = hybrid.tune_samples(p, processor, _model_config(root), root / "prepare", text_used=3)
    n_text = min(round(0.5 * len(tasks)), len(chunks) - 3)
    assert stats["tune_text"] == n_text == len(mixed) - len(tasks) > 0
    assert torch.equal(mixed[len(tasks)]["input_ids"], chunks[3]["input_ids"])


def _model_config(root: Path) -> object:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(root / "base")


def test_evaluate_scores_the_validation_split_when_asked(world: tuple[Params, Path],
                                                         outputs: dict[str, Path]) -> None:
    from steps import evaluate

    params, root = world
    p = with_method(params, "lora_fp", root / "checkpoints")
    p = dataclasses.replace(p, evaluate=dataclasses.replace(p.evaluate, split="validation"))
    out = outputs["lora_fp"]
    evaluate.run(p, root / "base", out / "hybrid", root / "prepare", root / "eval-validation")
    metrics = report(root / "eval-validation" / "metrics.json")
    assert metrics["protocol"]["split"] == "validation" and metrics["protocol"]["questions"] == 4
    with open(root / "eval-validation" / "predictions.csv") as f:
        ids = [line.split(",")[1] for line in f.read().splitlines()[1:]]
    assert ids and all(i.startswith("validation-") for i in ids)
    test = report(out / "evaluate" / "metrics.json")
    assert test["protocol"]["split"] == "test"
