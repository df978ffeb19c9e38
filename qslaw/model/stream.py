"""Quantize a llava-hf checkpoint without ever holding its full-precision model: shards read tensor by tensor.

How it works
------------
The model is built from ``config.json`` with empty (meta) parameters; buffers such as rotary frequencies
are real. Tensors are then read one at a time from the safetensors shards (``safe_open``, memory-mapped;
``model.safetensors.index.json`` names each tensor's shard):

1. everything outside the decoder blocks — embeddings, final norm, ``lm_head``, vision tower, projector —
   is loaded in its stored dtype onto ``device``; this is what the calibration inputs need and what stays
   unquantized;
2. the calibration batches run up to the first decoder block (:func:`~qslaw.model.calibrate.
   capture_block_inputs`), giving the block-0 inputs;
3. block by block, as OmniQuant calibrates a 70B model on one GPU: the block's weights are read in float32
   (``calib_dtype``) onto ``device``, its ``(s, z)`` are calibrated (``rtn`` or ``lwc``, the same
   :func:`~qslaw.model.calibrate.calibrate_block` as the in-memory path), its target linears become packed
   :class:`~qslaw.quant.linear.QuantLinear` layers whose ``s``, ``z`` keep the stored dtype, its other
   weights (norms) go back to the stored dtype, and the full-precision and quantized outputs become the next
   block's two input streams. Only one block is ever in full precision.

Memory: the unquantized parts, one block in ``calib_dtype``, the calibration activations and the packed
blocks done so far. On a float32 checkpoint on CPU (the embedded default) the result equals the in-memory
path (:func:`~qslaw.model.calibrate.calibrate` + :func:`~qslaw.model.surgery.quantize_model`) bit for bit,
``lwc`` included, since every block sees the same inputs and the same arithmetic.

Checkpoint names: transformers 5 saves LLaVA as ``model.language_model.*``, ``model.vision_tower.*``,
``model.multi_modal_projector.*``, ``lm_head.*``; the hub's llava-hf checkpoints (llava-1.5-7b-hf) use the
older ``language_model.model.*`` layout, mapped here as transformers maps it. An unknown or missing tensor
raises ``ValueError`` naming it.
"""

from __future__ import annotations

import ctypes
import gc
import json
import re
from collections.abc import Iterable
from pathlib import Path

import torch
import transformers
from accelerate import init_empty_weights
from accelerate.utils import set_module_tensor_to_device
from safetensors import safe_open
from torch import nn
from tqdm.auto import tqdm

from qslaw.model.calibrate import calibrate_block, capture_block_inputs, with_hidden
from qslaw.model.surgery import check_group_size, decoder_blocks, replace_modules, target_linears
from qslaw.quant.linear import QuantLinear
from qslaw.quant.spec import CalibSpec, QuantSpec

SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
OLD_LAYOUT = ((r"^language_model\.model\.", "model.language_model."),
              (r"^language_model\.lm_head\.", "lm_head."),
              (r"^vision_tower\.", "model.vision_tower."),
              (r"^multi_modal_projector\.", "model.multi_modal_projector."))


class ShardReader:
    """Tensor-by-tensor access to a checkpoint's safetensors shards, by the model's parameter names."""

    def __init__(self, model_dir: str | Path, names: Iterable[str]) -> None:
        model_dir = Path(model_dir)
        index = model_dir / "model.safetensors.index.json"
        if index.exists():
            shard_of = json.loads(index.read_text())["weight_map"]
        elif (model_dir / "model.safetensors").exists():
            with safe_open(model_dir / "model.safetensors", "pt") as f:
                shard_of = dict.fromkeys(f.keys(), "model.safetensors")
        else:
            raise FileNotFoundError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")
        known = set(names)
        self.where: dict[str, tuple[str, str]] = {}
        for key, shard in shard_of.items():
            name = key if key in known else rename_old_layout(key)
            if name not in known:
                raise ValueError(f"{model_dir}: checkpoint tensor {key!r} matches no parameter of the model")
            self.where[name] = (str(model_dir / shard), key)

    def _where(self, name: str) -> tuple[str, str]:
        if name not in self.where:
            raise ValueError(f"checkpoint: no tensor for {name!r}")
        return self.where[name]

    def get(self, name: str) -> torch.Tensor:
        """The stored tensor (stored dtype, on CPU) for model parameter ``name``. The shard is opened for this
        one read: a memory map kept open would count every page read so far in the process's RSS."""
        path, key = self._where(name)
        with safe_open(path, "pt") as f:
            return f.get_tensor(key).clone()

    def dtypes(self) -> dict[str, torch.dtype]:
        """The stored dtype of every tensor, read from the shard headers (no data loaded)."""
        out = {}
        for path in sorted({p for p, _ in self.where.values()}):
            with safe_open(path, "pt") as f:
                names = {k: n for n, (p, k) in self.where.items() if p == path}
                out.update({names[k]: SAFETENSORS_DTYPES[f.get_slice(k).get_dtype()] for k in names})
        return out


