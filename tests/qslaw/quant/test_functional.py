"""The quantizer's maths: grid membership, error bounds, γ semantics, gradients, and an independent reference."""

from __future__ import annotations

import pytest
import torch

from qslaw.quant.functional import dequantize, fake_quant, minmax_qparams, quantize_codes
from qslaw.quant.linear import QuantLinear
from qslaw.quant.packing import pack, unpack

CASES = [(4, 128, (8, 256)), (3, 64, (5, 128)), (2, 32, (3, 96)), (8, 128, (4, 128))]


def weight(shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def reference_fake_quant(w: torch.Tensor, bits: int, g: int, gamma: torch.Tensor | None = None) -> torch.Tensor:
    """Element-by-element OmniQuant/QSLAW formula written independently of the library."""
    out = torch.empty_like(w)
    qmax = 2**bits - 1
    for r in range(w.shape[0]):
        for c0 in range(0, w.shape[1], g):
            grp = w[r, c0:c0 + g].tolist()
            lo, hi = min(grp), max(grp)
            s = min(max((hi - lo) / qmax, 1e-5), 1e4)
            z = round(min(max(-lo / s, -1e4), 1e4))
            gam = 1.0 if gamma is None else float(gamma[r, c0 // g])
            for j, v in enumerate(grp):
                q = min(max(round(v / (s * gam)) + z, 0), qmax)
                out[r, c0 + j] = s * (q - z)
    return out


@pytest.mark.parametrize("bits,g,shape", CASES)
def test_values_lie_on_the_grid(bits: int, g: int, shape: tuple[int, int]) -> None:
    w = weight(shape)
    s, z = minmax_qparams(w, bits, g)
    w_hat = fake_quant(w, s, z, bits, torch.empty_like(s).uniform_(0.7, 1.3))
    codes = w_hat.reshape(shape[0], -1, g) / s[..., None] + z[..., None]
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.min() >= -1e-3 and codes.max() <= 2**bits - 1 + 1e-3


@pytest.mark.parametrize("bits,g,shape", CASES)
def test_rtn_error_is_at_most_half_a_step(bits: int, g: int, shape: tuple[int, int]) -> None:
    w = weight(shape, seed=1)
    s, z = minmax_qparams(w, bits, g)
    err = (w - fake_quant(w, s, z, bits)).abs().reshape(shape[0], -1, g)
    assert (err <= s[..., None] / 2 + 1e-6).all()


@pytest.mark.parametrize("bits,g,shape", CASES)
def test_matches_independent_reference(bits: int, g: int, shape: tuple[int, int]) -> None:
    w = weight(shape, seed=2)
    gamma = torch.empty(shape[0], shape[1] // g).uniform_(0.8, 1.2, generator=torch.Generator().manual_seed(3))
    s, z = minmax_qparams(w, bits, g)
    assert torch.allclose(fake_quant(w, s, z, bits), reference_fake_quant(w, bits, g), atol=1e-5)
    assert torch.allclose(fake_quant(w, s, z, bits, gamma), reference_fake_quant(w, bits, g, gamma), atol=1e-5)


def test_gamma_one_equals_plain_fake_quant() -> None:
    w = weight((6, 256))
    s, z = minmax_qparams(w, 4, 128)
    plain = fake_quant(w, s, z, 4)
    assert torch.equal(fake_quant(w, s, z, 4, torch.ones_like(s)), plain)
    assert torch.equal(dequantize(quantize_codes(w, s, z, 4), s, z, torch.ones_like(s)), plain)


def test_gamma_changes_codes_not_the_step() -> None:
    """Reference semantics: rounding uses s·γ, dequantization uses s, so Ŵ ≈ W/γ away from the clip range."""
    w = weight((4, 128)) * 0.1
    s, z = minmax_qparams(w, 8, 128)
    gamma = torch.full_like(s, 1.25)
    assert not torch.equal(quantize_codes(w, s, z, 8, gamma), quantize_codes(w, s, z, 8))
    assert torch.allclose(fake_quant(w, s, z, 8, gamma), w / 1.25, atol=float(s.max()))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 128), (2, 3, 5)])
def test_pack_roundtrip(bits: int, shape: tuple[int, ...]) -> None:
    q = torch.randint(0, 2**bits, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    packed = pack(q, bits)
    assert packed.dtype == torch.uint8
    assert packed.shape[-1] == -(-shape[-1] // {2: 4, 3: 2, 4: 2, 8: 1}[bits])
    assert torch.equal(unpack(packed, bits, shape[-1]), q)


def test_pack_rejects_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="bits"):
        pack(torch.zeros(2, 2, dtype=torch.uint8), 5)
    with pytest.raises(ValueError, match=r"codes: values must lie in \[0, 15\]"):
        pack(torch.tensor([[16]]), 4)
    with pytest.raises(TypeError, match="codes"):
        pack(torch.zeros(2, 2), 4)
    with pytest.raises(ValueError, match="packed"):
        unpack(torch.zeros(2, 3, dtype=torch.uint8), 4, 8)


def quant_layer(mode: str, seed: int = 0) -> QuantLinear:
    torch.manual_seed(seed)
    linear = torch.nn.Linear(256, 6)
    s, z = minmax_qparams(linear.weight.detach(), 4, 128)
    layer = QuantLinear.from_linear(linear, 4, 128, mode, s, z, has_gamma=True)
    with torch.no_grad():
        layer.gamma.uniform_(0.9, 1.1)
    return layer


def test_packed_gamma_gradient_matches_finite_differences() -> None:
    layer = quant_layer("packed")
    x = torch.randn(3, 256, dtype=torch.float64)
    proj = torch.randn(3, 6, dtype=torch.float64)

    def loss(gamma: torch.Tensor) -> torch.Tensor:
        w_hat = dequantize(layer.codes(), layer.scales, layer.zeros, gamma).double()
        return ((x @ w_hat.T) * proj).sum()

    (layer(x.float()) * proj.float()).sum().backward()
    eps = 1e-3
    numeric = torch.zeros_like(layer.gamma)
    for idx in torch.cartesian_prod(torch.arange(6), torch.arange(2)).tolist():
        plus, minus = layer.gamma.detach().clone(), layer.gamma.detach().clone()
        plus[tuple(idx)] += eps
        minus[tuple(idx)] -= eps
        numeric[tuple(idx)] = (loss(plus) - loss(minus)) / (2 * eps)
    assert torch.allclose(layer.gamma.grad, numeric, rtol=1e-3, atol=1e-3)


def test_requant_gamma_gradient_matches_straight_through_autograd() -> None:
    layer = quant_layer("requant")
    x = torch.randn(4, 256, requires_grad=True)
    gamma = layer.gamma.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = x_ref @ fake_quant(layer.weight, layer.scales, layer.zeros, 4, gamma).T + layer.bias
    ref.pow(2).sum().backward()
    out = layer(x)
    out.pow(2).sum().backward()
    assert torch.allclose(out, ref.detach(), atol=1e-5)
    assert torch.allclose(layer.gamma.grad, gamma.grad, rtol=1e-4, atol=1e-5)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
