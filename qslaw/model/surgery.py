"""Module surgery on transformers models: find the decoder blocks, swap linears, pick what trains.

How it works
------------
The language model's decoder is found through transformers' own ``get_decoder()`` (``LlamaForCausalLM``
→ ``model``; ``LlavaForConditionalGeneration`` → ``model.language_model``), and its ``layers`` are the
decoder blocks. Only linears *inside those blocks* whose name ends with one of ``spec.targets`` are
quantized, so the vision tower (whose CLIP encoder also has ``layers.N.self_attn.q_proj``), the projector,
the embeddings and ``lm_head`` are out of reach by construction, not by a deny-list.

One recursive converter (:func:`replace_modules`) swaps modules by qualified name; everything else is a
thin use of it. All functions mutate and return the same HF model object, so ``save_pretrained``,
``generate`` and peft keep working on it.

Trainable sets are selected by name: ``gamma`` (QSLAW group scales), ``projector``
(``multi_modal_projector``), ``lora`` (peft ``lora_`` tensors), ``llm`` (every language-model weight,
``lm_head`` included, for full fine-tuning).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from qslaw.quant.functional import minmax_qparams
from qslaw.quant.linear import QuantLinear, absorb
from qslaw.quant.spec import QuantSpec

TRAINABLE_GROUPS: dict[str, Callable[[str], bool]] = {
    "gamma": lambda name: name.endswith(".gamma"),
    "projector": lambda name: "multi_modal_projector" in name,
    "lora": lambda name: "lora_" in name,
    "llm": lambda name: ("language_model" in name or name.startswith(("model.layers", "model.embed", "model.norm",
                                                                        "lm_head."))),
}


def decoder_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, block)`` for every decoder block of the language model."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"model: cannot find decoder blocks (`{type(decoder).__name__}.layers`)")
    names = {id(m): n for n, m in model.named_modules()}
    return [(names[id(block)], block) for block in layers]


def target_linears(model: nn.Module, spec: QuantSpec) -> list[tuple[str, int, nn.Module]]:
    """``(qualified name, block index, module)`` of every quantization target, linear or already quantized."""
    found = []
    for index, (prefix, block) in enumerate(decoder_blocks(model)):
        for name, module in block.named_modules():
            if name.split(".")[-1] in spec.targets and isinstance(module, nn.Linear | QuantLinear):
                found.append((f"{prefix}.{name}", index, module))
    if not found:
        raise ValueError(f"targets: no module in the decoder blocks matches {spec.targets}")
    return found


def replace_modules(model: nn.Module, new: dict[str, nn.Module]) -> nn.Module:
    """Swap modules by qualified name; returns the same model."""
    for name, module in new.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, module)
    return model


def check_group_size(model: nn.Module, spec: QuantSpec) -> None:
    """Raise naming the first target whose ``in_features`` the group size does not divide."""
    for name, _, module in target_linears(model, spec):
        if module.in_features % spec.group_size:
            raise ValueError(
                f"group_size: {spec.group_size} does not divide in_features={module.in_features} of {name}"
            )


@torch.no_grad()
def quantize_model(
    model: nn.Module, spec: QuantSpec, qparams: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
) -> nn.Module:
    """Replace every target linear with a :class:`QuantLinear` (``s``, ``z`` from ``qparams`` or min/max)."""
    check_group_size(model, spec)
    new = {}
    for name, index, linear in target_linears(model, spec):
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"model: {name} is already quantized")
        s, z = (qparams or {}).get(name) or minmax_qparams(linear.weight, spec.bits, spec.group_size)
        new[name] = QuantLinear.from_linear(linear, spec.bits, spec.group_size, spec.gamma_mode, s, z,
                                            spec.has_gamma(index))
    return replace_modules(model, new)


def absorb_gamma(model: nn.Module) -> nn.Module:
    """Fold every ``γ`` into the codes/steps; every quantized layer becomes ``packed`` without ``γ``."""
    new = {n: absorb(m) for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    return replace_modules(model, new)


def set_trainable(model: nn.Module, groups: Iterable[str]) -> dict[str, int]:
    """Freeze everything except the named groups; returns the trainable element count per group."""
    groups = list(groups)
    unknown = [g for g in groups if g not in TRAINABLE_GROUPS]
    if unknown:
        raise ValueError(f"trainable: unknown group(s) {unknown}; choose from {sorted(TRAINABLE_GROUPS)}")
    counts = dict.fromkeys(groups, 0)
    for name, param in model.named_parameters():
        hits = [g for g in groups if TRAINABLE_GROUPS[g](name)]
        param.requires_grad_(bool(hits))
        for g in hits:
            counts[g] += param.numel()
    return counts


def gamma_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [m.gamma for m in model.modules() if isinstance(m, QuantLinear) and m.gamma is not None]


def gamma_deviation(model: nn.Module) -> dict[int, float]:
    """Root-mean-square of ``γ − 1`` per decoder block that has γ: how far training moved the scales from 1."""
    out = {}
    for index, (_, block) in enumerate(decoder_blocks(model)):
        gammas = [m.gamma.detach().float().flatten() for m in block.modules()
                  if isinstance(m, QuantLinear) and m.gamma is not None]
        if gammas:
            flat = torch.cat(gammas)
            out[index] = float(((flat - 1) ** 2).mean().sqrt())
    return out


def parameter_report(model: nn.Module, spec: QuantSpec, lora_rank: int = 128) -> dict[str, float]:
    """γ count vs a LoRA of ``lora_rank`` on the same target linears (the paper quotes 16.83 % at 13B, r=128)."""
    gamma = lora = 0
    for _, index, m in target_linears(model, spec):
        lora += lora_rank * (m.in_features + m.out_features)
        if spec.has_gamma(index):
            gamma += m.out_features * (m.in_features // spec.group_size)
    total = sum(p.numel() for n, p in model.named_parameters() if not n.endswith(".gamma")) + sum(
        m.in_features * m.out_features for _, _, m in target_linears(model, spec) if isinstance(m, QuantLinear)
    )
    return {"gamma_params": gamma, f"lora_r{lora_rank}_params": lora,
            "gamma_over_lora": gamma / lora if lora else 0.0, "model_params": total}
