"""Stage `evaluate`: the pinned ScienceQA-style protocol on the adapted model and the fp base, side by side.

Run alone::

    python -m steps.evaluate artifacts/base artifacts/hybrid artifacts/prepare artifacts/evaluate

Greedy decoding of the evaluation prompts of ``evaluate.split`` (``test`` for reported figures,
``validation`` for choices), the reference answer parser, accuracy overall and
per category (NAT/SOC/LAN/TXT/IMG/NO/G1-6/G7-12) with counts and the parse-failure rate; perplexity on the
corpus's same split under the pinned window protocol; the untuned fp base measured in the same run. Writes
``metrics.json`` (DVC metrics), ``predictions.csv`` (one row per question and model), ``categories.json``
(DVC plot data), ``categories.png`` and ``protocol.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir
from steps.common import main_guard, section
from steps.tracking import log_artifact, log_metrics, stage_run


def eval_rows(params: Params, prepare_dir: Path) -> list[dict]:
    """The task rows of ``evaluate.split``, the first ``evaluate.limit`` of them when set."""
    from qslaw.data.prepare import read_rows

    rows = read_rows(prepare_dir / f"task_{params.evaluate.split}.parquet")
    return rows[: params.evaluate.limit] if params.evaluate.limit else rows


def eval_texts(params: Params, prepare_dir: Path) -> list[str]:
    """The corpus lines of ``evaluate.split`` (the perplexity protocol's text)."""
    from qslaw.data.prepare import read_rows

    return [r["text"] for r in read_rows(prepare_dir / f"text_{params.evaluate.split}.parquet")]


def answer(model: object, processor: object, rows: list[dict], params: Params, name: str) -> list[dict]:
    """Generate, parse and record one prediction row per question."""
    from qslaw.eval.generate import generate_answers
    from qslaw.eval.scienceqa import parse_answer
    from qslaw.train.encode import load_image

    prompts = [(r["eval_prompt"], load_image(r["image"])) for r in rows]
    outputs = generate_answers(model, processor, prompts, params.evaluate.max_new_tokens, params.evaluate.batch_size)
    preds = []
    for row, out in zip(rows, outputs, strict=True):
        pred = parse_answer(out, len(row["choices"]))
        preds.append({"model": name, "id": row["id"], "subject": row["subject"], "hint": row["hint"],
                      "has_image": row["image"] is not None, "grade": row["grade"], "answer": int(row["answer"]),
                      "pred": pred, "correct": pred == int(row["answer"]),
                      "prompt_sha256": hashlib.sha256(row["eval_prompt"].encode()).hexdigest()[:16], "output": out})
    return preds


def measure(model: object, processor: object, rows: list[dict], texts: list[str], params: Params, name: str) -> tuple:
    from qslaw.eval.perplexity import perplexity
    from qslaw.eval.scienceqa import score

    preds = answer(model, processor, rows, params, name)
    ppl = perplexity(model, processor.tokenizer, texts, params.evaluate.ppl_window)
    return preds, {**score(preds), "perplexity": ppl["perplexity"], "ppl_tokens": ppl["tokens"]}


def flat_metrics(results: dict[str, dict]) -> dict[str, float]:
    out = {}
    for name, m in results.items():
        out.update({f"{name}_acc_{k}": v for k, v in m["accuracy"].items()})
        out[f"{name}_parse_failure_rate"] = m["parse_failure_rate"]
        out[f"{name}_perplexity"] = m["perplexity"]
    return out


def run(params: Params, base_dir: Path, hybrid_dir: Path, prepare_dir: Path, out_dir: Path) -> dict:
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from qslaw.eval.generate import GenerationProtocol
    from qslaw.eval.report import category_bar_chart, delta_table
    from qslaw.export.bundle import load_bundle

    rows = eval_rows(params, prepare_dir)
    texts = eval_texts(params, prepare_dir)
    adapted, processor = load_bundle(hybrid_dir)
    preds_a, metrics_a = measure(adapted, processor, rows, texts, params, "adapted")
    del adapted
    base = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32).eval()
    preds_b, metrics_b = measure(base, AutoProcessor.from_pretrained(base_dir), rows, texts, params, "fp_base")
    protocol = {**GenerationProtocol(params.evaluate.max_new_tokens, params.evaluate.batch_size,
                                     params.prepare.eval_prompt).to_dict(),
                "ppl_window": params.evaluate.ppl_window, "ppl_join": "\\n\\n", "questions": len(rows),
                "split": params.evaluate.split}
    metrics = {"adapted": metrics_a, "fp_base": metrics_b, "delta": delta_table(metrics_a, metrics_b),
               "ppl_ratio": metrics_a["perplexity"] / metrics_b["perplexity"], "protocol": protocol}
    with atomic_dir(out_dir) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (tmp / "protocol.json").write_text(json.dumps(protocol, indent=2))
        write_predictions(preds_a + preds_b, tmp / "predictions.csv")
        bars = [{"category": c, "model": n, "accuracy": m["accuracy"][c]}
                for n, m in (("adapted", metrics_a), ("fp_base", metrics_b)) for c in m["accuracy"]]
        (tmp / "categories.json").write_text(json.dumps(bars, indent=2))
        category_bar_chart({"adapted": metrics_a, "fp base": metrics_b}, tmp / "categories.png")
    return {**flat_metrics({"adapted": metrics_a, "fp_base": metrics_b}), "ppl_ratio": metrics["ppl_ratio"]}


def write_predictions(rows: list[dict], path: Path) -> None:
    fields = ["model", "id", "prompt_sha256", "answer", "pred", "correct", "subject", "grade", "has_image", "output"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate the adapted model against the fp base.")
    for name in ("base_dir", "hybrid_dir", "prepare_dir", "out_dir"):
        parser.add_argument(name, type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("evaluate", section(params, "evaluate", "prepare")):
            log_metrics(run(params, args.base_dir, args.hybrid_dir, args.prepare_dir, args.out_dir))
            for name in ("metrics.json", "predictions.csv", "categories.png", "protocol.json"):
                log_artifact(args.out_dir / name)

    main_guard("evaluate", body)


if __name__ == "__main__":
    main()
