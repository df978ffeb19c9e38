"""A merged full-precision checkpoint that plain transformers loads: dequantize, then merge the LoRA adapter.

How it works
------------
Every 4-bit decoder linear of a bundle's model — a qslaw :class:`~qslaw.quant.linear.QuantLinear`
(``Ŵ = s·(q − z)``, γ already absorbed) or a bitsandbytes ``Linear4bit`` (NF4, dequantized by
``bitsandbytes.functional.dequantize_4bit``) — becomes an ``nn.Linear`` holding its dequantized weight in
float32; the adapter, if any, is then merged by peft (``W + B·A·α/r``, exact in float32). The result is
rebuilt as a fresh model of the same class from a config *without* any quantization entry, so
``save_pretrained`` writes a checkpoint that ``LlavaForConditionalGeneration.from_pretrained(dir)`` loads
with no qslaw and no bitsandbytes. Merging onto full precision is the lossless direction (merging into the
4-bit codes is not; see :mod:`qslaw.model.lora`): the merged model computes what the packed model + adapter
computes up to float rounding, and the export stage measures how often their greedy answers agree.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import transformers
from torch import nn

from qslaw.model.surgery import replace_modules
from qslaw.quant.linear import QuantLinear


def _dequantized(module: nn.Module) -> torch.Tensor | None:
    if isinstance(module, QuantLinear):
        return module.dequantized_weight().float()
    if type(module).__name__ == "Linear4bit":
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(module.weight.data, module.weight.quant_state).float()
    return None


@torch.no_grad()
def dequantize_linears(model: nn.Module) -> int:
    """Replace every quantized linear by an fp32 ``nn.Linear`` with its dequantized weight; returns how many."""
    new = {}
    for name, module in model.named_modules():
        weight = _dequantized(module)
        if weight is None:
            continue
        bias = getattr(module, "bias", None)
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias.float())
        new[name] = linear
    replace_modules(model, new)
    return len(new)


@torch.no_grad()
def merged_model(bundle_dir: str | Path) -> nn.Module:
    """The bundle's model dequantized, with its adapter merged, as a plain fp32 transformers model."""
    from qslaw.model.io import load_model
    from qslaw.model.lora import load_adapter

    bundle_dir = Path(bundle_dir)
    model = load_model(bundle_dir / "model")
    dequantize_linears(model)
    if (bundle_dir / "adapter" / "adapter_config.json").exists():
        model = load_adapter(model, bundle_dir / "adapter").merge_and_unload()
    config = copy.deepcopy(model.config)
    for holder in (config, getattr(config, "text_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    plain = getattr(transformers, type(model).__name__)._from_config(config, dtype=torch.float32)
    state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    plain.load_state_dict(state, strict=True)
    plain.tie_weights()
    return plain.eval()
