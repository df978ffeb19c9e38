"""Prefect flow ``qslaw`` (deployment ``adapt``): the DVC stages as Prefect tasks, no logic of its own.

Run it::

    python -m pipelines.adapt                          # one local run (a temporary Prefect server if none set)
    python -m pipelines.adapt --set hybrid.lora_r=8    # with params.yaml overrides (dotted keys)
    python -m pipelines.adapt --serve                  # serve deployment qslaw/adapt from this process
    prefect --no-prompt deploy --name adapt            # or deploy prefect.yaml to work pool qslaw-pool,
    prefect worker start --pool qslaw-pool             # run a worker,
    prefect deployment run qslaw/adapt --param overrides='{"hybrid.lora_r": 8}'   # and trigger it

Each stage task runs ``dvc repro --single-item <stage>`` in the repo, so DVC decides whether the stage
reruns (unchanged inputs: skipped). The stage subprocess gets ``QSLAW_PREFECT_FLOW_RUN_ID`` (MLflow lineage)
and this interpreter's folder first on PATH, so ``python -m steps.<stage>`` uses the same environment.
Overrides are validated against params.yaml, written into it for the run (comments kept), and recorded
with the results by ``dvc exp save``; params.yaml is restored afterwards. dvc.lock and the outs keep this
run's results, so a later plain ``dvc repro`` reruns the stages whose params were overridden.
"""

# No `from __future__ import annotations` here: `--serve` ships the flow from __main__ by value, and Prefect
# then could not resolve a string annotation such as "Scalar" when it validates the flow's parameters.
import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

STAGES = ("base", "prepare", "validate", "quantize", "warmup", "hybrid", "evaluate", "export")
PROMOTE = ("artifacts/export", "artifacts/evaluate")
"""Arguments of ``steps.promote``: the export and evaluate outs of dvc.yaml."""
STAGE_TIMEOUT_S = 24 * 3600
Scalar = str | int | float | bool


def default_repo() -> Path:
    """The repo holding this module when it has a dvc.yaml, else the working directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "dvc.yaml").exists() else Path.cwd()


def experiment_name(run_name: str, run_id: str) -> str:
    """A git-ref-safe DVC experiment name: the flow run's name plus the start of its id."""
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', run_name).strip('-') or 'qslaw'}-{run_id[:8]}"


def stage_env(flow_run_id: str) -> dict[str, str]:
    env = dict(os.environ, QSLAW_PREFECT_FLOW_RUN_ID=flow_run_id)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def run_logged(cmd: list[str], cwd: str, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run ``cmd``, streaming its output to the run logger; kill its process group if interrupted."""
    logger, lines = get_run_logger(), []
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)

    def pump() -> None:
        for line in proc.stdout:
            if line := line.rstrip():
                lines.append(line)
                logger.info(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = None
        while rc is None:  # short waits, so that Prefect's timeout or a signal can interrupt us
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = proc.wait(timeout=1.0)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join()
    return rc, lines


def check(cmd: list[str], rc: int, lines: list[str]) -> None:
    if rc != 0:
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed with exit status {rc}:\n{tail}")


@task(cache_policy=NO_CACHE, timeout_seconds=60)
def apply_overrides(repo: str, overrides: dict[str, Scalar]) -> None:
    """Write dotted-key overrides into params.yaml, after checking every key exists there."""
    if not overrides:
        return
    from ruamel.yaml import YAML  # round-trip: comments and key order survive

    yaml, path = YAML(), Path(repo) / "params.yaml"
    params = yaml.load(path)
    for key, value in overrides.items():
        *sections, leaf = key.split(".")
        node = params
        for name in sections:
            node = node.get(name) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping) or leaf not in node:
            raise ValueError(f"override {key!r}: no such key in {path}")
        if isinstance(node[leaf], Mapping | list):
            raise ValueError(f"override {key!r}: names a section or list in {path}, not a value")
        node[leaf] = value
    yaml.dump(params, path)


@task(task_run_name="{stage}", retries=1, retry_delay_seconds=10, timeout_seconds=STAGE_TIMEOUT_S,
      cache_policy=NO_CACHE)
def repro(stage: str, repo: str, flow_run_id: str) -> bool:
    """``dvc repro --single-item <stage>``; True when DVC ran the stage, False when it was up to date."""
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
    rc, lines = run_logged(cmd, repo, stage_env(flow_run_id))
    check(cmd, rc, lines)
    return not any(f"Stage '{stage}' didn't change" in line for line in lines)


@task(retries=1, retry_delay_seconds=5, timeout_seconds=600, cache_policy=NO_CACHE)
def save_experiment(repo: str, name: str, flow_run_id: str) -> str:
    """Record params, dvc.lock and outs of the workspace as DVC experiment ``name``."""
    cmd = [sys.executable, "-m", "dvc", "exp", "save", "--force", "--name", name]
    check(cmd, *run_logged(cmd, repo, stage_env(flow_run_id)))
    return name


@task(timeout_seconds=600, cache_policy=NO_CACHE)
def promote(repo: str, flow_run_id: str) -> str:
    """Register the export in the MLflow registry and apply the promotion gate (``steps.promote``)."""
    if not (Path(repo) / PROMOTE[0] / "registry.json").exists():
        get_run_logger().info("no exported bundle with registry.json in %s: nothing to register", PROMOTE[0])
        return "skipped"
    cmd = [sys.executable, "-m", "steps.promote", *PROMOTE]
    rc, lines = run_logged(cmd, repo, stage_env(flow_run_id))
    check(cmd, rc, lines)
    return lines[-1] if lines else ""


@flow(name="qslaw")
def adapt_flow(overrides: dict[str, Scalar] | None = None, repo: str | None = None) -> dict[str, object]:
    """QSLAW adaptation: every DVC stage in DAG order, the run saved as a DVC experiment, then the export
    registered and gated in the MLflow registry."""
    root = str(Path(repo).resolve() if repo else default_repo())
    params_file = Path(root) / "params.yaml"
    original = params_file.read_bytes()
    try:
        apply_overrides(root, overrides or {})
        ran = [stage for stage in STAGES if repro(stage, root, flow_run.id)]
        experiment = save_experiment(root, experiment_name(flow_run.name, flow_run.id), flow_run.id)
        promotion = promote(root, flow_run.id)
    finally:
        params_file.write_bytes(original)  # plain code, not a task: it must run even when the flow is cancelled
    return {"experiment": experiment, "ran": ran, "promotion": promotion}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the qslaw flow once, or serve it as deployment 'adapt'.")
    parser.add_argument("--serve", action="store_true", help="serve deployment qslaw/adapt instead of running")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="params.yaml override, dotted key (repeatable); VALUE is read as YAML")
    parser.add_argument("--repo", help="repo to run in (default: the one holding this module)")
    args = parser.parse_args(argv)
    if args.serve:
        adapt_flow.serve(name="adapt")
        return
    import yaml

    overrides = {key: yaml.safe_load(value) for key, _, value in (o.partition("=") for o in args.overrides)}
    print(adapt_flow(overrides=overrides, repo=args.repo))


if __name__ == "__main__":
    main()
