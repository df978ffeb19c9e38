"""prefect.yaml end to end: a real Prefect server, process pool, `prefect deploy`, a worker, a deployment run.

The default tests run against the trivial DVC repo (a copy of pipelines/ and prefect.yaml committed into it),
so no ML stage runs; the slow one deploys a copy of the real repository and runs the whole smoke ML DAG,
then checks the MLflow lineage. Server and worker are started in their own sessions and stopped by pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reset_sigint() -> None:
    """Launcher for the worker: a SIGINT inherited as ignored would keep it from stopping on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=reset_sigint)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (its id is the child's pid), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"prefect server exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout} s:\n{log.read_text()}")


@pytest.fixture
def prefect_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A Prefect server on a free port with its home (and database) in a temp dir."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "QSLAW_"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1",
            "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2"}
    log = tmp_path / "server.log"
    server = start([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], tmp_path, env, log)
    try:
        wait_healthy(env["PREFECT_API_URL"], server, log)
        yield env
    finally:
        stop(server)


def prefect_cli(repo: Path, env: dict[str, str]) -> Callable[..., str]:
    def prefect(*args: str, timeout: float = 120, check: bool = True) -> str:
        done = subprocess.run([*PREFECT, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0 or not check, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout if done.returncode == 0 else ""

    return prefect


def copy_flow(repo_factory: Callable[..., Path], root: Path, *names: str) -> Path:
    """The trivial repo with this checkout's flow module (and prefect.yaml) committed into it."""
    return repo_factory(root, extra={n: (ROOT / n).read_text() for n in ("pipelines/__init__.py",
                                                                          "pipelines/adapt.py", *names)})


def deploy_and_run(repo: Path, env: dict[str, str], worker_log: Path, watch_timeout: int) -> str:
    """Create the pool, `prefect deploy` from ``repo``, start a worker, run qslaw/adapt with lora_r=4 and watch it.

    Returns the CLI output of the watched run; the worker is stopped by pid whatever happens.
    """
    prefect = prefect_cli(repo, env)
    prefect("work-pool", "create", "qslaw-pool", "--type", "process")
    assert "qslaw/adapt" in prefect("--no-prompt", "deploy", "--name", "adapt")
    worker = start([*PREFECT, "worker", "start", "--pool", "qslaw-pool"], repo, env, worker_log)
    try:
        return prefect("deployment", "run", "qslaw/adapt", "--param", 'overrides={"hybrid.lora_r": 4}',
                       "--watch", "--watch-timeout", str(watch_timeout), timeout=watch_timeout + 60)
    except AssertionError as e:
        raise AssertionError(f"{e}\nworker log:\n{worker_log.read_text()[-5000:]}") from None
    finally:
        stop(worker)


def test_deployment_runs_on_a_process_worker(
        tmp_path: Path, prefect_env: dict[str, str], repo_factory: Callable[..., Path],
        sh: Callable[..., str]) -> None:
    repo = copy_flow(repo_factory, tmp_path / "repo", "prefect.yaml")
    out = deploy_and_run(repo, prefect_env, tmp_path / "worker.log", watch_timeout=240)
    assert "Completed" in out or "COMPLETED" in out
    assert (repo / "out" / "export.txt").read_text().startswith("base")
    assert (repo / "out" / "hybrid.txt").read_text().endswith("hybrid r=4\n")
    assert "lora_r: 16" in (repo / "params.yaml").read_text()  # restored
    shown = json.loads(sh(repo, sys.executable, "-m", "dvc", "exp", "show", "--json"))
    (experiment,) = [e for c in shown for e in c.get("experiments") or ()]
    assert experiment["revs"][0]["data"]["params"]["params.yaml"]["data"]["hybrid"]["lora_r"] == 4


def test_served_flow_runs(tmp_path: Path, prefect_env: dict[str, str], repo_factory: Callable[..., Path]) -> None:
    """``python -m pipelines.adapt --serve`` ships the flow from __main__: its signature must still resolve."""
    repo = copy_flow(repo_factory, tmp_path / "repo")
    prefect = prefect_cli(repo, prefect_env)
    serve_log = tmp_path / "serve.log"
    served = start([sys.executable, "-m", "pipelines.adapt", "--serve"], repo, prefect_env, serve_log)
    try:
        deadline = time.monotonic() + 120
        while not prefect("deployment", "inspect", "qslaw/adapt", check=False):
            assert served.poll() is None and time.monotonic() < deadline, serve_log.read_text()
            time.sleep(1)
        out = prefect("deployment", "run", "qslaw/adapt", "--watch", "--watch-timeout", "240", timeout=300,
                      check=False)
    finally:
        stop(served)
    assert "Completed" in out, serve_log.read_text()
    assert (repo / "out" / "hybrid.txt").read_text().endswith("hybrid r=16\n")


@pytest.mark.slow
def test_deployment_runs_the_smoke_ml_dag_with_mlflow_lineage(tmp_path: Path, prefect_env: dict[str, str]) -> None:
    """The whole ML DAG (smoke profile) through `prefect deployment run qslaw/adapt` on a process worker.

    Slow (≈ 2.5 min: the smoke DAG itself is ≈ 130 s); the default suite covers the same deployment on the
    trivial DAG and the smoke DAG through `dvc repro`. Run with `pytest -m slow tests/pipelines`.
    """
    import mlflow
    from repo_copy import make_repo_copy, pipeline_env

    from pipelines.adapt import STAGES

    repo = make_repo_copy(tmp_path / "repo")
    env = {**prefect_env, **pipeline_env(repo)}  # the server's API and home; the venv, offline, MLflow in the copy
    out = deploy_and_run(repo, env, tmp_path / "worker.log", watch_timeout=900)
    assert "Completed" in out or "COMPLETED" in out
    assert (repo / "artifacts" / "export").is_dir() and (repo / "artifacts" / "evaluate" / "metrics.json").is_file()
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("qslaw").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("qslaw.kind") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("qslaw.kind") == "stage"]
    assert sorted(r.info.run_name for r in children) == sorted(STAGES)
    flow_run_ids = {r.data.tags.get("prefect.flow_run_id") for r in [parent, *children]}
    assert len(flow_run_ids) == 1 and None not in flow_run_ids
    by_stage = {r.info.run_name: r for r in children}
    assert by_stage["hybrid"].data.params["hybrid.lora_r"] == "4"
    assert "adapted_acc_Avg" in by_stage["evaluate"].data.metrics
