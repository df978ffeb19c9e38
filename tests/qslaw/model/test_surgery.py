"""Module surgery on real transformers classes: what gets quantized, what trains, what the counts say."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_llava, tiny_llava_batch
from transformers import LlamaConfig, LlamaForCausalLM

from qslaw.model.lora import add_lora
from qslaw.model.surgery import (
    absorb_gamma,
    decoder_blocks,
    parameter_report,
    quantize_model,
    set_trainable,
    target_linears,
)
from qslaw.quant.linear import QuantLinear
from qslaw.quant.spec import QuantSpec

SPEC = QuantSpec(group_size=32, start_layer=0)


@pytest.mark.parametrize("mode", ["requant", "packed"])
def test_quantizes_only_decoder_linears_in_place(mode: str) -> None:
    model = tiny_llava()
    same = quantize_model(model, QuantSpec(group_size=32, start_layer=0, gamma_mode=mode))
    assert same is model
    quantized = {n for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    assert len(quantized) == 2 * 7
    assert all(n.startswith("model.language_model.layers.") for n in quantized)
    assert isinstance(model.lm_head, torch.nn.Linear)
    assert not any(isinstance(m, QuantLinear) for m in model.model.vision_tower.modules())
    assert not any(isinstance(m, QuantLinear) for m in model.model.multi_modal_projector.modules())
    with_gamma = {n for n, m in model.named_modules() if isinstance(m, QuantLinear) and m.gamma is not None}
    assert with_gamma == {n for n in quantized if n.startswith("model.language_model.layers.1.")}


def test_llama_blocks_are_found(llama: LlamaForCausalLM) -> None:
    assert [n for n, _ in decoder_blocks(llama)] == ["model.layers.0", "model.layers.1"]
    assert len(target_linears(llama, SPEC)) == 14


def test_group_size_that_does_not_divide_names_the_layer(llama: LlamaForCausalLM) -> None:
    with pytest.raises(ValueError, match=r"group_size: 48 does not divide in_features=64 of model\.layers\.0\."):
        quantize_model(llama, QuantSpec(group_size=48))


def test_unknown_trainable_group_is_named(llama: LlamaForCausalLM) -> None:
    with pytest.raises(ValueError, match="trainable: unknown group"):
        set_trainable(llama, ["gamma", "everything"])


def gamma_phase() -> torch.nn.Module:
    return quantize_model(tiny_llava(), QuantSpec(group_size=32, start_layer=0, gamma_mode="packed"))


def lora_phase() -> torch.nn.Module:
    return add_lora(absorb_gamma(gamma_phase()), SPEC, r=4, alpha=8)


@pytest.mark.parametrize("build,groups", [(gamma_phase, ["gamma", "projector"]), (lora_phase, ["lora", "projector"])])
def test_step_changes_only_the_trainable_set(build, groups: list[str]) -> None:  # noqa: ANN001
    model = build()
    counts = set_trainable(model, groups)
    assert all(counts[g] > 0 for g in groups)
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = tiny_llava_batch()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    opt.step()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    allowed = {"gamma": ".gamma", "projector": "multi_modal_projector", "lora": "lora_"}
    for g in groups:
        assert any(allowed[g] in n for n in changed), g
    assert all(any(allowed[g] in n for g in groups) for n in changed), sorted(changed)[:5]


def test_gamma_is_a_sixth_of_lora_r128_at_13b_dims() -> None:
    """The reference notes derive 84.25 M γ vs 500.70 M LoRA-r128 parameters (16.83 %) for Vicuna-13B."""
    config = LlamaConfig(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                         num_key_value_heads=40, vocab_size=32000)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    report = parameter_report(model, QuantSpec(start_layer=5), lora_rank=128)
    assert report["gamma_params"] == 84_254_720
    assert report["lora_r128_params"] == 500_695_040
    assert round(report["gamma_over_lora"] * 100, 2) == 16.83
