"""Stage `export`: the adapted model as a self-contained bundle with a model card, checked by reloading it.

Run alone::

    python -m steps.export artifacts/base artifacts/prepare artifacts/hybrid artifacts/evaluate artifacts/export

Copies the hybrid bundle (absorbed packed model + processor, LoRA adapter, projector, γ), writes
``merged/`` (dequantized + LoRA-merged fp checkpoint that plain transformers loads, with its measured
accuracy change vs the packed model; ``export.merged_eval_questions``), ``registry.json`` (model name,
method, the stage's MLflow run for ``steps.promote``), ``model_card.md`` (base model and revision, data
hashes, method and params, evaluation protocol, metrics, language retention) and ``lineage.json``, then
reloads the bundle with :func:`qslaw.export.bundle.load_bundle` and re-answers the first
``export.check_questions`` test questions: the answers must equal the ones the evaluate stage recorded, or
the stage fails and nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir
from steps.common import StageError, main_guard, section
from steps.tracking import lineage_tags, log_artifact, log_artifacts, log_metrics, stage_run

BUNDLE = ("model", "adapter", "projector.safetensors", "gamma.safetensors")


def copy_bundle(hybrid_dir: Path, out: Path) -> None:
    """Copy the bundle parts the method produced (model and projector always; adapter, γ where trained)."""
    for name in BUNDLE:
        src = hybrid_dir / name
        if not src.exists():
            if name in ("model", "projector.safetensors"):
                raise StageError(f"export: {src} is missing; rerun the hybrid stage")
            continue
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, out / name)


def method_summary(params: Params) -> str:
    """One paragraph saying what the exported model is."""
    from qslaw.train.methods import get_method

    m, q, h = get_method(params.train.method), params.quantize, params.hybrid
    weights = {"qslaw": f"{q.bits}-bit weights (uniform asymmetric, group size {q.group_size}, "
                        f"`{m.calibration_for(q.method)}` calibration)",
               "bnb_nf4": "bitsandbytes NF4 weights (double quantization)",
               "fp": "full-precision weights"}[m.weights]
    steps = [weights]
    if m.gamma:
        steps.append(f"learnable group scales γ in blocks > {q.start_layer} ({q.gamma_mode} mode)")
    if m.warmup:
        steps.append("multimodal warmup")
    if m.mix:
        steps.append(f"hybrid text:multimodal training ({h.text_ratio}:1, {h.mix_schedule} schedule), γ absorbed")
    steps.append(f"LoRA r={h.lora_r} + projector" if m.tuning == "lora" else "full fine-tuning of the LLM + projector")
    return f"Method `{m.name}`: " + "; ".join(steps) + "."


def reload_check(params: Params, bundle: Path, prepare_dir: Path, evaluate_dir: Path) -> int:
    """Re-answer the first test questions with the reloaded bundle; raise unless identical to evaluate's."""
    from qslaw.eval.generate import generate_answers
    from qslaw.export.bundle import load_bundle
    from qslaw.train.encode import load_image
    from steps.evaluate import eval_rows

    with open(evaluate_dir / "predictions.csv", newline="") as f:
        recorded = {r["id"]: r["output"] for r in csv.DictReader(f) if r["model"] == "adapted"}
    rows = eval_rows(params, prepare_dir)[: params.export.check_questions]
    model, processor = load_bundle(bundle)
    prompts = [(r["eval_prompt"], load_image(r["image"])) for r in rows]
    outputs = generate_answers(model, processor, prompts, params.evaluate.max_new_tokens, params.evaluate.batch_size)
    mismatched = [r["id"] for r, out in zip(rows, outputs, strict=True) if recorded.get(r["id"]) != out]
    if mismatched:
        raise StageError(f"export: the reloaded bundle answers differently from the evaluated model on "
                         f"{len(mismatched)} of {len(rows)} questions, e.g. {mismatched[:3]}")
    return len(rows)


