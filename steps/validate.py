"""Stage `validate`: Great Expectations suites over every prepared table; a failure stops the DAG.

Run alone::

    python -m steps.validate artifacts/prepare artifacts/validate

Validates the task splits, text splits and captions (columns, dtypes, answer range, images decode and fit,
unique ids, no train/test leakage, valid text; answer-position balance warns only), builds the HTML Data
Docs and writes ``report.json``. On failure it prints a summary naming each failing expectation with example
rows, exits non-zero and writes nothing, so no later stage runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir
from steps.common import StageError, main_guard, section
from steps.tracking import log_artifact, log_artifacts, log_metrics, stage_run

KINDS = {**{f"task_{s}": "task" for s in ("train", "validation", "test")},
         **{f"text_{s}": "text" for s in ("train", "validation", "test")}, "captions": "captions"}


def run(params: Params, prepare_dir: Path, out_dir: Path) -> dict:
    import pandas as pd

    from qslaw.data.validate import ValidationSpec, summarize, validate_tables

    v = params.validate
    spec = ValidationSpec(max_image_side=v.max_image_side, max_image_bytes=v.max_image_bytes,
                          balance_tolerance=v.balance_tolerance)
    missing = [name for name in KINDS if not (prepare_dir / f"{name}.parquet").exists()]
    if missing:
        raise StageError(f"{prepare_dir}: missing table(s) {', '.join(missing)}")
    tables = {name: pd.read_parquet(prepare_dir / f"{name}.parquet") for name in KINDS}
    with tempfile.TemporaryDirectory() as docs:
        report = validate_tables(tables, KINDS, spec, Path(docs) / "data_docs")
        print(summarize(report))
        if not report["success"]:
            raise StageError("validation failed; see the summary above")
        with atomic_dir(out_dir) as tmp:
            (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str))
            if (Path(docs) / "data_docs").exists():
                import shutil

                shutil.copytree(Path(docs) / "data_docs", tmp / "data_docs")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Validate the prepared tables with Great Expectations.")
    parser.add_argument("prepare_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("validate", section(params, "validate")):
            report = run(params, args.prepare_dir, args.out_dir)
            log_metrics({"tables": len(report["tables"]), "warnings": len(report.get("warnings", []))})
            log_artifact(args.out_dir / "report.json")
            if (args.out_dir / "data_docs").exists():
                log_artifacts(args.out_dir / "data_docs", "data_docs")

    main_guard("validate", body)


if __name__ == "__main__":
    main()
