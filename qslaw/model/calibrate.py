"""Calibration of the per-group step ``s`` and zero ``z``: round-to-nearest or learnable weight clipping.

How it works
------------
``rtn`` takes each group's min/max. ``lwc`` (OmniQuant's learnable weight clipping) shrinks them with
two learnable factors per group, ``xmax = sigmoid(u)·max``, ``xmin = sigmoid(l)·min`` (u = l = 4 at
init, so clipping starts at 98 %), and trains ``u``, ``l`` block by block::

    for block i:   target = block_fp(x_fp)                    # full-precision output on fp inputs
                   minimise  mean((block_q(x_q) − target)²)   # block_q fake-quantizes its targets with (u, l)
                   x_fp ← target ;  x_q ← block_q(x_q)        # next block sees the quantized stream

The inputs of block 0 are captured by a forward pre-hook on the first decoder block while the full model
runs the calibration batches, so embeddings, the vision tower and the projector produce them exactly as in
training; every keyword argument the model passes (position embeddings, masks) is replayed. ``round`` in
the fake quantizer is straight-through, so gradients reach ``u`` and ``l`` through ``s``. After training the
factors are folded into frozen ``s``, ``z``. The report holds, per block, the output MSE of ``rtn`` and of the
chosen method on the calibration activations, so the gain of ``lwc`` is measured, not assumed.
Differences from OmniQuant: no LET (smoothing), AdamW on the factors only, fp32 throughout.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from qslaw.model.surgery import decoder_blocks, replace_modules, target_linears
from qslaw.quant.functional import fake_quant, minmax_qparams
from qslaw.quant.spec import CalibSpec, QuantSpec

QParams = dict[str, tuple[torch.Tensor, torch.Tensor]]


class _Stop(Exception):
    pass


class _ClippedLinear(nn.Module):
    """Fake-quantizes a frozen linear with learnable clipping factors (or plain min/max when ``lwc`` is off)."""

    def __init__(self, linear: nn.Linear, bits: int, group_size: int, lwc: bool) -> None:
        super().__init__()
        self.linear, self.bits, self.group_size = linear, bits, group_size
        groups = (linear.out_features, linear.in_features // group_size)
        self.up = nn.Parameter(torch.full(groups, 4.0)) if lwc else None
        self.low = nn.Parameter(torch.full(groups, 4.0)) if lwc else None

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        return minmax_qparams(self.linear.weight, self.bits, self.group_size, self.up, self.low)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, z = self.qparams()
        w_hat = fake_quant(self.linear.weight, s, z, self.bits).to(x.dtype)
        return F.linear(x, w_hat, self.linear.bias)


def capture_block_inputs(model: nn.Module, batches: Iterable[dict]) -> list[tuple[tuple, dict]]:
    """Run the model on each batch and keep the ``(args, kwargs)`` its first decoder block receives."""
    first = decoder_blocks(model)[0][1]
    captured: list[tuple[tuple, dict]] = []

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append((tuple(a.detach() if torch.is_tensor(a) else a for a in args), dict(kwargs)))
        raise _Stop

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in batches:
                try:
                    model(**batch, use_cache=False)
                except _Stop:
                    pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError("batches: no calibration batch reached the decoder")
    return captured


def _run(block: nn.Module, inputs: list[tuple[tuple, dict]]) -> list[torch.Tensor]:
    outs = []
    for args, kwargs in inputs:
        out = block(*args, **kwargs)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return outs


def with_hidden(inputs: list[tuple[tuple, dict]], hidden: list[torch.Tensor]) -> list[tuple[tuple, dict]]:
    return [((h.detach(), *args[1:]), kwargs) for (args, kwargs), h in zip(inputs, hidden, strict=True)]


def _mse(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum(F.mse_loss(x.float(), y.float(), reduction="sum") for x, y in zip(a, b, strict=True))
                 / sum(x.numel() for x in a))


def _wrap(block: nn.Module, prefix: str, names: list[str], spec: QuantSpec, lwc: bool) -> dict[str, _ClippedLinear]:
    wrapped = {n: _ClippedLinear(block.get_submodule(n[len(prefix) + 1:]), spec.bits, spec.group_size, lwc)
               for n in names}
    replace_modules(block, {n[len(prefix) + 1:]: m for n, m in wrapped.items()})
    return wrapped


def _unwrap(block: nn.Module, prefix: str, wrapped: dict[str, _ClippedLinear]) -> None:
    replace_modules(block, {n[len(prefix) + 1:]: m.linear for n, m in wrapped.items()})


def _train_clipping(block: nn.Module, wrapped: dict[str, _ClippedLinear], x_q: list, target: list,
                    calib: CalibSpec) -> None:
    params = [p for m in wrapped.values() for p in (m.up, m.low)]
    opt = torch.optim.AdamW(params, lr=calib.lr, weight_decay=0.0)
    for _ in range(calib.epochs):
        for (args, kwargs), y in zip(x_q, target, strict=True):
            out = block(*args, **kwargs)
            loss = F.mse_loss((out[0] if isinstance(out, tuple) else out).float(), y.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def calibrate_block(block: nn.Module, index: int, prefix: str, names: list[str], x_fp: list, x_q: list,
                    spec: QuantSpec, calib: CalibSpec) -> tuple[QParams, dict, list[torch.Tensor], list[torch.Tensor]]:
    """Block ``index``: ``(s, z)`` of its target linears ``names`` (qualified, under ``prefix``), its error row,
    and its full-precision and quantized outputs (the next block's two input streams)."""
    with torch.no_grad():
        target = _run(block, x_fp)
        wrapped = _wrap(block, prefix, names, spec, lwc=False)
        rtn_mse = _mse(_run(block, x_q), target)
        _unwrap(block, prefix, wrapped)
    wrapped = _wrap(block, prefix, names, spec, lwc=calib.method == "lwc")
    if calib.method == "lwc":
        _train_clipping(block, wrapped, x_q, target, calib)
    with torch.no_grad():
        q_out = _run(block, x_q)
        row = {"block": index, "rtn_mse": rtn_mse, f"{calib.method}_mse": _mse(q_out, target)}
        qparams = {n: tuple(t.detach() for t in m.qparams()) for n, m in wrapped.items()}
    _unwrap(block, prefix, wrapped)
    return qparams, row, target, q_out


def calibrate(
    model: nn.Module, batches: Iterable[dict], spec: QuantSpec, calib: CalibSpec, progress: bool = True
) -> tuple[QParams, list[dict]]:
    """Per-group ``(s, z)`` for every target linear, and a per-block error report (rtn vs the chosen method)."""
    targets = target_linears(model, spec)
    x_fp = capture_block_inputs(model, batches)
    x_q = x_fp
    qparams: QParams = {}
    report = []
    requires = {n: p.requires_grad for n, p in model.named_parameters()}
    model.requires_grad_(False)
    blocks = decoder_blocks(model)
    for index, (prefix, block) in enumerate(tqdm(blocks, desc=f"calibrate ({calib.method})", disable=not progress)):
        names = [n for n, i, _ in targets if i == index]
        found, row, target, q_out = calibrate_block(block, index, prefix, names, x_fp, x_q, spec, calib)
        qparams.update(found)
        report.append(row)
        x_fp, x_q = with_hidden(x_fp, target), with_hidden(x_q, q_out)
    for n, p in model.named_parameters():
        p.requires_grad_(requires[n])
    return qparams, report
