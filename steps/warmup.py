"""Stage `warmup`: the multimodal warmup — projector + γ on image-caption and task image samples (DeepSpeed).

Run alone::

    python -m steps.warmup artifacts/quantize artifacts/prepare infra/deepspeed/zero2.json artifacts/warmup

Everything but γ (learnable group scales, init 1) and the projector stays frozen; the quantized weights'
codes, steps and zeros never change. Writes ``trainables.safetensors`` (γ + projector), ``history.csv``
(loss, learning rate per step), ``loss.png`` and ``report.json``.

Methods without a warmup (every one but ``qslaw``; see :mod:`qslaw.train.methods`) train nothing here: the
stage writes ``report.json`` with ``skipped: true``, an empty ``history.csv`` and a ``loss.png`` saying so,
and no ``trainables.safetensors`` (the hybrid stage then starts from the quantize stage's model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir
from steps.common import checkpoint_spec, main_guard, section
from steps.tracking import log_artifact, log_curve, log_metrics, numeric, stage_run

GROUPS = ["gamma", "projector"]


def warmup_samples(params: Params, prepare_dir: Path, processor: object, config: object) -> list[dict]:
    from qslaw.data.prepare import read_rows
    from qslaw.train.data import conversations

    w = params.warmup
    captions = conversations(read_rows(prepare_dir / "captions.parquet"), processor, config, w.max_length,
                             limit=w.caption_samples)
    task = conversations(read_rows(prepare_dir / "task_train.parquet"), processor, config, w.max_length,
                         limit=w.task_image_samples, images_only=True)
    return captions + task


def skip(params: Params, out_dir: Path) -> dict:
    """The outputs of a method without warmup: nothing trained, said plainly."""
    from qslaw.train.state import plot_history, write_history

    with atomic_dir(out_dir) as tmp:
        write_history([], tmp / "history.csv")
        plot_history([], tmp / "loss.png", f"warmup (skipped: method {params.train.method})")
        report = {"method": params.train.method, "skipped": True, "samples": 0, "steps": 0}
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return {"history": [], **report}


def run(params: Params, quantize_dir: Path, prepare_dir: Path, ds_config: Path, out_dir: Path) -> dict:
    import torch
    from transformers import AutoProcessor

    from qslaw.model.io import load_quantized
    from qslaw.model.surgery import set_trainable
    from qslaw.train.checkpoint import clear_checkpoints
    from qslaw.train.encode import collate
    from qslaw.train.loop import LoopSpec, is_main_process, train
    from qslaw.train.state import plot_history, save_state, trainable_state, write_history

    if not params.train.method_spec().warmup:
        return skip(params, out_dir)
    torch.manual_seed(params.train.seed)
    model, _ = load_quantized(quantize_dir / "model")
    processor = AutoProcessor.from_pretrained(quantize_dir / "model")
    counts = set_trainable(model, GROUPS)
    samples = warmup_samples(params, prepare_dir, processor, model.config)
    spec = LoopSpec(epochs=params.warmup.epochs, batch_size=params.warmup.batch_size, seed=params.train.seed,
                    precision=params.train.precision, zero_stage=params.train.zero_stage, desc="warmup")
    trainable = [p for p in model.parameters() if p.requires_grad]
    pad = processor.tokenizer.pad_token_id
    ckpt = checkpoint_spec(params, "warmup", "train", quantize_dir, prepare_dir)
    history = train(model, samples, lambda b: collate(b, pad), [{"params": trainable, "lr": params.warmup.lr}],
                    spec, ds_config, checkpoint=ckpt)
    if not is_main_process():  # other ranks trained their share; rank 0 writes the outputs
        return {"history": history, "method": params.train.method, "skipped": False}
    with atomic_dir(out_dir) as tmp:
        save_state(trainable_state(model, GROUPS), tmp / "trainables.safetensors")
        write_history(history, tmp / "history.csv")
        plot_history(history, tmp / "loss.png", "warmup")
        report = {"method": params.train.method, "skipped": False, "samples": len(samples), "steps": len(history),
                  "final_loss": history[-1]["loss"],
                  **{f"trainable_{g}": n for g, n in counts.items()}}
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    if ckpt:
        clear_checkpoints(ckpt.directory)
    return {"history": history, **report}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Multimodal warmup of γ and the projector.")
    for name in ("quantize_dir", "prepare_dir", "ds_config", "out_dir"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("warmup", section(params, "warmup", "train")):
            result = run(params, args.quantize_dir, args.prepare_dir, args.ds_config, args.out_dir)
            history = result.pop("history")
            log_curve("warmup_loss", [(r["step"], r["loss"]) for r in history])
            log_curve("warmup_lr", [(r["step"], r["lr"]) for r in history])
            log_metrics(numeric(result))
            for name in ("loss.png", "history.csv", "report.json"):
                log_artifact(args.out_dir / name)

    main_guard("warmup", body)


if __name__ == "__main__":
    main()