def release_memory() -> None:
    """Free the block just replaced: collect its reference cycles, then hand freed heap pages back to the OS
    (glibc keeps them otherwise, once its adaptive mmap threshold has grown past a weight's size)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def rename_old_layout(key: str) -> str:
    for pattern, new in OLD_LAYOUT:
        if re.match(pattern, key):
            return re.sub(pattern, new, key, count=1)
    return key


def empty_model(model_dir: str | Path) -> nn.Module:
    """The checkpoint's architecture with meta parameters (real buffers), in eval mode."""
    config = transformers.AutoConfig.from_pretrained(model_dir)
    architectures = getattr(config, "architectures", None) or []
    if not architectures or not hasattr(transformers, architectures[0]):
        raise ValueError(f"{model_dir}/config.json: unknown architecture {architectures!r}")
    with init_empty_weights():
        model = getattr(transformers, architectures[0])._from_config(config)
    return model.eval()


def load_tensors(model: nn.Module, reader: ShardReader, names: Iterable[str], device: torch.device | str,
                 dtype: torch.dtype | None = None) -> None:
    """Materialise parameters ``names`` from the checkpoint (stored dtype unless ``dtype``) on ``device``."""
    for name in names:
        value = reader.get(name)
        set_module_tensor_to_device(model, name, device, value=value, dtype=dtype or value.dtype)


def quantize_block(block: nn.Module, prefix: str, qparams: dict, spec: QuantSpec, index: int,
                   stored: dict[str, torch.dtype]) -> None:
    """Swap the block's target linears for packed QuantLinears (``s``, ``z`` in the stored dtype) and return
    its other parameters to their stored dtype."""
    new = {}
    for name, (s, z) in qparams.items():
        linear = block.get_submodule(name[len(prefix) + 1:])
        layer = QuantLinear.from_linear(linear, spec.bits, spec.group_size, "packed", s, z, spec.has_gamma(index))
        dtype = stored[f"{name}.weight"]
        layer.scales, layer.zeros = layer.scales.to(dtype), layer.zeros.to(dtype)
        layer.compute_dtype = dtype
        if layer.bias is not None:
            layer.bias = layer.bias.to(dtype)
        new[name[len(prefix) + 1:]] = layer
    replace_modules(block, new)
    for name, param in block.named_parameters():
        key = f"{prefix}.{name}"
        if key in stored and param.dtype != stored[key]:
            param.data = param.data.to(stored[key])


def streamed_quantize(model_dir: str | Path, spec: QuantSpec, calib: CalibSpec, batches: Iterable[dict],
                      device: torch.device | str = "cpu", calib_dtype: torch.dtype = torch.float32,
                      progress: bool = True) -> tuple[nn.Module, list[dict]]:
    """The checkpoint with every target linear packed to ``spec``, and the per-block error report."""
    if spec.gamma_mode != "packed":
        raise ValueError("gamma_mode: a streamed quantize writes packed codes; 'requant' keeps W (in memory)")
    model = empty_model(model_dir)
    check_group_size(model, spec)
    names = [n for n, _ in model.named_parameters()]
    reader = ShardReader(model_dir, names)
    stored = reader.dtypes()
    blocks = decoder_blocks(model)
    in_blocks = tuple(f"{prefix}." for prefix, _ in blocks)
    load_tensors(model, reader, [n for n in names if not n.startswith(in_blocks) and n in reader.where], device)
    model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta and not n.startswith(in_blocks)]
    if missing:
        raise ValueError(f"{model_dir}: the checkpoint has no tensor for {missing[:5]}")
    model.requires_grad_(False)
    targets = [(n, i) for n, i, _ in target_linears(model, spec)]  # names only: a module kept here stays alive
    x_fp = capture_block_inputs(model, batches)
    x_fp = [((args[0].to(calib_dtype), *args[1:]), kwargs) for args, kwargs in x_fp]
    x_q, report = x_fp, []
    for index, (prefix, block) in enumerate(tqdm(blocks, desc=f"stream-quantize ({calib.method})",
                                                 disable=not progress)):
        load_tensors(model, reader, [n for n in names if n.startswith(f"{prefix}.")], device, calib_dtype)
        block.requires_grad_(False)
        wanted = [n for n, i in targets if i == index]
        qparams, row, target, q_out = calibrate_block(block, index, prefix, wanted, x_fp, x_q, spec, calib)
        quantize_block(block, prefix, qparams, spec, index, stored)
        release_memory()
        report.append(row)
        x_fp, x_q = with_hidden(x_fp, target), with_hidden(x_q, q_out)
    return model, report
