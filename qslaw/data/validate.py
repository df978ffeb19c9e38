"""Great Expectations validation of the prepared tables: per-table suites, cross-table checks, Data Docs.

How it works
------------
``validate_tables(tables, kinds, spec, docs_dir)`` validates every table (a pandas DataFrame read from the
prepared parquet) against the suite of its kind — ``task`` (ScienceQA columns + id, context, prompt,
response, eval_prompt), ``text`` (wikitext lines) or ``captions`` (id, image, prompt, response)::

    tables ──derive_columns──> frame + helper columns (_answer_ok, _image_ok, ...; expectations.py)
           ──GX ephemeral context: pandas datasource → dataframe asset per table → whole-dataframe batch
             definition → ValidationDefinition(suite of the kind) .run(dataframe=frame)
           ──> per-table failures {expectation, column, unexpected_count, examples}
    frames ──> cross checks GX cannot express on one table:
             train/test leakage  a (question, choices, hint, image sha256) key in both task_train and
                                 task_test fails the run and lists the ids on both sides;
             answer balance      per task table and number of choices k (with at least MIN_BALANCE_ROWS
                                 valid problems; fewer say nothing), the share of each answer index
                                 must be within ``balance_tolerance`` of 1/k — a *warning* only.

The report is a plain JSON-able dict::

    {"success": bool,
     "tables": {name: {"success", "rows", "failures": [{"expectation", "column", "check",
                                                        "unexpected_count", "examples"}]}},
     "cross_checks": [{"check", "severity", "success", ...}], "warnings": [str]}

``examples`` holds up to 5 row ids (index labels for tables without ``id``), or the observed value of a
table-level expectation (``unexpected_count`` is then None). An expectation that errors because its
column is missing is dropped: the ``expect_column_to_exist`` failure already names the column.
``summarize(report)`` renders it as a few lines of text. With ``docs_dir``, a filesystem Data Docs site
is added to the ephemeral context and built there (``index.html``; unstyled offline, its CSS is on a CDN).

GX is imported inside the functions (≈3 s); the splits of the leakage check come from the table names
(``task_train`` → ``train``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qslaw.data.expectations import KINDS, as_list, build_expectations, derive_columns

MAX_EXAMPLES = 5
MIN_BALANCE_ROWS = 20
"""Fewest problems with k choices for the balance check to judge them (shares of a handful are noise)."""
DOCS_SITE = "qslaw"


@dataclass(frozen=True)
class ValidationSpec:
    """Limits of the ``validate`` stage."""

    max_image_side: int = 4096
    """Longest allowed image side in pixels; larger images fail without being decoded."""
    max_image_bytes: int = 10_000_000
    """Largest allowed encoded image."""
    balance_tolerance: float = 0.15
    """Allowed |share of an answer index - 1/k| among problems with k choices before a warning."""

    def __post_init__(self) -> None:
        if self.max_image_side < 1:
            raise ValueError(f"max_image_side: must be >= 1, got {self.max_image_side}")
        if self.max_image_bytes < 1:
            raise ValueError(f"max_image_bytes: must be >= 1, got {self.max_image_bytes}")
        if not 0.0 < self.balance_tolerance <= 1.0:
            raise ValueError(f"balance_tolerance: must be in (0, 1], got {self.balance_tolerance}")


def validate_tables(tables: dict[str, pd.DataFrame], kinds: dict[str, str], spec: ValidationSpec | None = None,
                    docs_dir: Path | None = None) -> dict:
    """Validate every table against the suite of its kind, run the cross checks, optionally build Data Docs."""
    spec = spec or ValidationSpec()
    _check_kinds(tables, kinds)
    frames = {n: derive_columns(df, kinds[n], spec.max_image_side, spec.max_image_bytes) for n, df in tables.items()}
    context = _context()
    suites = {k: _suite(context, k, spec) for k in sorted(set(kinds[n] for n in tables))}
    source = context.data_sources.add_pandas("tables")
    reports = {name: _table_report(_run(context, source, name, suites[kinds[name]], frame), frame)
               for name, frame in frames.items()}
    task_frames = {n: f for n, f in frames.items() if kinds[n] == "task"}
    cross = [*leakage_checks(task_frames), *balance_checks(task_frames, spec.balance_tolerance)]
    if docs_dir is not None:
        _build_docs(context, Path(docs_dir))
    success = all(r["success"] for r in reports.values()) and all(
        c["success"] for c in cross if c["severity"] == "error")
    warnings = [c["message"] for c in cross if c["severity"] == "warning" and not c["success"]]
    return {"success": success, "tables": reports, "cross_checks": cross, "warnings": warnings}


def _check_kinds(tables: dict[str, pd.DataFrame], kinds: dict[str, str]) -> None:
    for name in tables:
        if kinds.get(name) not in KINDS:
            raise ValueError(f"kinds[{name!r}]: must be one of {KINDS}, got {kinds.get(name)!r}")


def _context() -> Any:
    """An ephemeral GX context, analytics and progress bars off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _suite(context: Any, kind: str, spec: ValidationSpec) -> Any:
    import great_expectations as gx

    expectations = build_expectations(kind, spec.max_image_side, spec.max_image_bytes)
    return context.suites.add(gx.ExpectationSuite(name=kind, expectations=expectations))


