"""Print the evaluate stage's metrics as a table: ``python -m steps.summary artifacts/evaluate/metrics.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(metrics: dict) -> str:
    models = [m for m in ("adapted", "fp_base") if m in metrics]
    cats = list(metrics[models[0]]["accuracy"])
    lines = ["| model | " + " | ".join(cats) + " | parse fail | ppl |", "|---" * (len(cats) + 3) + "|"]
    for name in models:
        m = metrics[name]
        lines.append(f"| {name} | " + " | ".join(f"{m['accuracy'][c]:.1f}" for c in cats)
                     + f" | {m['parse_failure_rate']:.3f} | {m['perplexity']:.2f} |")
    lines.append(f"\nperplexity ratio adapted / fp base: {metrics['ppl_ratio']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    path = Path((argv or sys.argv[1:] or ["artifacts/evaluate/metrics.json"])[0])
    if not path.exists():
        raise SystemExit(f"{path}: no metrics yet; run `dvc repro` first")
    print(table(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
