"""Stage `prepare`: build or load the task data, captions and text corpus; render conversations; write shards.

Run alone::

    python -m steps.prepare artifacts/prepare

Writes ``task_{split}.parquet`` (ScienceQA columns + QCM-LEA conversation + evaluation prompt),
``captions.parquet``, ``text_{split}.parquet`` and ``manifest.json`` (counts and sha256 of every file),
all with images inside the parquet files; see :mod:`qslaw.data.prepare`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from qslaw.config import Params
from steps.common import main_guard, section
from steps.tracking import log_artifact, log_metrics, stage_run


def run(params: Params, out_dir: Path) -> dict:
    from qslaw.data import generate_world
    from qslaw.data.prepare import prepare_world

    with tempfile.TemporaryDirectory() as tmp:
        generate_world(params.world, Path(tmp) / "world")
        return prepare_world(Path(tmp) / "world", out_dir, params.prepare.eval_prompt)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare the task, caption and text tables.")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("prepare", section(params, "prepare", "world")):
            manifest = run(params, args.out_dir)
            log_metrics({f"rows_{name}": t["rows"] for name, t in manifest["tables"].items()})
            log_artifact(args.out_dir / "manifest.json")

    main_guard("prepare", body)


if __name__ == "__main__":
    main()
