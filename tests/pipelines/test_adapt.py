"""The qslaw flow against a trivial DVC repo on a temporary Prefect server: stages, skips, overrides."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from pipelines.adapt import STAGES, adapt_flow, experiment_name


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server (sqlite in a temp dir) for the module, never the user's API."""
    with temporary_settings(restore_defaults={PREFECT_API_URL}), prefect_test_harness(server_startup_timeout=60):
        yield


def outs(repo: Path) -> dict[str, tuple[float, str]]:
    return {p.stem: (p.stat().st_mtime_ns, p.read_text()) for p in sorted((repo / "out").glob("*.txt"))}


def experiments(repo: Path, sh: Callable[..., str]) -> dict[str, dict]:
    """DVC experiment name → params.yaml values, from ``dvc exp show --json``."""
    shown = json.loads(sh(repo, sys.executable, "-m", "dvc", "exp", "show", "--json"))
    return {exp["name"]: rev["data"]["params"]["params.yaml"]["data"]
            for commit in shown for exp in commit.get("experiments") or () for rev in exp["revs"]}


def test_flow_runs_stages_skips_unchanged_ones_and_records_overrides(dvc_repo: Path, sh: Callable[..., str]) -> None:
    first = adapt_flow(repo=str(dvc_repo))
    assert first["ran"] == list(STAGES)
    produced = outs(dvc_repo)
    assert list(produced) == sorted(STAGES)
    assert produced["hybrid"][1].endswith("hybrid r=16\n")
    assert " flow=" in produced["export"][1] and not produced["export"][1].endswith("flow=\n")

    second = adapt_flow(repo=str(dvc_repo))
    assert second["ran"] == [] and outs(dvc_repo) == produced  # DVC skipped every stage: same mtimes

    before = (dvc_repo / "params.yaml").read_bytes()
    third = adapt_flow(overrides={"hybrid.lora_r": 8, "export.gate": 0.75}, repo=str(dvc_repo))
    assert third["ran"] == ["hybrid", "evaluate", "export"]  # export.gate is not a param of any stage
    assert outs(dvc_repo)["hybrid"][1].endswith("hybrid r=8\n")
    assert (dvc_repo / "params.yaml").read_bytes() == before

    recorded = experiments(dvc_repo, sh)
    assert recorded[first["experiment"]] == recorded[second["experiment"]] == yaml.safe_load(before)
    assert recorded[third["experiment"]]["hybrid"] == {"lora_r": 8, "lr": 0.0002}
    assert recorded[third["experiment"]]["export"] == {"gate": 0.75}
    refs = sh(dvc_repo, "git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    ref = next(r for r in refs if r.endswith("/" + third["experiment"]))
    assert "# LoRA rank" in sh(dvc_repo, "git", "show", f"{ref}:params.yaml")  # overrides keep comments


@pytest.mark.parametrize("key", ["hybrid.no_such_key", "nosection.lora_r", "hybrid"])
def test_unknown_override_fails_naming_the_key(tmp_path: Path, params_text: str, key: str) -> None:
    (tmp_path / "params.yaml").write_text(params_text)  # fails before any stage: no DVC repo needed
    with pytest.raises(ValueError, match=f"override '{key}'"):
        adapt_flow(overrides={key: 1}, repo=str(tmp_path))
    assert (tmp_path / "params.yaml").read_text() == params_text and not (tmp_path / "out").exists()


def test_experiment_names_are_git_refs() -> None:
    assert experiment_name("amber otter/2", "1234567890abcdef") == "amber-otter-2-12345678"