def _run(context: Any, source: Any, name: str, suite: Any, frame: pd.DataFrame) -> Any:
    import great_expectations as gx

    batch = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe(name)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
    if "id" in frame:
        result_format["unexpected_index_column_names"] = ["id"]
    return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)


def _error(result: Any) -> str | None:
    """The exception message of an expectation that raised (GX keys it by metric when a metric failed)."""
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [v for v in info.values() if isinstance(v, dict) and v.get("exception_message")]
    return str(nested[0]["exception_message"]) if nested else None


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _examples(result: dict) -> list:
    if "partial_unexpected_index_list" in result:
        rows = [r.get("id") if isinstance(r, dict) else r for r in result["partial_unexpected_index_list"]]
        return list(dict.fromkeys(_plain(r) for r in rows))[:MAX_EXAMPLES]
    return [_plain(result["observed_value"])] if "observed_value" in result else []


def _failure(result: Any, frame: pd.DataFrame) -> dict | None:
    config, error = result.expectation_config, _error(result)
    column = config.kwargs.get("column")
    if error is not None and column is not None and column not in frame:
        return None
    failure = {"expectation": config.type, "column": (config.meta or {}).get("column", column),
               "check": config.description, "unexpected_count": result.result.get("unexpected_count"),
               "examples": _examples(result.result)}
    return failure | ({"error": error} if error else {})


def _table_report(result: Any, frame: pd.DataFrame) -> dict:
    failures = [_failure(r, frame) for r in result.results if not r.success]
    failures = sorted((f for f in failures if f), key=lambda f: (f["column"] or "", f["expectation"]))
    return {"success": bool(result.success), "rows": len(frame), "failures": failures}


