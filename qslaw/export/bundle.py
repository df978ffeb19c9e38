"""The adapted-model bundle: absorbed low-bit model + LoRA adapter + processor, and its one load function.

How it works
------------
A bundle directory (the ``hybrid`` stage's output, and the ``export`` stage's)::

    model/                  the tuned base in its method's format — save_quantized output (config.json,
                            model.safetensors with packed codes, s, z, projector and every unquantized
                            weight; quant_config.json), a bitsandbytes NF4 checkpoint (qlora) or an fp
                            one (lora_fp, full_ft) — + the tokenizer/processor files
    adapter/                peft LoRA adapter (adapter_config.json, adapter_model.safetensors);
                            absent for full fine-tuning
    projector.safetensors   the projector alone (also inside model/)
    gamma.safetensors       the learned γ before absorption (γ methods only; for analysis)

:func:`load_bundle` is the documented way to run an exported model::

    from qslaw.export.bundle import load_bundle
    model, processor = load_bundle("artifacts/export")

It rebuilds the model from safetensors (no pickle) through :func:`qslaw.model.io.load_model`, attaches the
adapter (when there is one) through peft with the quantized-linear mapping registered, and returns the
model in eval mode, ready for ``generate``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn


def load_bundle(bundle_dir: str | Path) -> tuple[nn.Module, object]:
    """``(model, processor)`` of a bundle: a peft model over the tuned base (or the fully tuned model), in eval mode."""
    from transformers import AutoProcessor

    from qslaw.model.io import load_model
    from qslaw.model.lora import load_adapter

    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / "model" / "config.json").exists():
        raise FileNotFoundError(f"{bundle_dir}: not a qslaw bundle (model/config.json missing)")
    model = load_model(bundle_dir / "model")
    if (bundle_dir / "adapter").exists():
        if not (bundle_dir / "adapter" / "adapter_config.json").exists():
            raise FileNotFoundError(f"{bundle_dir}: adapter/adapter_config.json missing")
        model = load_adapter(model, bundle_dir / "adapter")
    return model.eval(), AutoProcessor.from_pretrained(bundle_dir / "model")
