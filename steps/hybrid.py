"""Stage `hybrid`: γ + projector on a text:multimodal mix, absorb γ, then LoRA (+ projector) on task data.

Run alone::

    python -m steps.hybrid artifacts/quantize artifacts/warmup artifacts/prepare infra/deepspeed/zero2.json \\
        artifacts/hybrid

Phase 1 (DeepSpeed): starting from the warmup's γ and projector, train them on ``hybrid.multimodal_samples``
task image conversations (assistant-span loss) mixed with ``text_ratio`` times as many text chunks of
``chunk_length`` tokens (loss on every token), shuffled every epoch — the released 1:1 recipe by default.
Then γ is absorbed into the packed codes. Phase 2 (DeepSpeed): LoRA adapters on every quantized decoder
linear plus the projector (own learning rate) on all task training conversations; codes, s, z frozen.

Writes ``model/`` (absorbed quantized model with the final projector + processor files), ``adapter/``
(peft LoRA), ``projector.safetensors``, ``gamma.safetensors`` (γ before absorption), ``history.csv``,
``loss.png`` and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir
from steps.common import main_guard, section
from steps.tracking import log_artifact, log_curve, log_metrics, stage_run


def loop_spec(params: Params, epochs: int, desc: str) -> object:
    from qslaw.train.loop import LoopSpec

    return LoopSpec(epochs=epochs, batch_size=params.hybrid.batch_size, seed=params.train.seed,
                    precision=params.train.precision, zero_stage=params.train.zero_stage, desc=desc)


def phase_mix(params: Params, model: object, processor: object, prepare_dir: Path, ds_config: Path) -> tuple:
    """Phase 1: γ + projector on the text:multimodal mix."""
    from qslaw.data.prepare import read_rows
    from qslaw.model.surgery import set_trainable
    from qslaw.train.data import conversations, mix, text_chunks
    from qslaw.train.encode import collate
    from qslaw.train.loop import train

    h = params.hybrid
    mm = conversations(read_rows(prepare_dir / "task_train.parquet"), processor, model.config, h.max_length,
                       limit=h.multimodal_samples, images_only=True)
    lines = [r["text"] for r in read_rows(prepare_dir / "text_train.parquet")]
    samples, stats = mix(mm, text_chunks(lines, processor.tokenizer, h.chunk_length), h.text_ratio)
    set_trainable(model, ["gamma", "projector"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    pad = processor.tokenizer.pad_token_id
    history = train(model, samples, lambda b: collate(b, pad), [{"params": trainable, "lr": h.gamma_lr}],
                    loop_spec(params, h.gamma_epochs, "hybrid γ"), ds_config)
    return history, stats


def phase_lora(params: Params, model: object, processor: object, prepare_dir: Path, ds_config: Path) -> tuple:
    """Phase 2: LoRA + projector on every task training conversation."""
    from qslaw.data.prepare import read_rows
    from qslaw.model.lora import add_lora
    from qslaw.model.surgery import TRAINABLE_GROUPS, set_trainable
    from qslaw.train.data import conversations
    from qslaw.train.encode import collate
    from qslaw.train.loop import train

    h = params.hybrid
    samples = conversations(read_rows(prepare_dir / "task_train.parquet"), processor, model.config, h.max_length)
    peft_model = add_lora(model, params.quantize.quant_spec(), r=h.lora_r, alpha=h.lora_alpha, dropout=h.lora_dropout)
    counts = set_trainable(peft_model, ["lora", "projector"])
    named = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if TRAINABLE_GROUPS["lora"](n)], "lr": h.lora_lr},
              {"params": [p for n, p in named if TRAINABLE_GROUPS["projector"](n)], "lr": h.projector_lr}]
    pad = processor.tokenizer.pad_token_id
    history = train(peft_model, samples, lambda b: collate(b, pad), groups,
                    loop_spec(params, h.lora_epochs, "hybrid LoRA"), ds_config)
    return peft_model, history, counts


def run(params: Params, quantize_dir: Path, warmup_dir: Path, prepare_dir: Path, ds_config: Path,
        out_dir: Path) -> dict:
    import torch
    from transformers import AutoProcessor

    from qslaw.model.io import load_quantized, write_quantized
    from qslaw.model.surgery import absorb_gamma
    from qslaw.train.state import load_state, plot_history, save_state, trainable_state, write_history

    torch.manual_seed(params.train.seed)
    model, spec = load_quantized(quantize_dir / "model")
    processor = AutoProcessor.from_pretrained(quantize_dir / "model")
    load_state(model, warmup_dir / "trainables.safetensors")
    history_mix, stats = phase_mix(params, model, processor, prepare_dir, ds_config)
    gamma = trainable_state(model, ["gamma"])
    model = absorb_gamma(model)
    peft_model, history_lora, counts = phase_lora(params, model, processor, prepare_dir, ds_config)
    history = [{**r, "phase": "mix"} for r in history_mix] + [
        {**r, "phase": "lora", "step": r["step"] + len(history_mix)} for r in history_lora]
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(tmp / "adapter")
        base = peft_model.unload()
        (tmp / "model").mkdir()
        write_quantized(base, spec, tmp / "model")
        processor.save_pretrained(tmp / "model")
        save_state(trainable_state(base, ["projector"]), tmp / "projector.safetensors")
        save_state(gamma, tmp / "gamma.safetensors")
        write_history(history, tmp / "history.csv")
        plot_history(history, tmp / "loss.png", "hybrid")
        report = {**stats, "steps_mix": len(history_mix), "steps_lora": len(history_lora),
                  "final_loss_mix": history_mix[-1]["loss"], "final_loss_lora": history_lora[-1]["loss"],
                  **{f"trainable_{g}": n for g, n in counts.items()},
                  "gamma_params": sum(t.numel() for t in gamma.values())}
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return {"history": history, **report}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hybrid γ training, absorption and LoRA fine-tuning.")
    for name in ("quantize_dir", "warmup_dir", "prepare_dir", "ds_config", "out_dir"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("hybrid", section(params, "hybrid", "quantize", "train")):
            result = run(params, args.quantize_dir, args.warmup_dir, args.prepare_dir, args.ds_config, args.out_dir)
            history = result.pop("history")
            log_curve("hybrid_loss", [(r["step"], r["loss"]) for r in history])
            log_curve("hybrid_lr", [(r["step"], r["lr"]) for r in history])
            log_metrics(result)
            for name in ("loss.png", "history.csv", "report.json"):
                log_artifact(args.out_dir / name)

    main_guard("hybrid", body)


if __name__ == "__main__":
    main()
