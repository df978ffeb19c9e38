"""LoRA on quantized linears through peft, and an honest merge back onto the quantization grid.

How it works
------------
peft wraps ``nn.Linear`` out of the box; our :class:`~qslaw.quant.linear.QuantLinear` is registered
through ``LoraConfig._register_custom_module`` (peft's documented custom-module hook), mapped to
:class:`QuantLoraLinear`. That subclass of peft's own ``lora.Linear`` keeps peft's forward
(``y = base(x) + B·A·dropout(x)·α/r``), adapter bookkeeping, saving and loading; the base layer's codes,
``s`` and ``z`` are buffers and never train.

Merging is where 4-bit fine-tunes silently break, so it is never a plain ``W += ΔW``: the merge
dequantizes, adds ``ΔW = B·A·α/r``, re-quantizes on the *same* grid (same ``s``, ``z``) and records what
the grid could not represent (``rel_error = ‖(Ŵ+ΔW) − Ŵ'‖ / ‖ΔW‖``) on ``merge_reports``; a merge is
one-way (unmerge raises). :func:`merge_lora` returns the unwrapped model with the per-layer reports.
For a full-precision merged checkpoint, dequantize first (export does that).
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

from qslaw.model.surgery import target_linears
from qslaw.quant.linear import QuantLinear, requantize
from qslaw.quant.spec import QuantSpec


class QuantLoraLinear(PeftLoraLinear):
    """peft's LoRA ``Linear`` over a :class:`QuantLinear`; merging re-quantizes on the layer's grid."""

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        names = adapter_names or [a for a in self.active_adapters if a in self.lora_A]
        for name in names:
            if name in self.merged_adapters:
                continue
            delta = self.get_delta_weight(name).float()
            new, report = requantize(self.get_base_layer(), delta)
            if safe_merge and not torch.isfinite(new.dequantized_weight()).all():
                raise ValueError(f"adapter {name}: merged weights are not finite")
            self.base_layer = new
            self.merge_reports = {**getattr(self, "merge_reports", {}), name: report}
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        raise RuntimeError("unmerge: a merge into quantized codes is lossy and cannot be undone")


def lora_config(model: nn.Module, spec: QuantSpec, r: int, alpha: int, dropout: float,
                modules_to_save: list[str] | None = None) -> LoraConfig:
    """A LoraConfig on exactly the decoder-block targets (vision tower excluded by name)."""
    names = [n for n, _, _ in target_linears(model, spec)]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none",
                        modules_to_save=modules_to_save)
    config._register_custom_module({QuantLinear: QuantLoraLinear})
    return config


def add_lora(model: nn.Module, spec: QuantSpec, r: int = 64, alpha: int = 16, dropout: float = 0.05) -> PeftModel:
    """Wrap the quantized (or full-precision) target linears with LoRA adapters."""
    return get_peft_model(model, lora_config(model, spec, r, alpha, dropout))


def merge_lora(model: PeftModel) -> tuple[nn.Module, dict[str, dict[str, float]]]:
    """Merge adapters into the codes (re-quantized) or fp weights; returns the plain model and per-layer errors."""
    reports = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantLoraLinear):
            module.merge()
            reports[name.removeprefix("base_model.model.")] = module.merge_reports[module.active_adapters[0]]
    return model.merge_and_unload(), reports


def load_adapter(model: nn.Module, adapter_dir: str | Path, is_trainable: bool = False) -> PeftModel:
    """Attach a saved adapter (``save_pretrained`` output) to a quantized or fp model."""
    config = LoraConfig.from_pretrained(str(adapter_dir))
    config._register_custom_module({QuantLinear: QuantLoraLinear})
    return PeftModel.from_pretrained(model, str(adapter_dir), config=config, is_trainable=is_trainable)
