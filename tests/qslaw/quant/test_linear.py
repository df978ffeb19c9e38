"""QuantLinear: both modes, absorb, and what an optimizer step may touch."""

from __future__ import annotations

import pytest
import torch

from qslaw.quant.functional import minmax_qparams
from qslaw.quant.linear import QuantLinear, absorb, requantize
from qslaw.quant.spec import QuantSpec

SPECS = [QuantSpec(bits=4, group_size=128), QuantSpec(bits=3, group_size=64), QuantSpec(bits=2, group_size=32),
         QuantSpec(bits=8, group_size=128)]


def make(mode: str, spec: QuantSpec, gamma: bool = True, dtype: torch.dtype = torch.float32) -> QuantLinear:
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 12).to(dtype)
    s, z = minmax_qparams(linear.weight.detach(), spec.bits, spec.group_size)
    layer = QuantLinear.from_linear(linear, spec.bits, spec.group_size, mode, s, z, has_gamma=gamma)
    if gamma:
        with torch.no_grad():
            layer.gamma.uniform_(0.8, 1.2)
    return layer


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"w{s.bits}g{s.group_size}")
def test_absorb_requant_is_bit_identical(spec: QuantSpec) -> None:
    layer = make("requant", spec)
    x = torch.randn(5, 256)
    absorbed = absorb(layer)
    assert absorbed.mode == "packed" and absorbed.gamma is None and not hasattr(absorbed, "weight")
    assert torch.equal(absorbed(x), layer(x))
    assert torch.equal(absorbed.codes(), layer.codes())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"w{s.bits}g{s.group_size}")
def test_absorb_packed_within_1e6_relative(spec: QuantSpec) -> None:
    layer = make("packed", spec)
    x = torch.randn(5, 256)
    before, after = layer(x), absorb(layer)(x)
    assert ((after - before).norm() / before.norm()) <= 1e-6
    assert torch.equal(absorb(layer).qweight, layer.qweight)


def test_packed_keeps_no_full_precision_weight() -> None:
    layer = make("packed", SPECS[0])
    buffers = dict(layer.named_buffers())
    assert "weight" not in buffers
    assert buffers["qweight"].dtype == torch.uint8 and buffers["qweight"].shape == (12, 128)


def test_packed_and_requant_agree_at_gamma_one() -> None:
    a, b = make("packed", SPECS[0], gamma=False), make("requant", SPECS[0], gamma=False)
    x = torch.randn(3, 256)
    assert torch.allclose(a(x), b(x), atol=1e-6)


@pytest.mark.parametrize("mode", ["requant", "packed"])
def test_optimizer_step_moves_gamma_only(mode: str) -> None:
    layer = make(mode, SPECS[0])
    frozen = {n: b.clone() for n, b in layer.named_buffers()}
    codes = layer.codes().clone() if mode == "packed" else None
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer(torch.randn(4, 256)).pow(2).mean().backward()
    before = layer.gamma.detach().clone()
    opt.step()
    assert [n for n, _ in layer.named_parameters()] == ["gamma"]
    assert not torch.equal(layer.gamma, before)
    for n, b in layer.named_buffers():
        assert torch.equal(b, frozen[n]), n
    if codes is not None:
        assert torch.equal(layer.codes(), codes)


def test_bf16_input_runs_and_grads_are_fp32() -> None:
    layer = make("packed", SPECS[0], dtype=torch.bfloat16)
    out = layer(torch.randn(2, 256, dtype=torch.bfloat16))
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and layer.gamma.grad.dtype == torch.float32


def test_requantize_on_grid_delta_is_exact_and_off_grid_is_reported() -> None:
    layer = absorb(make("packed", SPECS[0]))
    codes = layer.codes().long()
    step = torch.zeros_like(codes)
    step[codes < 15] = 1
    on_grid = (layer.scales.float()[..., None] * step.reshape(12, 2, 128).float()).reshape(12, 256)
    merged, report = requantize(layer, on_grid)
    assert report["rel_error"] < 1e-5
    assert torch.equal(merged.codes().long(), codes + step)
    _, report = requantize(layer, torch.full((12, 256), 1e-4))
    assert report["rel_error"] > 0.5


def test_requantize_refuses_unabsorbed_gamma() -> None:
    with pytest.raises(ValueError, match="gamma"):
        requantize(make("packed", SPECS[0]), torch.zeros(12, 256))


def test_bad_mode_and_group_size_are_named() -> None:
    with pytest.raises(ValueError, match="mode"):
        QuantLinear(256, 4, 4, 128, "fake", False, False)
    with pytest.raises(ValueError, match="group_size"):
        QuantLinear(200, 4, 4, 128, "packed", False, False)
