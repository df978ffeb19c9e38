"""Several `benchmark_check` runs in one table: mean, spread and distance from chance per context and subject.

Why
---
One run settles the embedded benchmark's accuracies to within several points, no better: main's code over world
seeds 0-2 scored TXT 76.8-85.1 and IMG 39.9-52.4, and one base fine-tuned with two LoRA seeds IMG 54.2 and 49.4.
So whether a context clears issue #3's goal (30 points above chance) or a change helps is read from several runs:
world seeds (each its own world, base and fine-tune) or `benchmark_check --seed` replicates.

How it works
------------
Reads ``report.json`` from each ``--out`` directory of `benchmarks.benchmark_check`. For every category of
`qslaw.eval.scienceqa` (Avg, subjects, contexts, grade bands) it reports the fp-LoRA accuracy's mean, sample
standard deviation (0 for one run), minimum and maximum, and the untuned choice probe's mean; for the three
contexts also chance (mean of 1/#choices over that context's questions), and the mean and the worst run's
distance above chance. A context meets the goal when its mean distance is at least ``GOAL`` points. Run::

    python -m benchmarks.benchmark_summary runs/seed0 runs/seed1 runs/seed2 [--out runs/summary]

With ``--out`` it also writes ``summary.json`` and ``contexts.png`` (bars: mean ± sd by context next to chance
and chance + GOAL), atomically.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qslaw.eval.report import COLUMNS
from qslaw.fsutil import atomic_dir

CONTEXTS = ("IMG", "TXT", "NO")
GOAL = 30.0
"""Points above chance each context should reach (issue #3, §5)."""


def load_report(run_dir: Path) -> dict:
    """`run_dir`/report.json, checked for what the summary reads; ValueError naming the file and key."""
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (pass benchmark_check --out directories)")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    for key in ("fp_lora", "untuned_choice_probe"):
        if not isinstance(report.get(key), dict) or "accuracy" not in report[key]:
            raise ValueError(f"{path}: missing '{key}.accuracy'")
    for ctx in CONTEXTS:
        if f"chance_{ctx}" not in report["fp_lora"]:
            raise ValueError(f"{path}: missing 'fp_lora.chance_{ctx}'")
    return report


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def summarize(reports: list[dict], names: list[str]) -> dict:
    """Per-category figures over `reports` (one per run, named by `names`); see the module docstring."""
    if not reports:
        raise ValueError("benchmark_summary: no runs")
    columns = [c for c in COLUMNS if all(c in r["fp_lora"]["accuracy"] for r in reports)]
    by_category = {}
    for c in columns:
        tuned = [r["fp_lora"]["accuracy"][c] for r in reports]
        row = {"fp_lora": _spread(tuned),
               "untuned_probe_mean": statistics.fmean(r["untuned_choice_probe"]["accuracy"][c] for r in reports)}
        if c in CONTEXTS:
            chance = [r["fp_lora"][f"chance_{c}"] for r in reports]
            above = [t - ch for t, ch in zip(tuned, chance)]
            row.update(chance_mean=statistics.fmean(chance), above_chance_mean=statistics.fmean(above),
                       above_chance_worst=min(above), meets_goal=statistics.fmean(above) >= GOAL)
        by_category[c] = row
    return {"runs": names, "goal_points_above_chance": GOAL, "by_category": by_category,
            "per_run": {n: r["fp_lora"]["accuracy"] for n, r in zip(names, reports)}}


def table(summary: dict) -> str:
    """Markdown table of `summarize`'s figures, one row per category."""
    lines = [f"runs: {', '.join(summary['runs'])}",
             "| category | fp LoRA mean | sd | min-max | untuned probe | chance | above chance (mean / worst) |",
             "|---|---|---|---|---|---|---|"]
    for c, row in summary["by_category"].items():
        t = row["fp_lora"]
        ctx = (f"{row['chance_mean']:.1f} | {row['above_chance_mean']:+.1f} / {row['above_chance_worst']:+.1f}"
               f"{' (goal met)' if row['meets_goal'] else ''}" if "chance_mean" in row else " | ")
        lines.append(f"| {c} | {t['mean']:.1f} | {t['sd']:.1f} | {t['min']:.1f}-{t['max']:.1f} | "
                     f"{row['untuned_probe_mean']:.1f} | {ctx} |")
    return "\n".join(lines)


def context_chart(summary: dict, path: Path) -> Path:
    """Bars of mean fp-LoRA accuracy ± sd per context, chance and chance + GOAL marked; a PNG at `path`."""
    rows = [(c, summary["by_category"][c]) for c in CONTEXTS if c in summary["by_category"]]
    fig = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(rows))
    ax.bar(xs, [r["fp_lora"]["mean"] for _, r in rows], 0.6, yerr=[r["fp_lora"]["sd"] for _, r in rows],
           capsize=6, label=f"fp LoRA, mean ± sd of {len(summary['runs'])} runs")
    for x, (_, r) in zip(xs, rows):
        ax.hlines(r["chance_mean"], x - 0.35, x + 0.35, colors="grey", linestyles="dashed",
                  label="chance" if x == 0 else None)
        ax.hlines(r["chance_mean"] + GOAL, x - 0.35, x + 0.35, colors="red",
                  label=f"chance + {GOAL:.0f}" if x == 0 else None)
    ax.set_xticks(list(xs), [c for c, _ in rows])
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Embedded benchmark by context")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="benchmark_check --out directories")
    parser.add_argument("--out", type=Path, default=None, help="write summary.json and contexts.png here")
    args = parser.parse_args(argv)
    try:
        reports = [load_report(d) for d in args.runs]
    except ValueError as err:
        raise SystemExit(f"benchmark_summary: {err}") from None
    summary = summarize(reports, [str(d) for d in args.runs])
    print(table(summary))
    if args.out is not None:
        with atomic_dir(args.out) as tmp:
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
            context_chart(summary, tmp / "contexts.png")


if __name__ == "__main__":
    main()
