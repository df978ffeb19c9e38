"""Stage `quantize`: calibrate a step and zero per group (rtn or lwc) and write the quantized base.

Run alone::

    python -m steps.quantize artifacts/base artifacts/prepare artifacts/quantize

Calibration sequences are half task multimodal conversations, half text chunks (params ``quantize``).
Writes ``model/`` (safetensors codes, s, z, γ=1 + quant_config.json + processor files, loadable with
``qslaw.model.io.load_quantized``), ``errors.csv`` (per block: output MSE of rtn and of the chosen method
on the calibration activations) and ``report.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir
from steps.common import main_guard, section
from steps.tracking import log_artifact, log_metrics, stage_run


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


def run(params: Params, base_dir: Path, prepare_dir: Path, out_dir: Path) -> dict:
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from qslaw.model.io import write_quantized
    from qslaw.model.surgery import parameter_report, quantize_model
    from qslaw.quant.calibrate import calibrate

    torch.manual_seed(params.train.seed)
    model = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(base_dir)
    spec = params.quantize.quant_spec()
    batches = calibration_batches(params, base_dir, prepare_dir, processor, model.config)
    qparams, errors = calibrate(model, batches, spec, params.quantize.calib_spec())
    quantize_model(model, spec, qparams)
    with atomic_dir(out_dir) as tmp:
        (tmp / "model").mkdir()
        write_quantized(model, spec, tmp / "model")
        processor.save_pretrained(tmp / "model")
        write_errors(errors, tmp / "errors.csv")
        report = {**parameter_report(model, spec), **summarize(errors, params.quantize.method)}
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
            log_metrics(run(params, args.base_dir, args.prepare_dir, args.out_dir))
            log_artifact(args.out_dir / "errors.csv")
            log_artifact(args.out_dir / "report.json")

    main_guard("quantize", body)


if __name__ == "__main__":
    main()
