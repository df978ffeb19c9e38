"""The quantized linear layer, with QSLAW's learnable group scale γ, in two storage modes.

How it works
------------
Weights ``W`` ``(out, in)`` are split into groups of ``g`` input columns; each group has a frozen step
``s`` and zero ``z`` (``(out, in // g)``, stored in the original weight dtype) and, in decoder blocks
after ``start_layer``, a learnable scale ``γ`` (``(out, in // g)``, float32, initialised to 1 so training
starts at the plain quantized model).

``requant`` — reference-exact (the released code's ``QuantLinear``). Keeps the frozen full-precision ``W``
as a buffer and fake-quantizes it on every forward::

    Ŵ = s · (clamp(round_ste(W / (s·γ)) + z, 0, 2^b − 1) − z)

``γ`` only decides which integer code each weight rounds to; its straight-through gradient is
``Σ ∂L/∂Ŵ · (−W/γ²)`` over unclamped entries. Memory: a full-precision weight per layer, like the reference.

``packed`` — memory-efficient (the reference cannot do this). Keeps only the packed integer codes ``q``
(uint8, two 4-bit codes per byte; see ``packing.py``) plus ``s``, ``z``::

    Ŵ = γ · s · (q − z)            ∂L/∂γ = Σ ∂L/∂Ŵ · s·(q − z)   (exact, no straight-through needed)

``γ`` rescales each group's dequantized values instead of moving codes across rounding boundaries.

Both modes run a custom autograd function that rebuilds ``Ŵ`` in the backward pass instead of letting
autograd keep it (or ``W``-sized intermediates) alive between forward and backward, and that saves the
input only when ``γ`` needs a gradient. So a frozen quantized layer under LoRA costs its packed codes plus
activations, never a dequantized copy per layer. ``Ŵ`` is built in float32 and cast to the input dtype.

:func:`absorb` folds ``γ`` away: ``requant`` → codes ``clamp(round(W/(s·γ)) + z)`` with the original
``s``, ``z`` (same outputs bit for bit); ``packed`` → ``s ← γ·s`` (equal up to rounding ``γ·s`` to the
storage dtype: ~1e-7 relative in float32). The result is always a ``packed`` layer without ``γ``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qslaw.quant.functional import (
    dequantize,
    dequantize_gamma_grad,
    fake_quant,
    fake_quant_gamma_grad,
    quantize_codes,
)
from qslaw.quant.packing import pack, packed_length, unpack


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


class _RequantLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, scales, zeros, gamma, bias, bits):  # noqa: ANN001, ANN205
        w_hat = fake_quant(weight, scales, zeros, bits, gamma).to(x.dtype)
        ctx.bits = bits
        ctx.save_for_backward(x if ctx.needs_input_grad[4] else None, weight, scales, zeros, gamma)
        return F.linear(x, w_hat, bias)

    @staticmethod
    def backward(ctx, dy):  # noqa: ANN001, ANN205
        x, weight, scales, zeros, gamma = ctx.saved_tensors
        w_hat = fake_quant(weight, scales, zeros, ctx.bits, gamma)
        dx = (dy @ w_hat.to(dy.dtype)) if ctx.needs_input_grad[0] else None
        dgamma = None
        if ctx.needs_input_grad[4]:
            dw = _flat(dy).float().T @ _flat(x).float()
            dgamma = fake_quant_gamma_grad(dw, weight, scales, zeros, ctx.bits, gamma)
        return dx, None, None, None, dgamma, None, None


class _PackedLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, qweight, scales, zeros, gamma, bias, bits, in_features):  # noqa: ANN001, ANN205
        q = unpack(qweight, bits, in_features)
        w_hat = dequantize(q, scales, zeros, gamma).to(x.dtype)
        ctx.bits, ctx.in_features = bits, in_features
        ctx.save_for_backward(x if ctx.needs_input_grad[4] else None, qweight, scales, zeros, gamma)
        return F.linear(x, w_hat, bias)

    @staticmethod
    def backward(ctx, dy):  # noqa: ANN001, ANN205
        x, qweight, scales, zeros, gamma = ctx.saved_tensors
        q = unpack(qweight, ctx.bits, ctx.in_features)
        dx = (dy @ dequantize(q, scales, zeros, gamma).to(dy.dtype)) if ctx.needs_input_grad[0] else None
        dgamma = None
        if ctx.needs_input_grad[4]:
            dw = _flat(dy).float().T @ _flat(x).float()
            dgamma = dequantize_gamma_grad(dw, q, scales, zeros)
        return dx, None, None, None, dgamma, None, None, None


class QuantLinear(nn.Module):
    """A group-wise quantized ``nn.Linear`` replacement; ``gamma`` is its only trainable tensor."""

    trainable_names = ("gamma",)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bits: int,
        group_size: int,
        mode: str,
        has_gamma: bool,
        bias: bool,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("requant", "packed"):
            raise ValueError(f"mode: must be 'requant' or 'packed', got {mode!r}")
        if in_features % group_size:
            raise ValueError(f"group_size: {group_size} does not divide in_features={in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.mode = bits, group_size, mode
        self.compute_dtype = dtype
        groups = (out_features, in_features // group_size)
        if mode == "requant":
            self.register_buffer("weight", torch.empty(out_features, in_features, dtype=dtype, device=device))
        else:
            self.register_buffer(
                "qweight", torch.empty(out_features, packed_length(in_features, bits), dtype=torch.uint8, device=device)
            )
        self.register_buffer("scales", torch.empty(groups, dtype=dtype, device=device))
        self.register_buffer("zeros", torch.empty(groups, dtype=dtype, device=device))
        self.register_buffer("bias", torch.empty(out_features, dtype=dtype, device=device) if bias else None)
        self.gamma = nn.Parameter(torch.ones(groups, dtype=torch.float32, device=device)) if has_gamma else None

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, bits: int, group_size: int, mode: str, s: torch.Tensor, z: torch.Tensor, has_gamma: bool
    ) -> QuantLinear:
        """Quantize ``linear`` with the given per-group ``s``, ``z``; reuses its weight tensor in ``requant`` mode."""
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, bits, group_size, mode, has_gamma,
                    linear.bias is not None, dtype=w.dtype, device=w.device)
        if mode == "requant":
            layer.weight = w
        else:
            layer.qweight = pack(quantize_codes(w, s.detach(), z.detach(), bits), bits)
        layer.scales, layer.zeros = s.detach().to(w.dtype), z.detach().to(w.dtype)
        if linear.bias is not None:
            layer.bias = linear.bias.detach()
        return layer

    def codes(self) -> torch.Tensor:
        """Integer codes ``(out, in)``; in ``requant`` mode the codes γ currently selects."""
        if self.mode == "packed":
            return unpack(self.qweight, self.bits, self.in_features)
        gamma = None if self.gamma is None else self.gamma.detach()
        return quantize_codes(self.weight, self.scales, self.zeros, self.bits, gamma)

    @torch.no_grad()
    def dequantized_weight(self) -> torch.Tensor:
        """``Ŵ`` in float32, exactly as ``forward`` uses it."""
        gamma = None if self.gamma is None else self.gamma.detach()
        if self.mode == "requant":
            return fake_quant(self.weight, self.scales, self.zeros, self.bits, gamma)
        return dequantize(self.codes(), self.scales, self.zeros, gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "requant":
            return _RequantLinearFn.apply(x, self.weight, self.scales, self.zeros, self.gamma, self.bias, self.bits)
        return _PackedLinearFn.apply(
            x, self.qweight, self.scales, self.zeros, self.gamma, self.bias, self.bits, self.in_features
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"group_size={self.group_size}, mode={self.mode}, gamma={self.gamma is not None}"
        )


@torch.no_grad()
def absorb(layer: QuantLinear) -> QuantLinear:
    """A new ``packed`` layer without ``γ`` computing the same ``Ŵ`` (see module docstring)."""
    out = QuantLinear(layer.in_features, layer.out_features, layer.bits, layer.group_size, "packed", False,
                      layer.bias is not None, dtype=layer.compute_dtype, device=layer.scales.device)
    gamma = None if layer.gamma is None else layer.gamma.detach()
    if layer.mode == "requant":
        out.qweight = pack(quantize_codes(layer.weight, layer.scales, layer.zeros, layer.bits, gamma), layer.bits)
        out.scales = layer.scales.clone()
    else:
        out.qweight = layer.qweight.clone()
        scales = layer.scales.float() if gamma is None else layer.scales.float() * gamma
        out.scales = scales.to(layer.compute_dtype)
    out.zeros = layer.zeros.clone()
    if layer.bias is not None:
        out.bias = layer.bias.clone()
    return out


@torch.no_grad()
def requantize(layer: QuantLinear, delta: torch.Tensor) -> tuple[QuantLinear, dict[str, float]]:
    """Re-quantize ``Ŵ + delta`` on the layer's own grid (same ``s``, ``z``); returns the layer and its error.

    The error report says how much of ``delta`` the grid could not represent:
    ``rel_error = ‖(Ŵ + Δ) − Ŵ'‖ / ‖Δ‖`` and ``max_abs_error``.
    """
    if layer.gamma is not None:
        raise ValueError("gamma: absorb γ before merging an adapter into the codes")
    target = layer.dequantized_weight() + delta.float()
    out = QuantLinear(layer.in_features, layer.out_features, layer.bits, layer.group_size, "packed", False,
                      layer.bias is not None, dtype=layer.compute_dtype, device=layer.scales.device)
    out.qweight = pack(quantize_codes(target, layer.scales.float(), layer.zeros.float(), layer.bits), layer.bits)
    out.scales, out.zeros = layer.scales.clone(), layer.zeros.clone()
    if layer.bias is not None:
        out.bias = layer.bias.clone()
    err = target - out.dequantized_weight()
    denom = delta.float().norm().clamp_min(1e-12)
    return out, {"rel_error": float(err.norm() / denom), "max_abs_error": float(err.abs().max())}