def merged_check(params: Params, bundle: Path, prepare_dir: Path, evaluate_dir: Path) -> dict:
    """Write ``merged/`` (dequantized + LoRA merged, plain transformers) and measure its accuracy change
    against the packed model's recorded answers on the first ``export.merged_eval_questions`` test questions."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from qslaw.eval.generate import generate_answers
    from qslaw.eval.scienceqa import parse_answer
    from qslaw.export.merge import merged_model
    from qslaw.train.encode import load_image
    from steps.evaluate import eval_rows

    merged_model(bundle).save_pretrained(bundle / "merged")
    AutoProcessor.from_pretrained(bundle / "model").save_pretrained(bundle / "merged")
    model = LlavaForConditionalGeneration.from_pretrained(bundle / "merged").eval()  # plain transformers
    processor = AutoProcessor.from_pretrained(bundle / "merged")
    with open(evaluate_dir / "predictions.csv", newline="") as f:
        recorded = {r["id"]: r for r in csv.DictReader(f) if r["model"] == "adapted"}
    rows = [r for r in eval_rows(params, prepare_dir) if r["id"] in recorded][: params.export.merged_eval_questions]
    prompts = [(r["eval_prompt"], load_image(r["image"])) for r in rows]
    outputs = generate_answers(model, processor, prompts, params.evaluate.max_new_tokens, params.evaluate.batch_size)
    packed = sum(recorded[r["id"]]["correct"] == "True" for r in rows)
    merged = sum(parse_answer(out, len(r["choices"])) == int(r["answer"]) for r, out in zip(rows, outputs, strict=True))
    same = sum(recorded[r["id"]]["output"] == out for r, out in zip(rows, outputs, strict=True))
    n = max(1, len(rows))
    return {"merged_questions": len(rows), "merged_acc": 100 * merged / n,
            "packed_acc_same_questions": 100 * packed / n, "merged_acc_change": 100 * (merged - packed) / n,
            "merged_identical_outputs": same}


def model_card(params: Params, base_dir: Path, prepare_dir: Path, evaluate_dir: Path, lineage: dict,
               merged: dict | None = None) -> str:
    base = json.loads((base_dir / "base_info.json").read_text())
    manifest = json.loads((prepare_dir / "manifest.json").read_text())
    metrics = json.loads((evaluate_dir / "metrics.json").read_text())
    cats = list(metrics["adapted"]["accuracy"])
    table = ["| model | " + " | ".join(cats) + " | parse failures | perplexity |",
             "|---" * (len(cats) + 3) + "|"]
    for name in ("adapted", "fp_base"):
        m = metrics[name]
        table.append(f"| {name} | " + " | ".join(f"{m['accuracy'][c]:.2f}" for c in cats)
                     + f" | {m['parse_failure_rate']:.3f} | {m['perplexity']:.2f} |")
    return "\n".join([
        f"# {model_name(params, base_dir)}",
        "",
        method_summary(params),
        "",
        "## Base model", f"- id: `{base['model']}`", f"- revision: `{base['revision']}`", "",
        "## Data", *[f"- `{name}`: `{digest[:16]}`" for name, digest in manifest["sha256"].items()], "",
        "## Method and parameters", "```json", json.dumps(section(params, "quantize", "train", "warmup", "hybrid"),
                                                          indent=2), "```", "",
        "## Evaluation protocol", "```json", json.dumps(metrics["protocol"], indent=2), "```", "",
        "## Metrics (accuracy %, test split)", *table, "",
        f"Language retention: perplexity ratio adapted / fp base = {metrics['ppl_ratio']:.3f}.", "",
        *(["## Merged full-precision checkpoint (`merged/`)",
           f"Dequantized and LoRA-merged, loadable by plain transformers. On the first {merged['merged_questions']} "
           f"test questions: accuracy {merged['merged_acc']:.2f} vs {merged['packed_acc_same_questions']:.2f} for "
           f"the packed model ({merged['merged_acc_change']:+.2f} points); identical outputs on "
           f"{merged['merged_identical_outputs']} of {merged['merged_questions']}.", ""] if merged else []),
        "## Lineage", *[f"- {k}: `{v}`" for k, v in sorted(lineage.items())], "",
        "## Known limitations",
        "- Accuracy is measured on the embedded synthetic world unless params point at real data; it says how "
        "methods compare, not how a 13B model does on ScienceQA.",
        "- Merging the adapter into 4-bit codes is lossy; load the adapter on top of the packed model instead.",
        "",
        "## Load", "```python", "from qslaw.export.bundle import load_bundle",
        "model, processor = load_bundle('<this directory>')", "```", ""])


def model_name(params: Params, base_dir: Path) -> str:
    base = json.loads((base_dir / "base_info.json").read_text())
    return params.export.model_name or "qslaw-" + Path(base["model"]).name


def run(params: Params, base_dir: Path, prepare_dir: Path, hybrid_dir: Path, evaluate_dir: Path,
        out_dir: Path, tracking: dict | None = None) -> dict:
    """Write the bundle (+ merged checkpoint, card, lineage, registry info) and check it reloads identically.

    ``tracking``: the export stage's MLflow run (``run_id``, ``artifact_uri``), recorded in ``registry.json``
    for ``steps.promote``."""
    lineage = lineage_tags("export")
    merged = None
    with atomic_dir(out_dir) as tmp:
        copy_bundle(hybrid_dir, tmp)
        checked = reload_check(params, tmp, prepare_dir, evaluate_dir)
        if params.export.merged_eval_questions:
            merged = merged_check(params, tmp, prepare_dir, evaluate_dir)
        (tmp / "model_card.md").write_text(model_card(params, base_dir, prepare_dir, evaluate_dir, lineage, merged))
        (tmp / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True))
        (tmp / "registry.json").write_text(json.dumps({"model_name": model_name(params, base_dir),
                                                       "method": params.train.method, **(tracking or {})}, indent=2))
    size = sum(p.stat().st_size for p in (out_dir / "model").rglob("*") if p.is_file())
    adapter = sum(p.stat().st_size for p in (out_dir / "adapter").rglob("*") if p.is_file()) \
        if (out_dir / "adapter").exists() else 0
    return {"reload_checked_questions": checked, "model_mib": size / 2**20, "adapter_mib": adapter / 2**20,
            **(merged or {})}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export the adapted model bundle with a model card.")
    for name in ("base_dir", "prepare_dir", "hybrid_dir", "evaluate_dir", "out_dir"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("export", section(params, "export", "train")) as active:
            tracking = {"run_id": active.info.run_id, "artifact_uri": active.info.artifact_uri} if active else None
            log_metrics(run(params, args.base_dir, args.prepare_dir, args.hybrid_dir, args.evaluate_dir,
                            args.out_dir, tracking))
            log_artifact(args.out_dir / "model_card.md")
            log_artifacts(args.out_dir, "export")

    main_guard("export", body)


if __name__ == "__main__":
    main()
