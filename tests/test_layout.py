"""Repository contracts: layering, and params.yaml ↔ dataclasses ↔ dvc.yaml ↔ stage modules consistency."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import typing
from pathlib import Path

import pytest
import yaml
from import_graph import closure, imports, module_name

from qslaw.config import Params, load_params
from qslaw.embedded.base.builder import EmbeddedModelSpec
from qslaw.embedded.world import WorldSpec

ROOT = Path(__file__).resolve().parents[1]
DICT_SECTIONS = {"world": WorldSpec, "base.embedded": EmbeddedModelSpec}
"""Sections qslaw.config keeps as mappings (the method library never imports the embedded package)."""
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


def test_qslaw_does_not_import_steps_pipelines_or_benchmarks() -> None:
    offenders = [str(p) for p in (ROOT / "qslaw").rglob("*.py")
                 if imported_modules(p) & {"steps", "pipelines", "benchmarks"}]
    assert not offenders


def library_files() -> list[Path]:
    return [p for p in (ROOT / "qslaw").rglob("*.py") if "embedded" not in p.relative_to(ROOT / "qslaw").parts]


def test_the_method_library_never_imports_the_embedded_demo() -> None:
    offenders = {module_name(p): sorted(m for m in imports(p) if m.startswith("qslaw.embedded"))
                 for p in library_files()}
    assert library_files() and not {k: v for k, v in offenders.items() if v}


def test_only_the_base_and_prepare_stages_reach_the_embedded_demo() -> None:
    reach = {s for s in STAGES if any("embedded" in f.parts for f in closure(f"steps.{s}"))}
    assert reach == {"base", "prepare"}


def package_of(module: str) -> str:
    """``qslaw.quant.linear`` → ``qslaw.quant``; top-level modules stand for themselves."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "qslaw" and len(parts) > 2 else module


def test_no_import_loop_between_library_packages() -> None:
    graph: dict[str, set[str]] = {}
    for p in (ROOT / "qslaw").rglob("*.py"):
        src = package_of(module_name(p))
        graph.setdefault(src, set()).update(package_of(m) for m in imports(p) if package_of(m) != src)
    seen: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert seen.get(nxt) != 1, " -> ".join([*path, node, nxt])
            if nxt not in seen:
                visit(nxt, [*path, node])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [])


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


def params_keys() -> set[str]:
    """Every leaf key of params.yaml the code knows, the embedded default's mapping sections expanded."""
    keys = dataclass_keys(Params)
    for section, cls in DICT_SECTIONS.items():
        keys = (keys - {section}) | dataclass_keys(cls, f"{section}.")
    return keys


@pytest.mark.parametrize("name", ["params.yaml", "profiles/smoke.yaml"])
def test_params_files_list_every_field_and_load(name: str) -> None:
    raw = yaml.safe_load((ROOT / name).read_text())
    assert yaml_keys(raw) == params_keys()
    load_params(ROOT / name)


def test_dvc_params_exist_and_cover_each_stage_section() -> None:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    known = dataclass_keys(Params)  # the embedded default's sections are tracked whole: `world`, `base.embedded`
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
        assert f"steps/{stage}.py" in spec["deps"]
        for path in spec["cmd"].split()[3:]:
            if not path.startswith("artifacts/"):
                assert (ROOT / path).exists() and path in spec["deps"], (stage, path)


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_depends_on_exactly_the_code_its_module_imports(stage: str) -> None:
    """Declared code deps cover the stage module's import closure (a new import without a dep fails) and list
    nothing outside it (an edit elsewhere never reruns the stage)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    code = [d for d in spec["deps"] if d.startswith(("qslaw", "steps", "pipelines", "benchmarks"))]
    needed = closure(f"steps.{stage}")
    assert not [str(f) for f in sorted(needed) if not covered(f, code)], "missing deps"
    listed = {f.relative_to(ROOT) for d in code
              for f in ([ROOT / d] if d.endswith(".py") else (ROOT / d).rglob("*.py"))}
    assert not sorted(str(f) for f in listed - needed), "deps outside the import closure"

