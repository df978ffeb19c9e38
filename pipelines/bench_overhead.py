"""What does running the DAG through Prefect cost on top of `dvc repro`? A benchmark that prints figures.

How it works
------------
Exports the committed tree (``git archive HEAD``) into two fresh temporary repositories, both with the same
params profile (smoke by default) as ``params.yaml``, then runs the whole DAG once with ``dvc repro`` in the
first and once with the ``qslaw`` flow (``pipelines.adapt``, ephemeral local Prefect API, one task per stage
through DVC, then ``dvc exp save``) in the second; then it runs both again with nothing changed. It prints
the four wall times and the overhead in seconds and percent. Runs are sequential, so they do not compete
for cores; each copy tracks into its own ``mlflow.db``. Run::

    python -m pipelines.bench_overhead [--profile profiles/smoke.yaml] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export_repo(dest: Path, profile: Path) -> Path:
    """The committed tree of this repository in ``dest``, ``profile`` as params.yaml, committed in a new git."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    shutil.copy2(profile, dest / "params.yaml")
    git = ["git", "-c", "user.name=qslaw-bench", "-c", "user.email=bench@qslaw.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "benchmark copy"], cwd=dest, check=True)
    return dest


def env_for(repo: Path) -> dict[str, str]:
    rendezvous = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSLAW_", "MLFLOW_", "PREFECT_API"))
           and k not in rendezvous}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}", PREFECT_HOME=str(repo / ".prefect"),
               HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", DO_NOT_TRACK="true")
    return env


def timed(cmd: list[str], repo: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env_for(repo), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed in {repo} ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", type=Path, default=ROOT / "profiles" / "smoke.yaml")
    parser.add_argument("--keep", action="store_true", help="keep the two temporary repositories")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="qslaw-bench-"))
    try:
        dvc_repo, flow_repo = export_repo(tmp / "dvc", args.profile), export_repo(tmp / "prefect", args.profile)
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
