"""Calibration: LWC must beat round-to-nearest on a block whose activations have outlier channels."""

from __future__ import annotations

import torch
from tiny_models import tiny_llama_config, tiny_llava, tiny_llava_batch
from transformers import LlamaForCausalLM

from qslaw.model.calibrate import calibrate
from qslaw.model.surgery import quantize_model, target_linears
from qslaw.quant.functional import minmax_qparams
from qslaw.quant.spec import CalibSpec, QuantSpec

SPEC = QuantSpec(bits=3, group_size=32, start_layer=0)


def outlier_llama() -> LlamaForCausalLM:
    """Heavy-tailed weights plus a few huge embedding channels, as in real LLM activations."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config())
    with torch.no_grad():
        for _, _, linear in target_linears(model, SPEC):
            linear.weight.copy_(torch.distributions.StudentT(2.0).sample(linear.weight.shape) * 0.02)
        model.model.embed_tokens.weight[:, :3] *= 30
    return model.eval()


def batches(n: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, 96, (2, 24), generator=g)} for _ in range(n)]


def test_lwc_beats_rtn_on_every_block_with_outliers() -> None:
    _, report = calibrate(outlier_llama(), batches(), SPEC, CalibSpec(method="lwc", epochs=15), progress=False)
    assert [r["block"] for r in report] == [0, 1]
    for row in report:
        assert row["lwc_mse"] < 0.95 * row["rtn_mse"], row


def test_rtn_calibration_equals_min_max_and_leaves_weights_alone() -> None:
    model = outlier_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    qparams, report = calibrate(model, batches(2), SPEC, CalibSpec(method="rtn"), progress=False)
    assert all(set(r) == {"block", "rtn_mse"} for r in report)
    for name, _, linear in target_linears(model, SPEC):
        s, z = minmax_qparams(linear.weight, SPEC.bits, SPEC.group_size)
        assert torch.equal(qparams[name][0], s) and torch.equal(qparams[name][1], z)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_calibrates_a_llava_through_its_vision_path() -> None:
    model = tiny_llava()
    qparams, _ = calibrate(model, [tiny_llava_batch()], SPEC, CalibSpec(epochs=2), progress=False)
    assert set(qparams) == {n for n, _, _ in target_linears(model, SPEC)}
    quantize_model(model, SPEC, qparams)
    assert torch.isfinite(model(**tiny_llava_batch()).logits).all()
