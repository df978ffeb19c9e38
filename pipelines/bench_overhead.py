"""What does running the DAG through Prefect cost on top of `dvc repro`? A benchmark that prints figures.

How it works
------------
Copies the working tree's pipeline files into two fresh temporary repositories (``pipelines.workspace``),
both with the same params profile (smoke by default) as ``params.yaml``. Runs the whole DAG once with
``dvc repro`` in the first and once with the ``qslaw`` flow in the second (``pipelines.adapt``: a temporary
local Prefect API, one task per stage through DVC, then ``dvc exp save``), then both again with nothing
changed, and prints the four wall times and the overhead in seconds and percent. Runs are sequential, so
they do not compete for cores; each copy tracks into its own ``mlflow.db``. Run::

    python -m pipelines.bench_overhead [--profile profiles/smoke.yaml] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.workspace import make_repo_copy, pipeline_env


def timed(cmd: list[str], repo: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env={**pipeline_env(repo), "PREFECT_HOME": str(repo / ".prefect")},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed in {repo} ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="profiles/smoke.yaml", help="relative to the repository root")
    parser.add_argument("--keep", action="store_true", help="keep the two temporary repositories")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="qslaw-bench-"))
    try:
        dvc_repo = make_repo_copy(tmp / "dvc", args.profile)
        flow_repo = make_repo_copy(tmp / "prefect", args.profile)
        dvc_cmd = [sys.executable, "-m", "dvc", "repro"]
        flow_cmd = [sys.executable, "-m", "pipelines.adapt", "--repo", str(flow_repo)]
        figures = {"dvc_repro_s": timed(dvc_cmd, dvc_repo), "prefect_flow_s": timed(flow_cmd, flow_repo),
                   "dvc_repro_again_s": timed(dvc_cmd, dvc_repo), "prefect_flow_again_s": timed(flow_cmd, flow_repo)}
        figures["overhead_s"] = figures["prefect_flow_s"] - figures["dvc_repro_s"]
        figures["overhead_pct"] = 100 * figures["overhead_s"] / figures["dvc_repro_s"]
        figures["overhead_again_s"] = figures["prefect_flow_again_s"] - figures["dvc_repro_again_s"]
        print(json.dumps({"profile": str(args.profile), **{k: round(v, 1) for k, v in figures.items()}}, indent=1))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
