"""Stage `hybrid`: γ + projector on a text:multimodal mix, absorb γ, then LoRA (+ projector) on task data.

Run alone::

    python -m steps.hybrid artifacts/quantize artifacts/warmup artifacts/prepare infra/deepspeed/zero2.json \\
        artifacts/hybrid

What runs depends on ``train.method`` (:mod:`qslaw.train.methods`). Phase 1 (DeepSpeed; ``qslaw`` and
``qslaw_no_warmup``): starting from the warmup's γ and projector (or the quantize stage's, without warmup),
train them on ``hybrid.multimodal_samples`` task image conversations (assistant-span loss) mixed with
``text_ratio`` times as many text chunks of ``chunk_length`` tokens (loss on every token), shuffled every
epoch — the released 1:1 recipe by default; ``mix_schedule: linear`` moves the text share from
``text_ratio`` to ``text_ratio_end`` instead. Then γ is absorbed into the packed codes. Phase 2 (DeepSpeed;
every method): LoRA adapters on every decoder-block linear plus the projector (own learning rate) on all
task training conversations (plus ``tune_text_ratio`` text chunks per conversation, the corpus chunks after
phase 1's; 0 as released), the base weights frozen whatever their format — or, for ``full_ft``, every LLM
weight (``full_ft_lr``) plus the projector.

Checks written to ``report.json`` so a result is not believed before its mechanics are: perplexity on the
corpus validation split before phase 1, after it and after phase 2 (``ppl_val_*``: where language is lost);
the RMS of ``γ − 1`` per block (``gamma_dev_rms_block<i>``: γ moved); the largest logit change that
absorbing γ caused on a probe batch (``absorb_max_logit_diff``: the absorbed model is the trained one, up to
rounding ``γ·s`` to the storage dtype); and the largest logit difference between the phase-2 model before
its first step and the model it was built from (``tune_start_max_logit_diff``: LoRA starts from the absorbed
weights).

Writes ``model/`` (the tuned method's base: absorbed qslaw codes, bitsandbytes NF4 or fp, with the final
projector + processor files; loadable with ``qslaw.model.io.load_model``), ``adapter/`` (peft LoRA; not for
``full_ft``), ``projector.safetensors``, ``gamma.safetensors`` (γ before absorption; γ methods only),
``history.csv``, ``loss.png`` and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir
from steps.common import checkpoint_spec, main_guard, section
from steps.tracking import log_artifact, log_curve, log_metrics, numeric, stage_run


def loop_spec(params: Params, epochs: int, desc: str) -> object:
    from qslaw.train.loop import LoopSpec

    return LoopSpec(epochs=epochs, batch_size=params.hybrid.batch_size, seed=params.train.seed,
                    precision=params.train.precision, zero_stage=params.train.zero_stage, desc=desc)


def corpus_chunks(params: Params, processor: object, prepare_dir: Path) -> list[dict]:
    """The training corpus cut into ``chunk_length``-token chunks, as both phases draw them."""
    from qslaw.data.prepare import read_rows
    from qslaw.train.data import text_chunks

    lines = [r["text"] for r in read_rows(prepare_dir / "text_train.parquet")]
    return text_chunks(lines, processor.tokenizer, params.hybrid.chunk_length)


def probe(model: object, batch: dict) -> object:
    """Logits of ``model`` on ``batch`` in eval mode (float32, no grad)."""
    import torch

    from qslaw.eval.runtime import evaluating

    with torch.no_grad(), evaluating(model):
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()


def val_perplexity(params: Params, model: object, processor: object, prepare_dir: Path) -> float:
    from qslaw.data.prepare import read_rows
    from qslaw.eval.perplexity import perplexity

    texts = [r["text"] for r in read_rows(prepare_dir / "text_validation.parquet")]
    return perplexity(model, processor.tokenizer, texts, params.evaluate.ppl_window)["perplexity"]


def phase_mix(params: Params, model: object, processor: object, prepare_dir: Path, ds_config: Path,
              ckpt: object = None) -> tuple:
    """Phase 1: γ + projector on the text:multimodal mix (fixed shuffle as released, or a linear schedule)."""
    from qslaw.data.prepare import read_rows
    from qslaw.model.surgery import set_trainable
    from qslaw.train.data import conversations, mix, schedule_slots, scheduled_batches, text_share
    from qslaw.train.encode import collate
    from qslaw.train.loop import train

    h = params.hybrid
    mm = conversations(read_rows(prepare_dir / "task_train.parquet"), processor, model.config, h.max_length,
                       limit=h.multimodal_samples, images_only=True)
    linear = h.mix_schedule == "linear"
    samples, stats = mix(mm, corpus_chunks(params, processor, prepare_dir), h.text_ratio,
                         h.text_ratio_end if linear else None)
    is_text = [i >= len(mm) for i in range(len(samples))]
    spec = loop_spec(params, h.gamma_epochs, "hybrid γ")
    order = None
    if linear:
        slots = schedule_slots(len(samples), stats["mix_text"], text_share(h.text_ratio), text_share(h.text_ratio_end))
        order = lambda epoch: scheduled_batches(is_text, slots, spec.batch_size, spec.seed, epoch)  # noqa: E731
    set_trainable(model, ["gamma", "projector"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    pad = processor.tokenizer.pad_token_id
    history = train(model, samples, lambda b: collate(b, pad), [{"params": trainable, "lr": h.gamma_lr}],
                    spec, ds_config, order=order, checkpoint=ckpt)
    stats.update(realised_shares(is_text, order, spec))
    return history, {**stats, "mix_schedule": h.mix_schedule}


def realised_shares(is_text: list[bool], order: object, spec: object) -> dict:
    """Text share of the first and last quarter of the steps of epoch 0, as trained."""
    from qslaw.train.loop import batches

    steps = order(0) if order else batches(len(is_text), spec, 0)
    quarter = max(1, len(steps) // 4)

    def share(chunk: list[list[int]]) -> float:
        flat = [i for b in chunk for i in b]
        return sum(is_text[i] for i in flat) / len(flat)

    return {"mix_text_share_first_quarter": share(steps[:quarter]),
            "mix_text_share_last_quarter": share(steps[-quarter:])}


def tune_samples(params: Params, processor: object, config: object, prepare_dir: Path,
                 text_used: int) -> tuple[list[dict], dict]:
    """Every task training conversation, plus ``tune_text_ratio`` corpus chunks per conversation taken after
    the ``text_used`` chunks phase 1 trained on (capped by what the corpus holds)."""
    from qslaw.data.prepare import read_rows
    from qslaw.train.data import conversations, mix

    h = params.hybrid
    tasks = conversations(read_rows(prepare_dir / "task_train.parquet"), processor, config, h.max_length)
    if h.tune_text_ratio == 0:
        return tasks, {}
    samples, stats = mix(tasks, corpus_chunks(params, processor, prepare_dir)[text_used:], h.tune_text_ratio)
    return samples, {"tune_text": stats["mix_text"], "tune_text_ratio_realised": stats["mix_text_ratio"]}


def phase_tune(params: Params, model: object, processor: object, prepare_dir: Path, ds_config: Path,
               ckpt: object = None, text_used: int = 0, probe_batch: dict | None = None) -> tuple:
    """Phase 2 on every task training conversation: LoRA + projector, or (``full_ft``) every LLM weight + projector."""
    from qslaw.model.lora import add_lora
    from qslaw.model.surgery import TRAINABLE_GROUPS, set_trainable
    from qslaw.train.encode import collate
    from qslaw.train.loop import train

    h = params.hybrid
    full = params.train.method_spec().tuning == "full"
    samples, stats = tune_samples(params, processor, model.config, prepare_dir, text_used)
    before = probe(model, probe_batch) if probe_batch else None
    if full:
        tuned, main_group, main_lr = model, "llm", h.full_ft_lr
    else:
        tuned = add_lora(model, params.quantize.quant_spec(), r=h.lora_r, alpha=h.lora_alpha, dropout=h.lora_dropout)
        main_group, main_lr = "lora", h.lora_lr
    if before is not None:
        stats["tune_start_max_logit_diff"] = float((probe(tuned, probe_batch) - before).abs().max())
    counts = set_trainable(tuned, [main_group, "projector"])
    named = [(n, p) for n, p in tuned.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not TRAINABLE_GROUPS["projector"](n)], "lr": main_lr},
              {"params": [p for n, p in named if TRAINABLE_GROUPS["projector"](n)], "lr": h.projector_lr}]
    pad = processor.tokenizer.pad_token_id
    history = train(tuned, samples, lambda b: collate(b, pad), groups,
                    loop_spec(params, h.lora_epochs, "hybrid full FT" if full else "hybrid LoRA"), ds_config,
                    checkpoint=ckpt)
    return tuned, history, counts, stats


def probe_batch(params: Params, processor: object, config: object, prepare_dir: Path) -> dict:
    """Four task training conversations with images, collated: the batch the logit checks run on."""
    from qslaw.data.prepare import read_rows
    from qslaw.train.data import conversations
    from qslaw.train.encode import collate

    rows = conversations(read_rows(prepare_dir / "task_train.parquet"), processor, config,
                         params.hybrid.max_length, limit=4, images_only=True)
    return collate(rows, processor.tokenizer.pad_token_id)


def absorb_checked(model: object, batch: dict) -> tuple[object, dict]:
    """Absorb γ; the report holds the RMS of γ − 1 per block and the largest logit change absorbing caused."""
    from qslaw.model.surgery import absorb_gamma, gamma_deviation

    deviation = gamma_deviation(model)
    before = probe(model, batch)
    model = absorb_gamma(model)
    diff = float((probe(model, batch) - before).abs().max())
    return model, {**{f"gamma_dev_rms_block{i}": v for i, v in deviation.items()},
                   "gamma_dev_rms_max": max(deviation.values(), default=0.0), "absorb_max_logit_diff": diff,
                   "probe_max_abs_logit": float(before.abs().max())}


def run(params: Params, quantize_dir: Path, warmup_dir: Path, prepare_dir: Path, ds_config: Path,
        out_dir: Path) -> dict:
    import torch
    from transformers import AutoProcessor

    from qslaw.model.io import load_model, save_model_dir
    from qslaw.train.checkpoint import clear_checkpoints
    from qslaw.train.loop import is_main_process
    from qslaw.train.state import load_state, plot_history, save_state, trainable_state, write_history

    torch.manual_seed(params.train.seed)
    method = params.train.method_spec()
    model = load_model(quantize_dir / "model")
    processor = AutoProcessor.from_pretrained(quantize_dir / "model")
    if method.warmup:
        load_state(model, warmup_dir / "trainables.safetensors")
    inputs = (quantize_dir, warmup_dir, prepare_dir)
    # bitsandbytes repacks a 4-bit weight for its CPU kernel at the first eval-mode forward, which changes the
    # saved codes and the training forward: no eval-mode check touches an NF4 model before it is saved
    checked = method.weights != "bnb_nf4"
    batch = probe_batch(params, processor, model.config, prepare_dir) if checked else None
    checks = {"ppl_val_start": val_perplexity(params, model, processor, prepare_dir)} if checked else {}
    history_mix, stats = (phase_mix(params, model, processor, prepare_dir, ds_config,
                                    checkpoint_spec(params, "hybrid", "mix", *inputs)) if method.mix else ([], {}))
    if method.mix:
        checks["ppl_val_after_mix"] = val_perplexity(params, model, processor, prepare_dir)
    gamma = trainable_state(model, ["gamma"])
    if gamma:
        model, absorbed = absorb_checked(model, batch)
        checks.update(absorbed)
    tuned, history_tune, counts, tune_stats = phase_tune(params, model, processor, prepare_dir, ds_config,
                                                         checkpoint_spec(params, "hybrid", "tune", *inputs),
                                                         stats.get("mix_text", 0), batch)
    if checked:
        checks["ppl_val_after_tune"] = val_perplexity(params, tuned, processor, prepare_dir)
    history = [{**r, "phase": "mix"} for r in history_mix] + [
        {**r, "phase": "tune", "step": r["step"] + len(history_mix)} for r in history_tune]
    if not is_main_process():  # other ranks trained their share; rank 0 writes the outputs
        return {"history": history, "method": method.name}
    with atomic_dir(out_dir) as tmp:
        if method.tuning == "lora":
            tuned.save_pretrained(tmp / "adapter")
            base = tuned.unload()
        else:
            base = tuned
        (tmp / "model").mkdir()
        save_model_dir(base, params.quantize.quant_spec(), tmp / "model")
        processor.save_pretrained(tmp / "model")
        save_state(trainable_state(base, ["projector"]), tmp / "projector.safetensors")
        if gamma:
            save_state(gamma, tmp / "gamma.safetensors")
        write_history(history, tmp / "history.csv")
        plot_history(history, tmp / "loss.png", f"hybrid ({method.name})")
        report = {"method": method.name, **stats, **tune_stats, **checks,
                  "steps_mix": len(history_mix), "steps_tune": len(history_tune),
                  "final_loss_tune": history_tune[-1]["loss"],
                  **({"final_loss_mix": history_mix[-1]["loss"]} if history_mix else {}),
                  **{f"trainable_{g}": n for g, n in counts.items()},
                  "gamma_params": sum(t.numel() for t in gamma.values())}
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    if params.train.checkpoint_every:
        clear_checkpoints(Path(params.train.checkpoint_dir) / "hybrid")
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
            log_metrics(numeric(result))
            for name in ("loss.png", "history.csv", "report.json"):
                log_artifact(args.out_dir / name)

    main_guard("hybrid", body)


if __name__ == "__main__":
    main()
