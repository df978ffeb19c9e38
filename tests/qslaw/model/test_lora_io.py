"""LoRA over quantized layers, its honest merge, and safetensors save/load of quantized models."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import tiny_llava, tiny_llava_batch

from qslaw.model.io import load_quantized, save_quantized
from qslaw.model.lora import QuantLoraLinear, add_lora, merge_lora
from qslaw.model.surgery import absorb_gamma, quantize_model
from qslaw.quant.linear import QuantLinear
from qslaw.quant.spec import QuantSpec

SPEC = QuantSpec(group_size=32, start_layer=0, gamma_mode="packed")


def trained_lora_model() -> torch.nn.Module:
    model = add_lora(absorb_gamma(quantize_model(tiny_llava(), SPEC)), SPEC, r=4, alpha=8)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    return model


def test_peft_wraps_quantized_layers_with_the_custom_lora() -> None:
    model = trained_lora_model()
    wrapped = [m for m in model.modules() if isinstance(m, QuantLoraLinear)]
    assert len(wrapped) == 14
    assert all(isinstance(m.get_base_layer(), QuantLinear) for m in wrapped)


def test_merge_requantizes_on_the_same_grid_and_reports_its_error() -> None:
    model = trained_lora_model()
    name = "model.language_model.layers.1.mlp.down_proj"
    wrapper = model.base_model.model.get_submodule(name)
    base = wrapper.get_base_layer()
    target = base.dequantized_weight() + wrapper.get_delta_weight("default").float()
    merged, reports = merge_lora(model)
    assert len(reports) == 14
    layer = merged.get_submodule(name)
    assert isinstance(layer, QuantLinear) and layer.gamma is None
    assert torch.equal(layer.scales, base.scales) and torch.equal(layer.zeros, base.zeros)
    err = target - layer.dequantized_weight()
    delta = wrapper.get_delta_weight("default").float()
    assert reports[name]["rel_error"] == pytest.approx(float(err.norm() / delta.norm()), rel=1e-5)
    assert not any("lora_" in n for n, _ in merged.named_parameters())


def test_unmerge_is_refused() -> None:
    model = trained_lora_model()
    layer = next(m for m in model.modules() if isinstance(m, QuantLoraLinear))
    layer.merge()
    with pytest.raises(RuntimeError, match="unmerge"):
        layer.unmerge()


@pytest.mark.parametrize("mode", ["requant", "packed"])
def test_save_load_gives_identical_codes_and_logits(tmp_path, mode: str) -> None:  # noqa: ANN001
    spec = QuantSpec(group_size=32, start_layer=0, gamma_mode=mode)
    model = quantize_model(tiny_llava(), spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, QuantLinear) and m.gamma is not None:
                m.gamma.uniform_(0.8, 1.2)
    save_quantized(model, spec, tmp_path / "q")
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["config.json", "model.safetensors",
                                                                  "quant_config.json"]
    loaded, loaded_spec = load_quantized(tmp_path / "q")
    assert loaded_spec == spec
    codes = {n: m.codes() for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    for n, m in loaded.named_modules():
        if isinstance(m, QuantLinear):
            assert torch.equal(m.codes(), codes.pop(n)), n
    assert not codes
    batch = tiny_llava_batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_load_rejects_a_foreign_directory(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "quant_config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="format"):
        load_quantized(tmp_path)
    with pytest.raises(FileNotFoundError, match="quant_config.json"):
        load_quantized(tmp_path / "missing")


def test_save_is_atomic(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    model = quantize_model(tiny_llava(), SPEC)

    def boom(*_a, **_k) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("qslaw.model.io.save_model", boom)
    with pytest.raises(OSError):
        save_quantized(model, SPEC, tmp_path / "q")
    assert list(tmp_path.iterdir()) == []
