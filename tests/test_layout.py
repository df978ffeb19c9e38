"""Repository contracts: layering, and params.yaml ↔ dataclasses ↔ dvc.yaml ↔ stage modules consistency."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import typing
from pathlib import Path

import pytest
import yaml

from qslaw.config import Params, load_params

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("base", "prepare", "validate", "quantize", "warmup", "hybrid", "evaluate", "export")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package,forbidden", [("qslaw", {"prefect", "dvc", "mlflow"}), ("steps", {"prefect"})])
def test_layers_point_one_way(package: str, forbidden: set[str]) -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & forbidden)
                 for p in (ROOT / package).rglob("*.py") if imported_modules(p) & forbidden}
    assert not offenders


def test_qslaw_does_not_import_steps_or_pipelines() -> None:
    offenders = [str(p) for p in (ROOT / "qslaw").rglob("*.py") if imported_modules(p) & {"steps", "pipelines"}]
    assert not offenders


def dataclass_keys(cls: type, prefix: str = "") -> set[str]:
    hints = typing.get_type_hints(cls)
    keys = set()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= dataclass_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.add(f"{prefix}{f.name}")
    return keys


def yaml_keys(d: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in d.items():
        keys |= yaml_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return keys


@pytest.mark.parametrize("name", ["params.yaml", "profiles/smoke.yaml"])
def test_params_files_list_every_field_and_load(name: str) -> None:
    raw = yaml.safe_load((ROOT / name).read_text())
    assert yaml_keys(raw) == dataclass_keys(Params)
    load_params(ROOT / name)


def test_dvc_params_exist_and_cover_each_stage_section() -> None:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    known = dataclass_keys(Params)
    for stage, spec in dvc["stages"].items():
        listed = set(spec.get("params", []))
        assert listed <= known, (stage, sorted(listed - known)[:3])
        if stage in {f.name for f in dataclasses.fields(Params)}:
            own = {k for k in known if k.startswith(f"{stage}.")}
            assert own <= listed, (stage, sorted(own - listed)[:3])


def test_every_stage_cmd_module_exists_and_is_a_dependency() -> None:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert tuple(dvc["stages"]) == STAGES
    for stage, spec in dvc["stages"].items():
        module = spec["cmd"].split()[2]
        assert module == f"steps.{stage}"
        assert importlib.util.find_spec(module) is not None
        assert f"steps/{stage}.py" in spec["deps"] and "qslaw" in spec["deps"]
        for path in spec["cmd"].split()[3:]:
            if not path.startswith("artifacts/"):
                assert (ROOT / path).exists() and path in spec["deps"], (stage, path)
