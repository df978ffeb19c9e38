"""Benchmark: peak memory and median time of one training step, QSLAW vs QLoRA vs bf16 LoRA (a table, not a test).

How it works
------------
A random-initialised Llama (~1.1B parameters, TinyLlama's shape; ``--preset tiny`` for a smoke run) is built
layer by layer from the meta device (see :mod:`benchmarks.quant`), so no mode ever holds two copies of the
weights. Each method runs in its own subprocess:

==========================  =====================================================  =======================
method                      frozen decoder linears                                  trainable
==========================  =====================================================  =======================
``lora_fp`` (reference)     bf16 ``nn.Linear``                                      LoRA r=64 (fp32)
``qlora``                   bitsandbytes NF4 + double quant, bf16 compute           LoRA r=64 (fp32)
``qslaw_packed``            packed 4-bit codes (γ phase, memory-efficient mode)    γ per group (fp32)
``qslaw_requant``           bf16 W kept, fake-quantized each step (reference mode)  γ per group (fp32)
``qslaw_packed_lora``       packed 4-bit codes, γ absorbed (QSLAW's LoRA phase)     LoRA r=64 (fp32)
==========================  =====================================================  =======================

Embeddings, norms and ``lm_head`` are bf16 and frozen everywhere. After building, the process returns freed
heap to the OS, resets its peak-RSS counter and runs ``1 + --steps`` full training steps (bf16 forward and
backward, AdamW step over the trainables) at sequence length 512, batch 1, no gradient checkpointing, no
DeepSpeed (so only the model's own memory differs). Reported: the step's peak RSS (``VmHWM``), the RSS of the
built model before the first step, the median step time over the timed steps, and each as a ratio to
``lora_fp``. Run::

    python -m benchmarks.train_step                 # ~1.1B, seq 512: about 10-15 minutes on 2 cores
    python -m benchmarks.train_step --preset tiny   # seconds; checks the script itself
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from benchmarks.quant import CHILD_ENV, PRESETS, _reset_peak, _status_kb, build
from qslaw.model.surgery import replace_modules, target_linears
from qslaw.quant.spec import QuantSpec

METHODS = ("lora_fp", "qlora", "qslaw_packed", "qslaw_requant", "qslaw_packed_lora")
LORA_R = 64


def to_nf4(model: nn.Module, spec: QuantSpec) -> None:
    """Swap every bf16 decoder linear for a bitsandbytes NF4 ``Linear4bit`` (QLoRA's storage), one at a time."""
    import bitsandbytes as bnb

    for name, _, linear in target_linears(model, spec):
        new = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, compute_dtype=torch.bfloat16,
                                compress_statistics=True, quant_type="nf4", device="meta")
        new.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4",
                                       compress_statistics=True)
        replace_modules(model, {name: new.to("cpu")})


def prepare(preset: str, method: str) -> tuple[nn.Module, list[nn.Parameter]]:
    """The model of ``method`` with only its trainables requiring grad."""
    from peft import get_peft_model

    from qslaw.model.surgery import absorb_gamma

    mode = {"lora_fp": "bf16", "qlora": "bf16", "qslaw_requant": "requant"}.get(method, "packed")
    spec = QuantSpec(start_layer=-1, gamma_mode="packed" if mode == "bf16" else mode)
    model, _, _ = build(preset, mode, spec)
    if method == "qlora":
        to_nf4(model, spec)
    if method == "qslaw_packed_lora":
        model = absorb_gamma(model)
    for p in model.parameters():
        p.requires_grad_(False)
    if method in ("lora_fp", "qlora", "qslaw_packed_lora"):
        from qslaw.model.lora import lora_config

        model = get_peft_model(model, lora_config(model, spec, r=LORA_R, alpha=16, dropout=0.0))
        trainable = [p for n, p in model.named_parameters() if "lora_" in n]
    else:
        trainable = [m.gamma for m in model.modules() if getattr(m, "gamma", None) is not None]
    for p in trainable:
        p.data = p.data.float()
        p.requires_grad_(True)
    model.train()
    return model, trainable


def run_method(preset: str, method: str, steps: int) -> dict:
    torch.manual_seed(0)
    model, trainable = prepare(preset, method)
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(0, PRESETS[preset]["vocab_size"], (1, PRESETS[preset]["seq"]))
    _reset_peak()
    before = _status_kb("VmRSS")
    times = []
    for _ in range(1 + steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return {"method": method, "median_step_s": statistics.median(times[1:]), "first_step_s": times[0],
            "peak_rss_gib": _status_kb("VmHWM") / 2**20, "model_rss_gib": before / 2**20,
            "trainable_params": sum(p.numel() for p in trainable), "loss": float(loss)}


def format_table(rows: list[dict], preset: str, steps: int) -> str:
    ref = next(r for r in rows if r["method"] == "lora_fp")
    by = {r["method"]: r for r in rows}
    lines = [f"Llama preset {preset} (seq {PRESETS[preset]['seq']}, batch 1), one training step = bf16 forward + "
             f"backward + AdamW; median of {steps} steps after one warm-up; peak RSS of the steps",
             "| method | trainable params | model RSS GiB | peak RSS GiB | memory vs lora_fp | median step s "
             "| time vs lora_fp |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['trainable_params']:,} | {r['model_rss_gib']:.2f} "
                     f"| {r['peak_rss_gib']:.2f} | {r['peak_rss_gib'] / ref['peak_rss_gib']:.2f}x "
                     f"| {r['median_step_s']:.2f} "
                     f"| {r['median_step_s'] / ref['median_step_s']:.2f}x |")
    if "qslaw_packed" in by and "qlora" in by:
        p, q = by["qslaw_packed"]["peak_rss_gib"], by["qlora"]["peak_rss_gib"]
        lines.append(f"\nGoals: qslaw_packed ≤ 0.40x lora_fp memory → {p / ref['peak_rss_gib']:.2f}x; "
                     f"≤ 1.0x qlora memory → {p / q:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="1b")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--method", choices=METHODS, help="run one method in this process and print JSON")
    args = parser.parse_args(argv)
    if args.method:
        print(json.dumps(run_method(args.preset, args.method, args.steps)))
        return
    rows = []
    for method in METHODS:
        out = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--preset", args.preset,
                              "--steps", str(args.steps), "--method", method],
                             check=True, capture_output=True, text=True, env=CHILD_ENV).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(format_table(rows, args.preset, args.steps))


if __name__ == "__main__":
    main()
