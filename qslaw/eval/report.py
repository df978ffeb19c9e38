"""Comparison artefacts for ScienceQA results: a grouped per-category bar chart and accuracy deltas.

How it works
------------
Both take :func:`qslaw.eval.scienceqa.score` outputs (or just their ``"accuracy"`` maps) keyed by a model
label, e.g. ``{"adapted": ..., "fp base": ...}``. Columns are ``Avg`` followed by ``CATEGORIES`` in the paper's
order, keeping only those some model has rows for.

:func:`category_bar_chart` draws one group of bars per category and one bar per model (a missing category
is left blank, not drawn as 0), with accuracy in percent on the y axis, and writes a PNG. It renders on an
explicit Agg canvas (``matplotlib.figure.Figure`` + ``FigureCanvasAgg``), never through pyplot, so it needs
no display and touches no global backend state.

:func:`delta_table` is ``adapted - base`` in percentage points for each category both have.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qslaw.eval.scienceqa import CATEGORIES

COLUMNS = ("Avg", *CATEGORIES)


def accuracy_of(metrics: Mapping) -> Mapping[str, float]:
    """The per-category accuracy map of a `score()` output (or the map itself)."""
    return metrics.get("accuracy", metrics)


def present_columns(accuracies: list[Mapping[str, float]]) -> list[str]:
    """`COLUMNS` that at least one of `accuracies` reports, in order."""
    return [c for c in COLUMNS if any(c in acc for acc in accuracies)]


def category_bar_chart(metrics_by_model: dict[str, dict], path: Path) -> Path:
    """Grouped bars of per-category accuracy, one colour per model, saved as a PNG at `path`."""
    accs = {name: accuracy_of(m) for name, m in metrics_by_model.items()}
    columns = present_columns(list(accs.values()))
    fig = Figure(figsize=(2 + 0.4 * len(columns) * (len(accs) + 1), 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(accs))
    for k, (name, acc) in enumerate(accs.items()):
        xs = [i + (k - (len(accs) - 1) / 2) * width for i, c in enumerate(columns) if c in acc]
        ax.bar(xs, [acc[c] for c in columns if c in acc], width, label=name)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("ScienceQA accuracy by category")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def delta_table(adapted: dict, base: dict) -> dict:
    """Accuracy of `adapted` minus `base`, in percentage points, per category both report."""
    a, b = accuracy_of(adapted), accuracy_of(base)
    return {c: a[c] - b[c] for c in present_columns([a, b]) if c in a and c in b}