def _build_docs(context: Any, docs_dir: Path) -> None:
    docs_dir.mkdir(parents=True, exist_ok=True)
    site = {"class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)}}
    context.add_data_docs_site(site_name=DOCS_SITE, site_config=site)
    context.build_data_docs(site_names=[DOCS_SITE])


def _split(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def problem_keys(frame: pd.DataFrame) -> pd.Series:
    """One hashable key per row: question, choices, hint and image sha256 (missing columns count as empty)."""
    def col(name: str) -> pd.Series:
        return frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index)

    return pd.Series([(str(q), tuple(str(c) for c in as_list(ch) or ()), str(h), s or "")
                      for q, ch, h, s in zip(col("question"), col("choices"), col("hint"), col("_image_sha"),
                                             strict=True)], index=frame.index, dtype=object)


def _ids(frame: pd.DataFrame) -> pd.Series:
    return frame["id"].astype(str) if "id" in frame else pd.Series(frame.index.astype(str), index=frame.index)


def leakage_checks(task_frames: dict[str, pd.DataFrame]) -> list[dict]:
    """For each train/test pair of task tables, the problems they share (by :func:`problem_keys`)."""
    trains = [n for n in task_frames if _split(n) == "train"]
    tests = [n for n in task_frames if _split(n) == "test"]
    return [_leakage(a, task_frames[a], b, task_frames[b]) for a in trains for b in tests]


def _leakage(name_a: str, a: pd.DataFrame, name_b: str, b: pd.DataFrame) -> dict:
    keys_a, keys_b = problem_keys(a), problem_keys(b)
    shared = set(keys_a) & set(keys_b)
    ids_a, ids_b = _ids(a)[keys_a.isin(shared)], _ids(b)[keys_b.isin(shared)]
    first_b = dict(zip(keys_b[keys_b.isin(shared)], ids_b, strict=True))
    pairs = [{name_a: i, name_b: first_b[k]} for i, k in zip(ids_a, keys_a[keys_a.isin(shared)], strict=True)]
    return {"check": "train_test_leakage", "severity": "error", "success": not shared, "tables": [name_a, name_b],
            "unexpected_count": len(shared), "examples": pairs[:MAX_EXAMPLES],
            "ids": {name_a: ids_a.tolist(), name_b: ids_b.tolist()},
            "message": f"{len(shared)} problems of {name_a} also appear in {name_b}"}


def balance_checks(task_frames: dict[str, pd.DataFrame], tolerance: float) -> list[dict]:
    """Per task table and number of choices k, warn when an answer index's share is off 1/k by > tolerance."""
    return [check for name, frame in task_frames.items() for check in _balance(name, frame, tolerance)]


def _balance(name: str, frame: pd.DataFrame, tolerance: float) -> list[dict]:
    if not {"_answer_ok", "_n_choices", "answer"} <= set(frame.columns):
        return []
    valid = frame[frame["_answer_ok"].astype(bool) & frame["_n_choices"].between(2, 5)]
    checks = []
    for k, group in valid.groupby("_n_choices"):
        if len(group) < MIN_BALANCE_ROWS:
            continue
        k = int(k)
        shares = [float((group["answer"] == i).mean()) for i in range(k)]
        worst = max(abs(s - 1 / k) for s in shares)
        message = (f"{name}: answer shares {[round(s, 3) for s in shares]} over {len(group)} problems with {k} "
                   f"choices deviate from uniform 1/{k} by up to {worst:.3f} (tolerance {tolerance})")
        checks.append({"check": "answer_balance", "severity": "warning", "success": worst <= tolerance,
                       "tables": [name], "n_choices": k, "rows": len(group), "shares": shares, "message": message})
    return checks


def _describe(failure: dict) -> str:
    text = f"{failure['expectation']} on {failure['column'] or 'the table'}"
    text += f" ({failure['check']})" if failure.get("check") else ""
    if failure["unexpected_count"] is not None:
        text += f": {failure['unexpected_count']} unexpected, e.g. rows {failure['examples']}"
    elif failure["examples"]:
        text += f": observed {failure['examples'][0]!r}"
    return text + (f"; error: {failure['error']}" if failure.get("error") else "")


def summarize(report: dict) -> str:
    """A short text: status, then each failing expectation (table, column, rule, example rows), then warnings."""
    bad = [n for n, t in report["tables"].items() if not t["success"]]
    lines = [f"validation {'passed' if report['success'] else 'FAILED'}: {len(report['tables'])} tables"
             + (f", failing: {', '.join(bad)}" if bad else "")]
    for name, table in report["tables"].items():
        lines += [f"  {name}: {_describe(f)}" for f in table["failures"]]
    for c in report["cross_checks"]:
        if c["severity"] == "error" and not c["success"]:
            lines.append(f"  {c['check']}: {c['message']}, e.g. {c['examples']}")
    lines += [f"  warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)
