"""The paper's table on the embedded benchmark: every method × three world draws, resumable across sessions.

Run (hours on 2 cores; stop it any time, the next call picks up where it stopped)::

    python -m pipelines.paper_grid run [--seeds 0 1 2] [--only table ablation validation] [--max-cells N]
    python -m pipelines.paper_grid report [--mlflow]          # pipelines.paper_report: reports/paper_table.md

How it works
------------
A *cell* is one world seed × one *variant* (a method, or ``qslaw`` with other hybrid params) × one
evaluation split: ``table`` cells are every method on the test split, ``ablation`` cells are ``qslaw`` at
``hybrid.text_ratio`` 0, 0.5 and 2 (1 is ``qslaw`` itself) on test, and ``validation`` cells are the
recipe variants measured on the validation split only (choices are made there, never on test).

The grid is pinned to one git commit, recorded in ``<results>/grid.json`` the first time it runs. Each world
seed gets a persistent workspace ``<workspace>/<commit12>/seed<s>``: a ``git clone --shared`` of this
repository checked out at that commit, its ``params.yaml`` = the profile with ``world.seed`` and the cell's
overrides, and one DVC cache shared by every seed's workspace (``dvc cache dir --local``). A cell runs the
DAG stage by stage (``dvc repro --single-item``), so DVC restores what an earlier cell already computed
(base, prepare and validate once per seed; ``quantize`` and ``warmup`` once for all ``qslaw`` variants),
and each stage's CPU time (user + sys) and peak RSS come from ``os.wait4`` on its ``dvc`` process (the
stage and DVC's own start-up, ~2 s). The lineage the stages log to the workspace's MLflow store is the
pinned commit plus the params diff.

A finished cell writes ``<results>/<cell>.json`` (commit, params sha256, overrides, every metric of the
evaluate stage, the hybrid report's checks, trainable parameters, per-stage costs) through a temp file
and a rename; a cell whose file exists is never rerun. Results of another commit are never mixed in
silently: ``run`` refuses a ``--commit`` other than the one ``grid.json`` pins (use another ``--results``
folder for a new grid), and the report names the commit of every cell.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.workspace import ROOT, pipeline_env

STAGES = ("base", "prepare", "validate", "quantize", "warmup", "hybrid", "evaluate", "export")
METHOD_ORDER = ("qslaw", "qslaw_no_warmup", "lwc_lora", "rtn_lora", "qlora", "lora_fp", "full_ft")
TEXT_RATIOS = (0.0, 0.5, 2.0)
TUNE_TEXT_RATIOS = (0.25, 1.0)


@dataclass(frozen=True)
class Cell:
    """One world seed × variant × split, and the params it overrides."""

    seed: int
    variant: str
    split: str
    group: str
    overrides: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"seed{self.seed}-{self.variant}-{self.split}"


def cells(seeds: list[int], groups: list[str], validation_seeds: list[int]) -> list[Cell]:
    """The grid in run order: per seed, the qslaw variants first (they share quantize and warmup)."""
    out = []
    for s in seeds:
        ablation = [Cell(s, f"qslaw_text{r:g}", "test", "ablation", {"hybrid.text_ratio": r}) for r in TEXT_RATIOS]
        table = [Cell(s, m, "test", "table", {"train.method": m}) for m in METHOD_ORDER]
        validation = [Cell(s, "qslaw", "validation", "validation", {"evaluate.split": "validation"})] + [
            Cell(s, f"qslaw_tunetext{r:g}", "validation", "validation",
                 {"evaluate.split": "validation", "hybrid.tune_text_ratio": r}) for r in TUNE_TEXT_RATIOS]
        mine = table[:1] + ablation + validation + table[1:]
        out += [c for c in mine if c.group in groups and (c.group != "validation" or s in validation_seeds)]
    return out


def set_key(raw: dict, dotted: str, value: object) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node[p]
    if leaf not in node:
        raise KeyError(f"{dotted}: not a params key")
    node[leaf] = value


def cell_params(profile: dict, cell: Cell) -> dict:
    raw = json.loads(json.dumps(profile))
    set_key(raw, "world.seed", cell.seed)
    for key, value in cell.overrides.items():
        set_key(raw, key, value)
    return raw


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def workspace(root: Path, commit: str, seed: int) -> Path:
    """The seed's persistent clone at ``commit``, its DVC cache shared with the other seeds'."""
    ws = root / commit[:12] / f"seed{seed}"
    if not (ws / ".git").exists():
        tmp = ws.with_name(ws.name + ".tmp")
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "-q", "--shared", "--no-checkout", str(ROOT), str(tmp))
        git("checkout", "-q", "--detach", commit, cwd=tmp)
        dvc(tmp, "cache", "dir", "--local", str((root / commit[:12] / "dvc-cache").resolve()))
        tmp.rename(ws)
    return ws


def dvc(repo: Path, *args: str, log: Path | None = None) -> dict:
    """Run ``dvc`` in ``repo``; wall time, CPU time and peak RSS of its process tree, and its output."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=repo, env=pipeline_env(repo),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if log:
        with open(log, "a") as f:
            f.write(f"$ dvc {' '.join(args)}\n{text}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed in {repo} (exit {proc.returncode}):\n{text[-3000:]}")
    return {"wall_s": time.perf_counter() - start, "cpu_user_s": usage.ru_utime, "cpu_sys_s": usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "output": text}


