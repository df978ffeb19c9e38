"""Save and load quantized transformers models as safetensors + a JSON quantization config.

How it works
------------
A quantized model directory holds::

    config.json            the HF model config (save_pretrained)
    model.safetensors      every tensor of the state dict: packed codes (uint8), s, z, γ where present,
                           the fp weights of ``requant`` layers, and all unquantized weights
    quant_config.json      format tag, the transformers class name, the QuantSpec, and per quantized layer:
                           mode, bits, group size,
                           shapes, bias, whether it carries γ, storage dtype

Loading rebuilds the HF model from ``config.json``, swaps in empty :class:`QuantLinear` shells described by
``quant_config.json`` and loads the safetensors strictly (tied weights such as a shared ``lm_head`` are
re-tied), so codes come back bit-identical and logits identical. No pickle is involved anywhere.
Files are written into a temporary sibling directory and renamed when complete.

Every method's model directory loads through one function, :func:`load_model`: a qslaw quantized directory
(``quant_config.json``), a bitsandbytes-quantized one (``quantization_config`` in ``config.json``, rebuilt by
transformers' own loader), or a plain full-precision checkpoint; :func:`save_model_dir` writes whichever
the model is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_model
from torch import nn

from qslaw.fsutil import atomic_dir
from qslaw.model.surgery import replace_modules
from qslaw.quant.linear import QuantLinear
from qslaw.quant.spec import QuantSpec

FORMAT = "qslaw-quantized-v1"
_DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16)}


def _layer_entry(m: QuantLinear) -> dict:
    return {"mode": m.mode, "bits": m.bits, "group_size": m.group_size, "in_features": m.in_features,
            "out_features": m.out_features, "bias": m.bias is not None, "gamma": m.gamma is not None,
            "dtype": str(m.compute_dtype)}


def quant_config(model: nn.Module, spec: QuantSpec) -> dict:
    layers = {n: _layer_entry(m) for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    return {"format": FORMAT, "architecture": type(model).__name__, "spec": spec.to_dict(), "layers": layers}


def save_quantized(model: nn.Module, spec: QuantSpec, out_dir: str | Path) -> Path:
    """Write config.json, model.safetensors and quant_config.json into ``out_dir`` atomically."""
    with atomic_dir(out_dir) as tmp:
        write_quantized(model, spec, tmp)
    return Path(out_dir)


def write_quantized(model: nn.Module, spec: QuantSpec, directory: Path) -> None:
    """Write the three files into an existing directory (the caller owns atomicity)."""
    model.config.save_pretrained(directory)
    save_model(model, str(directory / "model.safetensors"))
    (directory / "quant_config.json").write_text(json.dumps(quant_config(model, spec), indent=2))


def read_quant_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "quant_config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a qslaw quantized model directory (quant_config.json missing)")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path}: format must be {FORMAT!r}, got {config.get('format')!r}")
    return config


def _shell(entry: dict) -> QuantLinear:
    return QuantLinear(entry["in_features"], entry["out_features"], entry["bits"], entry["group_size"],
                       entry["mode"], entry["gamma"], entry["bias"], dtype=_DTYPES[entry["dtype"]])


def load_quantized(model_dir: str | Path) -> tuple[nn.Module, QuantSpec]:
    """Rebuild a model saved by :func:`save_quantized`; returns ``(model, spec)`` in eval mode."""
    model_dir = Path(model_dir)
    qconfig = read_quant_config(model_dir)
    config = transformers.AutoConfig.from_pretrained(model_dir)
    cls = getattr(transformers, qconfig["architecture"])
    model = cls._from_config(config)
    replace_modules(model, {n: _shell(e) for n, e in qconfig["layers"].items()})
    state = load_file(str(model_dir / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"{model_dir}/model.safetensors: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    model.tie_weights()
    return model.eval(), QuantSpec.from_dict(qconfig["spec"])


def is_qslaw_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantLinear) for m in model.modules())


def save_model_dir(model: nn.Module, spec: QuantSpec, directory: Path) -> None:
    """Write a model of any method into an existing directory: qslaw format if it holds QuantLinears,
    else transformers' ``save_pretrained`` (safetensors; bitsandbytes 4-bit weights serialise as such)."""
    if is_qslaw_quantized(model):
        write_quantized(model, spec, directory)
    else:
        # A bitsandbytes model loaded from a 4-bit checkpoint carries a load-time conversion with no reverse
        # (transformers 5 raises NotImplementedError); its tensors are already in the saved layout, so keep them.
        model.save_pretrained(directory, save_original_format=not getattr(model, "is_quantized", False))


def load_model(model_dir: str | Path) -> nn.Module:
    """Load any model directory a stage writes (qslaw quantized, bitsandbytes 4-bit or fp), in eval mode."""
    model_dir = Path(model_dir)
    if (model_dir / "quant_config.json").exists():
        return load_quantized(model_dir)[0]
    config = transformers.AutoConfig.from_pretrained(model_dir)
    architectures = getattr(config, "architectures", None) or []
    if not architectures or not hasattr(transformers, architectures[0]):
        raise ValueError(f"{model_dir}/config.json: unknown architecture {architectures!r}")
    cls = getattr(transformers, architectures[0])
    return cls.from_pretrained(model_dir, dtype=torch.float32).eval()
