"""``reports/paper_table.md`` from the paper grid's cells (:mod:`pipelines.paper_grid`), and its MLflow run.

Run::

    python -m pipelines.paper_grid report [--mlflow]

How it works
------------
Reads every ``<results>/seed*-*.json`` cell and writes, for the test split: per method the mean ± sd over
world seeds of Avg and every category, parse failures, perplexity and its ratio to the fp base, trainable
parameters, the peak RSS of any stage and each stage's CPU time (user + sys; for a stage DVC restored,
the cost of the cell that computed it, matched by its dvc.lock entry); the ``hybrid.text_ratio`` ablation;
the per-seed paired differences of the comparisons the paper argues from; the recipe variants measured on
validation; and the checks each result rests on (γ moved, absorb exact, LoRA starts from the absorbed
weights). The decision rule is fixed here, before any result is read: a difference counts only when it has
the same sign on every one of the three world seeds and its mean exceeds 2 points; otherwise "not
distinguishable" (or "incomplete" while a seed is missing). ``--mlflow`` logs the report, the chart and
every cell as one run named ``paper_table`` (tag ``qslaw.kind = report``) in the default tracking store.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from pipelines.paper_grid import METHOD_ORDER, STAGES, TEXT_RATIOS
from steps.compare import CATEGORIES, trainable_count

MIN_SEEDS = 3
MARGIN = 2.0
COMPARISONS = (("qslaw", "qlora"), ("qslaw", "lora_fp"), ("qslaw", "qslaw_no_warmup"), ("qslaw", "lwc_lora"),
               ("lora_fp", "qlora"), ("qslaw", "qslaw_text0"))
COST_STAGES = ("quantize", "warmup", "hybrid", "evaluate", "export")


def load_cells(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("seed*-*.json"))]


def mean_sd(values: list[float], fmt: str = ".1f") -> str:
    if not values:
        return "—"
    text = f"{statistics.fmean(values):{fmt}}"
    return text + (f" ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else "")


def stage_costs(cells: list[dict]) -> dict[str, dict]:
    """Every stage execution that actually ran, by its dvc.lock digest (the costliest record of a digest: a
    restore DVC reported in words the runner did not know is a few seconds, never the computation)."""
    out: dict[str, dict] = {}
    for s in (s for c in cells for s in c["stages"].values() if s["ran"]):
        if s["lock"] not in out or s["cpu_user_s"] > out[s["lock"]]["cpu_user_s"]:
            out[s["lock"]] = s
    return out


def cell_cost(cell: dict, costs: dict[str, dict]) -> dict[str, float | None]:
    """CPU seconds per stage and the largest peak RSS, taking restored stages' costs from where they ran."""
    out: dict[str, float | None] = {}
    peaks = []
    for stage in STAGES:
        ran = costs.get(cell["stages"][stage]["lock"])
        out[f"cpu_{stage}"] = ran["cpu_user_s"] + ran["cpu_sys_s"] if ran else None
        out[f"wall_{stage}"] = ran["wall_s"] if ran else None
        if ran and stage in COST_STAGES:
            peaks.append(ran["peak_rss_mib"])
    out["peak_rss_mib"] = max(peaks) if peaks else None
    return out


def by_variant(cells: list[dict], split: str = "test") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for c in cells:
        if c["split"] == split:
            out[c["variant"]].append(c)
    return {k: sorted(v, key=lambda c: c["seed"]) for k, v in out.items()}


def acc(cell: dict, category: str = "Avg", model: str = "adapted") -> float:
    return cell["metrics"][model]["accuracy"][category]


