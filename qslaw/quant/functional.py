"""Group-wise uniform asymmetric quantization as pure tensor functions.

How it works
------------
A weight ``W`` of shape ``(out, in)`` is viewed as ``(out, in // g, g)``: each group is ``g``
consecutive input columns of one output row (the GPTQ/AWQ layout; the QSLAW reference does the same
with ``W.reshape(-1, g)``). Every group has a step ``s`` and a zero point ``z`` (both ``(out, in // g)``)
and integer codes ``q ∈ [0, 2^b − 1]``.

Calibration (min/max, optionally clipped by learnable weight clipping, LWC, as in OmniQuant)::

    xmax = sigmoid(u) · max_g(W)        xmin = sigmoid(l) · min_g(W)        (u, l absent → rtn)
    s    = clamp((xmax − xmin) / (2^b − 1), 1e-5, 1e4)
    z    = round(clamp(−xmin / s, −1e4, 1e4))

Fake quantization with the QSLAW group scale ``γ`` (``(out, in // g)``, init 1), exactly the
released code's formula — rounding uses ``s·γ``, dequantization uses ``s``::

    Ŵ = s · (clamp(round_ste(W / (s·γ)) + z, 0, 2^b − 1) − z)

``round_ste`` is rounding in the forward pass and the identity in the backward pass (straight-through).
Its forward value equals ``torch.round`` bit for bit (x + (round(x) − x) is exact in floating point), so
codes computed with :func:`quantize_codes` and then dequantized reproduce :func:`fake_quant` exactly.

The packed representation keeps only ``q`` and uses ``Ŵ = γ · s · (q − z)`` (see ``linear.py``).
All functions return new tensors, compute in float32 and never move devices.
"""

from __future__ import annotations

import torch


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (x.round() - x).detach()


def grouped(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """View ``(out, in)`` as ``(out, in // g, g)``; ``in`` must be divisible by ``g``."""
    out_features, in_features = w.shape
    if in_features % group_size:
        raise ValueError(f"group_size: {group_size} does not divide in_features={in_features}")
    return w.reshape(out_features, in_features // group_size, group_size)


def minmax_qparams(
    w: torch.Tensor,
    bits: int,
    group_size: int,
    up: torch.Tensor | None = None,
    low: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step and zero point per group from (optionally LWC-clipped) min/max; differentiable in ``up``/``low``."""
    wg = grouped(w.float(), group_size)
    xmax, xmin = wg.amax(dim=-1), wg.amin(dim=-1)
    if up is not None and low is not None:
        xmax, xmin = torch.sigmoid(up) * xmax, torch.sigmoid(low) * xmin
    s = ((xmax - xmin) / (2**bits - 1)).clamp(1e-5, 1e4)
    z = (-xmin / s).clamp(-1e4, 1e4).round()
    return s, z


def fake_quant(
    w: torch.Tensor,
    s: torch.Tensor,
    z: torch.Tensor,
    bits: int,
    gamma: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Ŵ = s·(clamp(round_ste(W/(s·γ)) + z, 0, 2^b−1) − z)`` in float32, shape of ``w``."""
    wg = grouped(w.float(), w.shape[1] // s.shape[-1])
    step = s if gamma is None else s * gamma
    q = (round_ste(wg / step[..., None]) + z[..., None]).clamp(0, 2**bits - 1)
    return (s[..., None] * (q - z[..., None])).reshape(w.shape)


def quantize_codes(
    w: torch.Tensor,
    s: torch.Tensor,
    z: torch.Tensor,
    bits: int,
    gamma: torch.Tensor | None = None,
) -> torch.Tensor:
    """Integer codes ``clamp(round(W/(s·γ)) + z, 0, 2^b−1)`` as uint8, shape of ``w``."""
    wg = grouped(w.float(), w.shape[1] // s.shape[-1])
    step = s if gamma is None else s * gamma
    q = ((wg / step[..., None]).round() + z[..., None]).clamp(0, 2**bits - 1)
    return q.reshape(w.shape).to(torch.uint8)


def dequantize(
    q: torch.Tensor,
    s: torch.Tensor,
    z: torch.Tensor,
    gamma: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Ŵ = γ·s·(q − z)`` in float32 from integer codes of shape ``(out, in)``."""
    qg = grouped(q.float(), q.shape[1] // s.shape[-1])
    step = s.float() if gamma is None else s.float() * gamma.float()
    return (step[..., None] * (qg - z.float()[..., None])).reshape(q.shape)


def fake_quant_gamma_grad(
    grad_w: torch.Tensor,
    w: torch.Tensor,
    s: torch.Tensor,
    z: torch.Tensor,
    bits: int,
    gamma: torch.Tensor,
) -> torch.Tensor:
    """Straight-through ``∂L/∂γ`` of :func:`fake_quant`: ``Σ_group ∂L/∂Ŵ · (−W/γ²)`` over unclamped entries."""
    g = w.shape[1] // s.shape[-1]
    wg, dg = grouped(w.float(), g), grouped(grad_w.float(), g)
    pre = (wg / (s * gamma)[..., None]).round() + z[..., None]
    inside = (pre >= 0) & (pre <= 2**bits - 1)
    return (dg * inside * (-wg / (gamma * gamma)[..., None])).sum(dim=-1)


def dequantize_gamma_grad(grad_w: torch.Tensor, q: torch.Tensor, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Exact ``∂L/∂γ`` of :func:`dequantize`: ``Σ_group ∂L/∂Ŵ · s·(q − z)``."""
    g = q.shape[1] // s.shape[-1]
    base = grouped(dequantize(q, s, z), g)
    return (grouped(grad_w.float(), g) * base).sum(dim=-1)
