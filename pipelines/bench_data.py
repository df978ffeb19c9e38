"""Benchmark: prepare + validate time for the embedded default and for a large ScienceQA-shaped table (not a test).

How it works
------------
1. The embedded default: ``steps.prepare.run`` then ``steps.validate.run`` with this checkout's params.
2. A ScienceQA-shaped source of ``--rows`` task problems (default 20,000 train + 10 % validation and test):
   the world generator writes it in the hub's parquet layout into a temporary directory (not timed), then
   the same two stages run with ``prepare.task_source`` pointing at it — the real-data path, through
   ``datasets``, rendering, GX suites, leakage and balance checks and Data Docs.

Prints a markdown table of wall seconds per stage. Run::

    python -m pipelines.bench_data [--rows 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

from pipelines.workspace import ROOT


def timed_stages(params: object, work: Path) -> dict[str, float]:
    from steps import prepare, validate

    start = time.perf_counter()
    manifest = prepare.run(params, work / "prepare")
    mid = time.perf_counter()
    validate.run(params, work / "prepare", work / "validate")
    end = time.perf_counter()
    return {"prepare_s": mid - start, "validate_s": end - mid,
            "task_train_rows": manifest["tables"]["task_train"]["rows"]}


def main(argv: list[str] | None = None) -> None:
    from qslaw.config import load_params
    from qslaw.embedded.world import generate_world
    from qslaw.embedded.world.generate import world_spec

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="train problems of the large table")
    args = parser.parse_args(argv)
    params = load_params(ROOT / "params.yaml")
    rows = []
    with tempfile.TemporaryDirectory(prefix="qslaw-bench-data-") as tmp:
        tmp = Path(tmp)
        rows.append({"source": "embedded default", **timed_stages(params, tmp / "embedded")})
        world = world_spec(params)
        held_out = max(world.n_test, args.rows // 10)
        big = dataclasses.replace(world, n_train=args.rows, n_validation=held_out, n_test=held_out)
        generate_world(big, tmp / "world")
        hub = tmp / "ScienceQA" / "data"
        hub.mkdir(parents=True)
        for split in ("train", "validation", "test"):
            shutil.copy(tmp / "world" / "task" / f"{split}.parquet", hub / f"{split}-00000-of-00001.parquet")
        large = dataclasses.replace(params, prepare=dataclasses.replace(params.prepare,
                                                                        task_source=str(hub.parent)))
        label = f"ScienceQA-shaped parquet, {args.rows:,} train rows"
        rows.append({"source": label, **timed_stages(large, tmp / "large")})
    print("| source | task_train rows | prepare s | validate s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['source']} | {r['task_train_rows']:,} | {r['prepare_s']:.1f} | {r['validate_s']:.1f} |")


if __name__ == "__main__":
    main()
