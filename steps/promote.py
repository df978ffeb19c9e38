"""Register the exported model in the MLflow model registry and promote it through the metric gate.

Run after the pipeline (the Prefect flow runs it as its last task)::

    python -m steps.promote artifacts/export artifacts/evaluate

Creates a new version of the registered model named in ``registry.json`` (``export.model_name``, default
``qslaw-<base>``) whose source is the export stage's logged artifacts, with the model card as description
and, as tags, the lineage of the export run (git commit, data and params hashes, base model, packages), the
method and the gate's inputs (Avg accuracy, perplexity, fp-base perplexity). Then
:func:`qslaw.eval.gate.decide` compares it with the version holding alias ``champion``: it takes
``champion`` only if Avg ≥ champion's + ``promote.margin`` and perplexity ≤ fp base ×
``promote.ppl_bound``; otherwise it takes ``challenger`` and the tag ``qslaw.gate`` (and the printed
message) states which condition failed. An export already registered (same export run) is reported, not
registered twice. Not promoting is a normal outcome (exit 0); a missing export,
tracking switched off or a registry error exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qslaw.config import Params
from steps.common import StageError, main_guard
from steps.tracking import repo_root, tracking_uri


def candidate_metrics(evaluate_dir: Path) -> dict[str, float]:
    metrics = json.loads((evaluate_dir / "metrics.json").read_text())
    return {"acc_Avg": metrics["adapted"]["accuracy"]["Avg"], "perplexity": metrics["adapted"]["perplexity"],
            "fp_base_perplexity": metrics["fp_base"]["perplexity"]}


def run(params: Params, export_dir: Path, evaluate_dir: Path, client: object | None = None) -> dict:
    """Register and gate; returns the version, the alias it got and the gate's message."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from qslaw.eval.gate import decide

    info_path = export_dir / "registry.json"
    if not info_path.exists():
        raise StageError(f"{info_path} is missing; run the export stage first")
    info = json.loads(info_path.read_text())
    if not info.get("run_id"):
        raise StageError(f"{info_path}: the export stage ran with tracking off (QSLAW_TRACKING); rerun it tracked")
    client = client or mlflow.MlflowClient(tracking_uri(repo_root()))
    name, metrics = info["model_name"], candidate_metrics(evaluate_dir)
    lineage = json.loads((export_dir / "lineage.json").read_text())
    card = (export_dir / "model_card.md").read_text()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"QSLAW-adapted models of {name.removeprefix('qslaw-')}")
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{info['run_id']}'")
    if existing:  # this export is registered already (e.g. the flow ran again with nothing changed)
        v = existing[0]
        return {"model": name, "version": v.version, "alias": ",".join(v.aliases) or "none",
                "message": f"already registered; {v.tags.get('qslaw.gate', '')}", "previous_champion": None}
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champion = None
    tags = {**{k: str(v) for k, v in lineage.items()}, "qslaw.method": info.get("method", ""),
            **{f"qslaw.{k}": repr(v) for k, v in metrics.items()}}
    version = client.create_model_version(name, source=f"{info['artifact_uri']}/export", run_id=info["run_id"],
                                          tags=tags, description=card)
    champion_avg = float(champion.tags["qslaw.acc_Avg"]) if champion else None
    decision = decide(metrics["acc_Avg"], metrics["perplexity"], metrics["fp_base_perplexity"], champion_avg,
                      params.promote.margin, params.promote.ppl_bound)
    client.set_registered_model_alias(name, decision.alias, version.version)
    client.set_model_version_tag(name, version.version, "qslaw.gate", decision.message)
    return {"model": name, "version": version.version, "alias": decision.alias, "message": decision.message,
            "previous_champion": champion.version if champion else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register the exported model and apply the promotion gate.")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("evaluate_dir", type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        result = run(params, args.export_dir, args.evaluate_dir)
        print(f"{result['model']} version {result['version']}: {result['message']}")

    main_guard("promote", body)


if __name__ == "__main__":
    main()
