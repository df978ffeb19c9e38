"""Comparison report of every pipeline run in the MLflow experiment: methods × metrics, category bars, cost.

Run::

    python -m steps.compare reports/comparison

Reads the experiment's pipeline runs (``qslaw.kind = pipeline``) and their stage children: the method
(``train.method`` of the training stages), accuracy per category, parse failures, perplexity and its ratio to
the fp base (evaluate stage), trainable parameters (hybrid), and the cost — the largest
``stage_peak_rss_mib`` and the summed ``stage_wall_s`` of the stages that ran. Runs without an evaluate stage
are left out. Writes ``comparison.md`` (the table, newest run first), ``comparison.json``,
``categories.png`` (accuracy per category, one bar per run) and ``cost.png`` (peak memory and time per run),
and logs them to MLflow as a run named ``comparison`` (tag ``qslaw.kind = report``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qslaw.config import Params
from qslaw.eval.scienceqa import CATEGORIES as SCIENCEQA_CATEGORIES
from qslaw.fsutil import atomic_dir
from steps.common import StageError, main_guard
from steps.tracking import EXPERIMENT, repo_root, tracking_uri

CATEGORIES = ("Avg", *SCIENCEQA_CATEGORIES)


def trainable_count(report: dict) -> int:
    """Trained parameters in a hybrid report or its logged metrics: every ``trainable_<group>`` + γ."""
    return int(sum(v for k, v in report.items() if k.startswith("trainable_")) + report.get("gamma_params", 0))


def collect(client: Any, experiment_id: str) -> list[dict]:
    """One row per pipeline run that reached evaluate, newest first."""
    parents = client.search_runs([experiment_id], "tags.`qslaw.kind` = 'pipeline'",
                                 order_by=["attributes.start_time DESC"])
    rows = []
    for parent in parents:
        children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        stages = {c.info.run_name: c for c in children}
        if "evaluate" not in stages:
            continue
        metrics = stages["evaluate"].data.metrics
        method = next((c.data.params["train.method"] for c in children if "train.method" in c.data.params), "?")
        hybrid = stages["hybrid"].data.metrics if "hybrid" in stages else {}
        rows.append({
            "run": parent.info.run_name or parent.info.run_id[:8], "run_id": parent.info.run_id, "method": method,
            **{c: metrics.get(f"adapted_acc_{c}") for c in CATEGORIES},
            "parse_failure_rate": metrics.get("adapted_parse_failure_rate"),
            "perplexity": metrics.get("adapted_perplexity"), "ppl_ratio": metrics.get("ppl_ratio"),
            "trainable_params": trainable_count(hybrid),
            "peak_rss_mib": max((c.data.metrics.get("stage_peak_rss_mib", 0.0) for c in children), default=0.0),
            "stages_wall_s": sum(c.data.metrics.get("stage_wall_s", 0.0) for c in children),
        })
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else f"{value:{spec}}"


def markdown(rows: list[dict]) -> str:
    head = ["run", "method", *CATEGORIES, "parse fail", "ppl", "ppl / fp", "trainable", "peak RSS MiB", "time s"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        cells = [r["run"], r["method"], *(_fmt(r[c], ".1f") for c in CATEGORIES), _fmt(r["parse_failure_rate"], ".3f"),
                 _fmt(r["perplexity"], ".2f"), _fmt(r["ppl_ratio"], ".3f"), f"{int(r['trainable_params']):,}",
                 _fmt(r["peak_rss_mib"], ".0f"), _fmt(r["stages_wall_s"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plots(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{r['method']} ({r['run']})" for r in rows]
    x, width = np.arange(len(CATEGORIES)), 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(CATEGORIES)), 4))
    for i, r in enumerate(rows):
        ax.bar(x + i * width, [r[c] or 0.0 for c in CATEGORIES], width, label=labels[i])
    ax.set_xticks(x + width * (len(rows) - 1) / 2, CATEGORIES)
    ax.set(ylabel="accuracy %", title="accuracy per category")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "categories.png", dpi=100)
    plt.close(fig)
    fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(10, 0.5 * len(rows) + 2))
    ax_m.barh(labels, [r["peak_rss_mib"] for r in rows])
    ax_m.set(xlabel="peak RSS MiB (largest stage)")
    ax_t.barh(labels, [r["stages_wall_s"] for r in rows], color="tab:orange")
    ax_t.set(xlabel="seconds (stages that ran)")
    fig.tight_layout()
    fig.savefig(out / "cost.png", dpi=100)
    plt.close(fig)


def run(out_dir: Path, client: Any | None = None, experiment: str | None = None) -> list[dict]:
    """Build the report into ``out_dir`` and log it to MLflow; returns the rows."""
    import os

    import mlflow

    client = client or mlflow.MlflowClient(tracking_uri(repo_root()))
    name = experiment or os.environ.get("QSLAW_EXPERIMENT", EXPERIMENT)
    found = client.get_experiment_by_name(name)
    if found is None:
        raise StageError(f"MLflow experiment {name!r} does not exist at {client.tracking_uri}; run the pipeline first")
    rows = collect(client, found.experiment_id)
    if not rows:
        raise StageError(f"experiment {name!r} has no pipeline run with an evaluate stage yet")
    with atomic_dir(out_dir) as tmp:
        (tmp / "comparison.md").write_text(f"# Runs of experiment `{name}`\n\n" + markdown(rows) + "\n")
        (tmp / "comparison.json").write_text(json.dumps(rows, indent=2))
        plots(rows, tmp)
    report = client.create_run(found.experiment_id, run_name="comparison", tags={"qslaw.kind": "report"})
    for file in ("comparison.md", "comparison.json", "categories.png", "cost.png"):
        client.log_artifact(report.info.run_id, str(out_dir / file))
    client.set_terminated(report.info.run_id)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compare every pipeline run of the MLflow experiment.")
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("reports/comparison"))
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        rows = run(args.out_dir)
        print(markdown(rows))
        print(f"\nwritten to {args.out_dir} and logged to MLflow (run 'comparison')")

    main_guard("compare", body)


if __name__ == "__main__":
    main()