def stage_hash(ws: Path, stage: str) -> str:
    """A digest of the stage's dvc.lock entry (its deps, params and outs): equal entries = the same result."""
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"][stage]
    return hashlib.sha256(json.dumps(lock, sort_keys=True).encode()).hexdigest()[:16]


def run_cell(ws: Path, cell: Cell, profile: dict, log: Path) -> dict:
    """Write the cell's params, run the DAG stage by stage, collect the figures."""
    params = cell_params(profile, cell)
    text = yaml.safe_dump(params, sort_keys=False)
    (ws / "params.yaml").write_text(text)
    stages, start = {}, time.perf_counter()
    for stage in STAGES:
        cost = dvc(ws, "repro", "--single-item", stage, log=log)
        output = cost.pop("output")
        stages[stage] = {**cost, "ran": f"Running stage '{stage}'" in output, "lock": stage_hash(ws, stage)}
    metrics = json.loads((ws / "artifacts" / "evaluate" / "metrics.json").read_text())
    hybrid = json.loads((ws / "artifacts" / "hybrid" / "report.json").read_text())
    return {"cell": cell.name, "seed": cell.seed, "variant": cell.variant, "split": cell.split,
            "group": cell.group, "overrides": cell.overrides, "commit": git("rev-parse", "HEAD", cwd=ws),
            "params_sha256": hashlib.sha256(text.encode()).hexdigest(), "params": params,
            "metrics": metrics, "hybrid": hybrid, "stages": stages, "dag_wall_s": time.perf_counter() - start,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.rename(path)


def pinned_commit(results: Path, asked: str | None) -> str:
    """The grid's commit: ``grid.json``'s, or (first run) ``asked``/HEAD resolved and recorded."""
    manifest = results / "grid.json"
    wanted = git("rev-parse", asked) if asked else None
    if manifest.exists():
        pinned = json.loads(manifest.read_text())["commit"]
        if wanted and wanted != pinned:
            raise SystemExit(f"paper_grid: {results} holds cells of commit {pinned[:12]}, not {wanted[:12]}; "
                             "pass that commit or another --results folder")
        return pinned
    commit = wanted or git("rev-parse", "HEAD")
    results.mkdir(parents=True, exist_ok=True)
    write_json(manifest, {"commit": commit, "created": datetime.datetime.now(datetime.UTC).isoformat()})
    return commit


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    commit = pinned_commit(args.results, args.commit)
    profile = yaml.safe_load(git("show", f"{commit}:{args.profile}"))
    todo = [c for c in cells(args.seeds, args.only, args.validation_seeds)
            if not (args.results / f"{c.name}.json").exists()][: args.max_cells or None]
    print(f"paper_grid: commit {commit[:12]}, {len(todo)} cell(s) to run", flush=True)
    for cell in tqdm(todo, desc="paper grid", unit="cell"):
        ws = workspace(args.workspace, commit, cell.seed)
        result = run_cell(ws, cell, profile, args.workspace / commit[:12] / "dvc.log")
        write_json(args.results / f"{cell.name}.json", result)
        avg = result["metrics"]["adapted"]["accuracy"]["Avg"]
        tqdm.write(f"{cell.name}: Avg {avg:.1f}, {result['dag_wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the cells that have no result yet")
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--only", nargs="+", choices=("table", "ablation", "validation"),
                   default=["table", "ablation", "validation"])
    r.add_argument("--validation-seeds", nargs="+", type=int, default=[0])
    r.add_argument("--max-cells", type=int, default=0, help="stop after this many cells (0 = all)")
    r.add_argument("--commit", help="pin a new grid to this commit (default HEAD; later runs use grid.json's)")
    r.add_argument("--profile", default="params.yaml", help="params file, read at the pinned commit")
    r.add_argument("--workspace", type=Path, default=ROOT / "runs" / "paper")
    r.add_argument("--results", type=Path, default=ROOT / "reports" / "paper_grid")
    rep = sub.add_parser("report", help="reports/paper_table.md from the finished cells")
    rep.add_argument("--results", type=Path, default=ROOT / "reports" / "paper_grid")
    rep.add_argument("--out", type=Path, default=ROOT / "reports" / "paper_table.md")
    rep.add_argument("--mlflow", action="store_true", help="also log the comparison as an MLflow run")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args)
    else:
        from pipelines.paper_report import report

        report(args.results, args.out, args.mlflow)


if __name__ == "__main__":
    main()
