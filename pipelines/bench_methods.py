"""Benchmark: every adaptation method on the embedded default — the paper's table at toy scale (not a test).

How it works
------------
The repository is copied into a throwaway workspace (:mod:`pipelines.workspace`, with this checkout's
``params.yaml`` or ``--profile``); ``dvc repro`` builds the shared stages once, then each seed × method is
one ``dvc exp run -S train.method=<m> -S train.seed=<s>`` — DVC's cache keeps base, prepare and validate,
so only quantize → export rerun, exactly as a user comparing methods would run them. After each
experiment the script reads ``artifacts/evaluate/metrics.json``, the hybrid report (trainable parameters)
and the stage runs' ``stage_peak_rss_mib`` / ``stage_wall_s`` from the workspace's MLflow store, and at the
end writes a markdown table (mean ± sd over seeds where there are several)::

    python -m pipelines.bench_methods [--seeds 0 1 2] [--methods qslaw qlora ...] [--out reports/methods.md]

Nothing here tunes anything toward an answer: every method gets the same data, steps and evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.workspace import ROOT, make_repo_copy, pipeline_env
from steps.compare import CATEGORIES, trainable_count

TRAINING_STAGES = ("quantize", "warmup", "hybrid")


def dvc(repo: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=pipeline_env(repo),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def stage_costs(repo: Path, since_ms: int) -> dict[str, float]:
    """Peak RSS (max) and wall time (sum) of the training stages run since ``since_ms``."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=pipeline_env(repo)["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("qslaw")
    runs = client.search_runs([experiment.experiment_id], "tags.`qslaw.kind` = 'stage'")
    recent = [r for r in runs if r.info.start_time >= since_ms and r.info.run_name in TRAINING_STAGES]
    return {"peak_rss_mib": max((r.data.metrics.get("stage_peak_rss_mib", 0.0) for r in recent), default=0.0),
            "train_wall_s": sum(r.data.metrics.get("stage_wall_s", 0.0) for r in recent)}


def run_one(repo: Path, method: str, seed: int) -> dict:
    since = int(time.time() * 1000)
    start = time.perf_counter()
    dvc(repo, "exp", "run", "-S", f"train.method={method}", "-S", f"train.seed={seed}")
    metrics = json.loads((repo / "artifacts" / "evaluate" / "metrics.json").read_text())["adapted"]
    hybrid = json.loads((repo / "artifacts" / "hybrid" / "report.json").read_text())
    return {"method": method, "seed": seed, **{c: metrics["accuracy"][c] for c in CATEGORIES},
            "parse_failure_rate": metrics["parse_failure_rate"], "perplexity": metrics["perplexity"],
            "trainable_params": trainable_count(hybrid), "dag_wall_s": time.perf_counter() - start,
            **stage_costs(repo, since)}


def cell(values: list[float], fmt: str) -> str:
    mean = statistics.fmean(values)
    return f"{mean:{fmt}}" + (f" ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else "")


def table(rows: list[dict]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    head = ["method", *CATEGORIES, "parse fail", "ppl", "trainable params", "peak RSS MiB (train stages)",
            "train stages s"]
    lines = [f"Seeds: {seeds}. Accuracy in % on the test split; mean ± sd over seeds.", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        cells = [m, *(cell([r[c] for r in rs], ".1f") for c in CATEGORIES),
                 cell([r["parse_failure_rate"] for r in rs], ".3f"), cell([r["perplexity"] for r in rs], ".2f"),
                 f"{rs[0]['trainable_params']:,}", cell([r["peak_rss_mib"] for r in rs], ".0f"),
                 cell([r["train_wall_s"] for r in rs], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from qslaw.config import METHODS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--profile", default="params.yaml", help="params file used in the workspace")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "methods.md")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="qslaw-bench-methods-") as tmp:
        repo = make_repo_copy(Path(tmp) / "repo", args.profile)
        dvc(repo, "repro", "validate")
        dvc(repo, "repro", "base")
        for seed in args.seeds:
            for method in args.methods:
                rows.append(run_one(repo, method, seed))
                print(json.dumps(rows[-1]), flush=True)
    text = table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
