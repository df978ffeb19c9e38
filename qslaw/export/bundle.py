"""The adapted-model bundle: absorbed low-bit model + LoRA adapter + processor, and its one load function.

How it works
------------
A bundle directory (the ``hybrid`` stage's output, and the ``export`` stage's)::

    model/                  save_quantized output (config.json, model.safetensors with packed codes,
                            s, z, projector and every unquantized weight; quant_config.json) + the
                            tokenizer/processor files (AutoProcessor.from_pretrained works on it)
    adapter/                peft LoRA adapter (adapter_config.json, adapter_model.safetensors)
    projector.safetensors   the projector alone (also inside model/)
    gamma.safetensors       the learned γ before absorption (for analysis; not needed to run)

:func:`load_bundle` is the documented way to run an exported model::

    from qslaw.export.bundle import load_bundle
    model, processor = load_bundle("artifacts/export")

It rebuilds the quantized model from safetensors (no pickle), attaches the adapter through peft with the
quantized-linear mapping registered, and returns the model in eval mode, ready for ``generate``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn


def load_bundle(bundle_dir: str | Path) -> tuple[nn.Module, object]:
    """``(model, processor)`` of a bundle; the model is a peft model over the quantized base, in eval mode."""
    from transformers import AutoProcessor

    from qslaw.model.io import load_quantized
    from qslaw.model.lora import load_adapter

    bundle_dir = Path(bundle_dir)
    for needed in ("model/quant_config.json", "adapter/adapter_config.json"):
        if not (bundle_dir / needed).exists():
            raise FileNotFoundError(f"{bundle_dir}: not a qslaw bundle ({needed} missing)")
    model, _ = load_quantized(bundle_dir / "model")
    model = load_adapter(model, bundle_dir / "adapter")
    return model.eval(), AutoProcessor.from_pretrained(bundle_dir / "model")
