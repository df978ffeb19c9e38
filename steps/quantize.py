"""Stage `quantize`: the base in the weight format of ``train.method`` — qslaw W4, bitsandbytes NF4 or fp.

Run alone::

    python -m steps.quantize artifacts/base artifacts/prepare artifacts/quantize

qslaw-format methods (``qslaw``, ``qslaw_no_warmup``, ``lwc_lora``, ``rtn_lora``) calibrate a step and zero
per group (rtn or lwc; the ``*_lora`` baselines force theirs) on sequences that are half task multimodal
conversations, half text chunks, and add γ = 1 where the method learns it. With ``gamma_mode: packed`` the
checkpoint is streamed (:mod:`qslaw.model.stream`): shards read tensor by tensor, one decoder block in full
precision at a time, so the full-precision model is never held; ``requant`` keeps every ``W`` and
quantizes in memory. ``qlora`` stores the base
quantized by bitsandbytes (NF4, double quantization; vision tower, projector and lm_head kept out by module
name); ``lora_fp`` and ``full_ft`` store the fp base unchanged. Writes ``model/`` (loadable with
``qslaw.model.io.load_model``, with the processor files), ``report.json`` and, for calibrated methods,
``errors.csv`` (per block: output MSE of rtn and of the chosen method on the calibration activations).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir
from steps.common import main_guard, section
from steps.tracking import log_artifact, log_metrics, numeric, stage_run


def calibration_batches(params: Params, base_dir: Path, prepare_dir: Path, processor: object, config: object,
                        batch_size: int = 4) -> list[dict]:
    from qslaw.data.prepare import read_rows
    from qslaw.train.data import conversations, text_chunks
    from qslaw.train.encode import collate

    q = params.quantize
    n_mm = q.calib_samples // 2
    mm = conversations(read_rows(prepare_dir / "task_train.parquet"), processor, config, max_length=1024,
                       limit=n_mm, images_only=True)
    lines = [r["text"] for r in read_rows(prepare_dir / "text_train.parquet")]
    text = text_chunks(lines, processor.tokenizer, q.calib_length, limit=q.calib_samples - n_mm)
    pad = processor.tokenizer.pad_token_id
    batches = []
    for group in (mm, text):
        for i in range(0, len(group), batch_size):
            batch = collate(group[i:i + batch_size], pad)
            batch.pop("labels")
            batches.append(batch)
    return batches


def method_quant_spec(params: Params) -> object:
    """params ``quantize`` as a QuantSpec, with γ only where the method learns it."""
    return dataclasses.replace(params.quantize.quant_spec(), gamma=params.train.method_spec().gamma)


def bnb_config(params: Params) -> object:
    """The QLoRA recipe: NF4, double quantization, bf16 compute where the device supports it (else fp32);
    the vision tower, projector and lm_head stay full precision (full module names, never a substring)."""
    import torch
    from transformers import BitsAndBytesConfig

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float32,
                              llm_int8_skip_modules=["model.vision_tower", "model.multi_modal_projector", "lm_head"])


def model_bytes(model: object) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def run(params: Params, base_dir: Path, prepare_dir: Path, out_dir: Path) -> dict:
    import torch
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration

    from qslaw.model.calibrate import calibrate
    from qslaw.model.io import save_model_dir
    from qslaw.model.stream import streamed_quantize
    from qslaw.model.surgery import parameter_report, quantize_model

    torch.manual_seed(params.train.seed)
    method = params.train.method_spec()
    processor = AutoProcessor.from_pretrained(base_dir)
    spec = method_quant_spec(params)
    errors: list[dict] = []
    report: dict = {"method": method.name, "weights": method.weights}
    if method.weights == "qslaw":
        calib = dataclasses.replace(params.quantize.calib_spec(),
                                    method=method.calibration_for(params.quantize.method))
        batches = calibration_batches(params, base_dir, prepare_dir, processor, AutoConfig.from_pretrained(base_dir))
        if spec.gamma_mode == "packed":  # shard by shard, one block in full precision at a time
            model, errors = streamed_quantize(base_dir, spec, calib, batches)
        else:  # requant keeps every W: the model is held in memory anyway
            model = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32).eval()
            qparams, errors = calibrate(model, batches, spec, calib)
            quantize_model(model, spec, qparams)
        report.update(calibration=calib.method, streamed=spec.gamma_mode == "packed",
                      **parameter_report(model, spec), **summarize(errors, calib.method))
    elif method.weights == "bnb_nf4":
        model = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32,
                                                              quantization_config=bnb_config(params)).eval()
    else:
        model = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32).eval()
    with atomic_dir(out_dir) as tmp:
        (tmp / "model").mkdir()
        save_model_dir(model, spec, tmp / "model")
        processor.save_pretrained(tmp / "model")
        if errors:
            write_errors(errors, tmp / "errors.csv")
        report["model_mib"] = model_bytes(model) / 2**20
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return report


def write_errors(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def summarize(rows: list[dict], method: str) -> dict:
    rtn = sum(r["rtn_mse"] for r in rows) / len(rows)
    chosen = sum(r[f"{method}_mse"] for r in rows) / len(rows)
    return {"rtn_block_mse": rtn, f"{method}_block_mse": chosen, "block_mse_ratio": chosen / rtn if rtn else 1.0}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Quantize the base model's decoder linears.")
    parser.add_argument("base_dir", type=Path)
    parser.add_argument("prepare_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("quantize", section(params, "quantize", "train")):
            report = run(params, args.base_dir, args.prepare_dir, args.out_dir)
            log_metrics(numeric(report))
            for name in ("errors.csv", "report.json"):
                if (args.out_dir / name).exists():
                    log_artifact(args.out_dir / name)

    main_guard("quantize", body)


if __name__ == "__main__":
    main()