def method_table(groups: dict[str, list[dict]], costs: dict[str, dict]) -> list[str]:
    head = ["method", "seeds", *CATEGORIES, "parse fail %", "ppl", "ppl / fp base", "trainable params",
            "peak RSS MiB", *(f"CPU s {s}" for s in COST_STAGES)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    fp = [c for cs in groups.values() for c in cs]
    seeds_fp = {c["seed"]: c for c in fp}
    if seeds_fp:
        base = list(seeds_fp.values())
        lines.append("| " + " | ".join(["fp base (untuned)", str(len(base)),
                                        *(mean_sd([acc(c, k, "fp_base") for c in base]) for k in CATEGORIES),
                                        mean_sd([100 * c["metrics"]["fp_base"]["parse_failure_rate"] for c in base]),
                                        mean_sd([c["metrics"]["fp_base"]["perplexity"] for c in base], ".2f"), "1",
                                        "0", *["—"] * (1 + len(COST_STAGES))]) + " |")
    for method in [m for m in METHOD_ORDER if m in groups]:
        cs = groups[method]
        cost = [cell_cost(c, costs) for c in cs]
        row = [method, str(len(cs)), *(mean_sd([acc(c, k) for c in cs]) for k in CATEGORIES),
               mean_sd([100 * c["metrics"]["adapted"]["parse_failure_rate"] for c in cs]),
               mean_sd([c["metrics"]["adapted"]["perplexity"] for c in cs], ".2f"),
               mean_sd([c["metrics"]["ppl_ratio"] for c in cs], ".2f"),
               f"{trainable_count(cs[0]['hybrid']):,}",
               mean_sd([x["peak_rss_mib"] for x in cost if x["peak_rss_mib"] is not None], ".0f"),
               *(mean_sd([x[f"cpu_{s}"] for x in cost if x[f"cpu_{s}"] is not None], ".0f") for s in COST_STAGES)]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def ablation_table(groups: dict[str, list[dict]]) -> list[str]:
    head = ["hybrid.text_ratio", "seeds", "Avg", "IMG", "TXT", "NO", "ppl", "ppl / fp base", "val ppl after γ phase",
            "val ppl after LoRA"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for ratio in sorted((*TEXT_RATIOS, 1.0)):
        cs = groups.get("qslaw" if ratio == 1.0 else f"qslaw_text{ratio:g}", [])
        if not cs:
            continue
        lines.append("| " + " | ".join([
            f"{ratio:g}" + (" (released)" if ratio == 1.0 else ""), str(len(cs)),
            *(mean_sd([acc(c, k) for c in cs]) for k in ("Avg", "IMG", "TXT", "NO")),
            mean_sd([c["metrics"]["adapted"]["perplexity"] for c in cs], ".2f"),
            mean_sd([c["metrics"]["ppl_ratio"] for c in cs], ".2f"),
            mean_sd([c["hybrid"]["ppl_val_after_mix"] for c in cs if "ppl_val_after_mix" in c["hybrid"]], ".2f"),
            mean_sd([c["hybrid"]["ppl_val_after_tune"] for c in cs if "ppl_val_after_tune" in c["hybrid"]], ".2f"),
        ]) + " |")
    return lines


def verdict(diffs: list[float], a: str, b: str) -> str:
    """The rule fixed before looking: same sign on all three seeds and |mean| > 2 points."""
    if len(diffs) < MIN_SEEDS:
        return f"incomplete ({len(diffs)}/{MIN_SEEDS} seeds)"
    mean = statistics.fmean(diffs)
    same_sign = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
    if same_sign and abs(mean) > MARGIN:
        return f"**{a if mean > 0 else b} better**"
    return "not distinguishable"


def paired_table(groups: dict[str, list[dict]], metric: str = "Avg") -> list[str]:
    head = ["comparison (A − B)", "per world seed", "mean", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for a, b in COMPARISONS:
        left = {c["seed"]: acc(c, metric) for c in groups.get(a, [])}
        right = {c["seed"]: acc(c, metric) for c in groups.get(b, [])}
        seeds = sorted(set(left) & set(right))
        diffs = [left[s] - right[s] for s in seeds]
        per_seed = ", ".join(f"s{s}: {d:+.1f}" for s, d in zip(seeds, diffs, strict=True)) or "—"
        lines.append(f"| {a} − {b} | {per_seed} | {statistics.fmean(diffs):+.1f} | {verdict(diffs, a, b)} |"
                     if diffs else f"| {a} − {b} | — | — | {verdict(diffs, a, b)} |")
    return lines


def validation_table(cells: list[dict]) -> list[str]:
    head = ["variant (validation split)", "seed", "Avg", "IMG", "TXT", "NO", "ppl / fp base", "val ppl: start",
            "after γ phase", "after LoRA", "LoRA steps"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for c in sorted((c for c in cells if c["split"] == "validation"), key=lambda c: (c["seed"], c["variant"])):
        h = c["hybrid"]
        lines.append("| " + " | ".join([
            c["variant"], str(c["seed"]), *(f"{acc(c, k):.1f}" for k in ("Avg", "IMG", "TXT", "NO")),
            f"{c['metrics']['ppl_ratio']:.2f}",
            *(f"{h[k]:.2f}" if k in h else "—" for k in ("ppl_val_start", "ppl_val_after_mix", "ppl_val_after_tune")),
            str(h.get("steps_tune", "—"))]) + " |")
    return lines


def checks_table(cells: list[dict]) -> list[str]:
    head = ["cell", "RMS(γ − 1), largest block", "absorb: max logit change", "LoRA start: max logit change",
            "parse fail %"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for c in cells:
        h = c["hybrid"]
        if "gamma_dev_rms_max" not in h and c["variant"] != "full_ft":
            continue
        lines.append("| " + " | ".join([
            c["cell"], f"{h['gamma_dev_rms_max']:.4f}" if "gamma_dev_rms_max" in h else "—",
            f"{h['absorb_max_logit_diff']:.2e}" if "absorb_max_logit_diff" in h else "—",
            f"{h['tune_start_max_logit_diff']:.1e}" if "tune_start_max_logit_diff" in h else "—",
            f"{100 * c['metrics']['adapted']['parse_failure_rate']:.1f}"]) + " |")
    return lines


def chart(groups: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in (*METHOD_ORDER, *(f"qslaw_text{r:g}" for r in TEXT_RATIOS)) if m in groups]
    cats = ("Avg", "TXT", "IMG", "NO")
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.6))
    width = 0.8 / len(cats)
    for i, cat in enumerate(cats):
        vals = [[acc(c, cat) for c in groups[n]] for n in names]
        ax.bar([x + i * width for x in range(len(names))], [statistics.fmean(v) for v in vals], width,
               yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in vals], label=cat, capsize=2)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel("accuracy % (test), mean ± sd over world seeds")
    ax.legend(ncols=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(cells: list[dict], notes: str = "") -> str:
    groups = by_variant(cells)
    costs = stage_costs(cells)
    commits = sorted({c["commit"] for c in cells})
    seeds = sorted({c["seed"] for c in cells})
    parts = [
        "# The paper's table on the embedded benchmark",
        "",
        "Made by `python -m pipelines.paper_grid run` (resumable; one JSON per cell in `reports/paper_grid/`) "
        "and `python -m pipelines.paper_grid report --mlflow`. Accuracy in % on the test split, mean ± sd over "
        f"world seeds {seeds}; each world seed has its own world, base and fine-tunes. Cells: {len(cells)}. "
        f"Commit{'s' if len(commits) > 1 else ''}: {', '.join(c[:12] for c in commits)}"
        + (" — **cells of more than one commit**" if len(commits) > 1 else "") + ".",
        "",
        "## Methods",
        "",
        *method_table({k: v for k, v in groups.items() if k in METHOD_ORDER}, costs),
        "",
        "CPU s = user + sys of the stage's `dvc repro --single-item` process tree (the stage plus ~2 s of DVC); "
        "peak RSS = the largest of quantize … export. ppl = perplexity on the corpus test split.",
        "",
        "## Paired differences in Avg (rule fixed before looking: same sign on all three seeds and |mean| > 2)",
        "",
        *paired_table(groups),
        "",
        "## The hybrid text mix (`qslaw`, `hybrid.text_ratio`)",
        "",
        *ablation_table(groups),
        "",
        "## Recipe variants, validation split only",
        "",
        *validation_table(cells),
        "",
        "## Checks before believing a result",
        "",
        *checks_table(cells),
    ]
    if notes:
        parts += ["", notes.rstrip()]
    return "\n".join(parts) + "\n"


def report(results: Path, out: Path, mlflow: bool = False, notes: Path | None = None) -> str:
    cells = load_cells(results)
    if not cells:
        raise SystemExit(f"paper_report: no cells in {results}; run `python -m pipelines.paper_grid run` first")
    notes_path = notes or out.with_name(out.stem + "_notes.md")
    text = render(cells, notes_path.read_text() if notes_path.exists() else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(out)
    chart(by_variant(cells), out.with_suffix(".png"))
    if mlflow:
        log_run(cells, out)
    print(text)
    return text


def log_run(cells: list[dict], out: Path) -> None:
    import mlflow

    from pipelines.workspace import ROOT
    from steps.tracking import _experiment_id, tracking_uri

    mlflow.set_tracking_uri(tracking_uri(ROOT))
    experiment_id = _experiment_id(mlflow.MlflowClient(), ROOT)
    groups = by_variant(cells)
    with mlflow.start_run(experiment_id=experiment_id, run_name="paper_table", tags={"qslaw.kind": "report",
                                                        "git.commit": ",".join(sorted({c["commit"] for c in cells}))}):
        for variant, cs in groups.items():
            for cat in CATEGORIES:
                mlflow.log_metric(f"{variant}.{cat}", statistics.fmean(acc(c, cat) for c in cs))
            mlflow.log_metric(f"{variant}.ppl_ratio", statistics.fmean(c["metrics"]["ppl_ratio"] for c in cs))
            mlflow.log_metric(f"{variant}.seeds", len(cs))
        mlflow.log_artifact(str(out))
        mlflow.log_artifact(str(out.with_suffix(".png")))
        for c in cells:
            mlflow.log_dict(c, f"cells/{c['cell']}.json")
