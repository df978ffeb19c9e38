"""Benchmark: quantize+pack time, packed bits per parameter, and peak memory of one forward+backward.

How it works
------------
A random-initialised Llama (~1.1B parameters, TinyLlama's shape, by default) is built on the meta device;
its decoder linears are then materialised one at a time straight into the layer under test — a packed
``QuantLinear``, a requant ``QuantLinear`` or a plain bf16 ``nn.Linear`` — so building never holds two
copies of the weights. Each mode runs in its own subprocess; after building, the process returns freed
heap to the OS (``malloc_trim``), resets its peak-RSS counter (``/proc/self/clear_refs``) and runs one
forward+backward at sequence length 512, batch 1, in bf16: γ gets gradients in the quantized modes, and the
input embeddings require grad in every mode so the backward traverses the whole model. ``VmHWM`` is then
the step's peak resident memory. Prints a table; not a test. Run::

    python -m benchmarks.quant                 # ~1.1B, seq 512 (several minutes on 2 cores)
    python -m benchmarks.quant --preset tiny   # seconds; smoke check of the script itself
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from qslaw.model.surgery import replace_modules, target_linears
from qslaw.quant.functional import minmax_qparams
from qslaw.quant.linear import QuantLinear
from qslaw.quant.spec import QuantSpec

PRESETS = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000, seq=512),
    "tiny": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=1000, seq=64),
}
MODES = ("bf16", "requant", "packed")
# A fixed mmap threshold returns every large freed block to the OS at once, so the per-layer temporaries of
# building do not linger as heap fragmentation and inflate the step's resident-memory figure.
CHILD_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def _reset_peak() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build(preset: str, mode: str, spec: QuantSpec) -> tuple[LlamaForCausalLM, float, dict]:
    """Materialise the model layer by layer; returns it, the quantize+pack seconds and storage stats."""
    shape = {k: v for k, v in PRESETS[preset].items() if k != "seq"}
    config = LlamaConfig(**shape, attn_implementation="sdpa", tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    seconds, bits, weights = 0.0, 0, 0
    for name, index, meta in target_linears(model, spec):
        w = torch.randn(meta.out_features, meta.in_features, dtype=torch.bfloat16) * 0.02
        if mode == "bf16":
            new = nn.Linear(meta.in_features, meta.out_features, bias=False, dtype=torch.bfloat16)
            new.weight = nn.Parameter(w, requires_grad=False)
        else:
            t0 = time.perf_counter()
            s, z = minmax_qparams(w, spec.bits, spec.group_size)
            lin = nn.Linear(meta.in_features, meta.out_features, bias=False, device="meta")
            lin.weight = nn.Parameter(w, requires_grad=False)
            new = QuantLinear.from_linear(lin, spec.bits, spec.group_size, mode, s, z, spec.has_gamma(index))
            seconds += time.perf_counter() - t0
            stored = [new.scales, new.zeros] + ([new.qweight] if mode == "packed" else [])
            bits += sum(t.numel() * t.element_size() * 8 for t in stored)
        weights += w.numel()
        replace_modules(model, {name: new})
    _materialise_rest(model, config)
    return model, seconds, {"bits_per_param": bits / weights if mode == "packed" else None, "linear_params": weights}


def _materialise_rest(model: LlamaForCausalLM, config: LlamaConfig) -> None:
    for name, p in list(model.named_parameters()):
        if p.is_meta:
            data = torch.ones(p.shape, dtype=torch.bfloat16) if "norm" in name else torch.randn(p.shape) * 0.02
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Parameter(data.to(torch.bfloat16), requires_grad=False))
    model.model.rotary_emb = LlamaRotaryEmbedding(config)


def run_mode(preset: str, mode: str) -> dict:
    torch.manual_seed(0)
    spec = QuantSpec(start_layer=-1, gamma_mode="packed" if mode == "bf16" else mode)
    model, quant_s, stats = build(preset, mode, spec)
    ids = torch.randint(0, model.config.vocab_size, (1, PRESETS[preset]["seq"]))
    _reset_peak()
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    loss = model(inputs_embeds=embeds, labels=ids).loss
    loss.backward()
    step_s = time.perf_counter() - t0
    return {"mode": mode, "quantize_pack_s": quant_s, "step_s": step_s, "peak_rss_gib": _status_kb("VmHWM") / 2**20,
            "step_rss_gib": (_status_kb("VmHWM") - before) / 2**20, "model_rss_gib": before / 2**20,
            "params_total": stats["linear_params"], **stats}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="1b")
    parser.add_argument("--mode", choices=MODES, help="run one mode in this process and print JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.mode:
        print(json.dumps(run_mode(args.preset, args.mode)))
        return
    rows = []
    for mode in MODES:
        out = subprocess.run([sys.executable, "-m", "benchmarks.quant", "--preset", args.preset, "--mode", mode],
                             check=True, capture_output=True, text=True, env=CHILD_ENV).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(format_table(rows, args.preset))


def format_table(rows: list[dict], preset: str) -> str:
    base = next(r for r in rows if r["mode"] == "bf16")["peak_rss_gib"]
    lines = [f"Llama preset {preset}: {rows[0]['params_total'] / 1e9:.3f}B decoder-linear params, "
             f"seq {PRESETS[preset]['seq']}, batch 1",
             "| mode | quantize+pack s | bits/param (linears) | fwd+bwd s | RSS before step GiB | peak RSS GiB "
             "| peak vs bf16 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        bpp = f"{r['bits_per_param']:.3f}" if r["bits_per_param"] else "16 (bf16 weight kept)"
        lines.append(f"| {r['mode']} | {r['quantize_pack_s']:.1f} | {bpp} | {r['step_s']:.1f} | "
                     f"{r['model_rss_gib']:.2f} | {r['peak_rss_gib']:.2f} | {r['peak_rss_gib'] / base:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
