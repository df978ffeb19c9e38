"""Contract tests of the GX validation of prepared tables: tiny inline tables, one defect per bad table.

Two validation runs serve all tests (GX costs ~3 s to import and ~0.3 s per table): the good tables (with
Data Docs), and every bad table at once. Row defects share one table, one defect per row, so each failure
is traced to its row id; table-wide defects (missing column, dtype, empty, leakage) get their own tables.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from qslaw.data.validate import MIN_BALANCE_ROWS, ValidationSpec, summarize, validate_tables

SPEC = ValidationSpec(max_image_side=64)


def png(side: int = 16, shade: int = 0, height: int | None = None) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, height or side), (shade, 80, 160)).save(buf, format="PNG")
    return buf.getvalue()


def task_rows(prefix: str, n: int = 6, skewed: bool = False) -> list[dict]:
    rows = []
    for i in range(n):
        context, k = ("IMG", "TXT", "NO")[i % 3], 2 if skewed else 2 + i % 4
        rows.append({
            "image": {"bytes": png(shade=i), "path": None} if context == "IMG" else None,
            "question": f"{prefix}: which one is number {i}?", "choices": [f"option {j}" for j in range(k)],
            "answer": 0 if skewed else i % k, "hint": "It is sunny." if context == "TXT" else "",
            "task": "closed choice", "grade": f"grade{1 + i % 12}", "subject": "natural science", "topic": "weather",
            "category": "Weather and climate", "skill": "Identify weather", "lecture": "Weather is...",
            "solution": "Look at the sky.", "id": f"{prefix}-{i}", "context": context, "prompt": "USER: q ASSISTANT:",
            "response": "The answer is A.", "eval_prompt": "USER: q ASSISTANT:"})
    return rows


def task_table(prefix: str, n: int = 6, skewed: bool = False) -> pd.DataFrame:
    return pd.DataFrame(task_rows(prefix, n, skewed)).astype({"answer": "int8"})


def parquet_roundtrip(df: pd.DataFrame) -> pd.DataFrame:
    """As the stage reads them: lists come back as numpy arrays, images as {bytes, path} dicts."""
    buf = io.BytesIO()
    df.to_parquet(buf)
    return pd.read_parquet(io.BytesIO(buf.getvalue()))


def captions_table() -> pd.DataFrame:
    return pd.DataFrame({"id": ["c-0", "c-1"], "image": [{"bytes": png(shade=s), "path": None} for s in (1, 2)],
                         "prompt": ["Describe the image.", "What is shown?"],
                         "response": ["A red circle.", "A blue square."]})


def good_tables() -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    tables = {"task_train": task_table("train", MIN_BALANCE_ROWS, skewed=True), "task_validation": task_table("val"),
              "task_test": task_table("test"), "text_train": pd.DataFrame({"text": ["", " = Weather = ", "It rains."]}),
              "captions": captions_table()}
    kinds = {name: name.split("_")[0] for name in tables}
    return {name: parquet_roundtrip(df) for name, df in tables.items()}, kinds


def with_rows(df: pd.DataFrame, changes: dict[int, dict[str, object]]) -> pd.DataFrame:
    df = df.copy()
    for i, values in changes.items():
        for column, value in values.items():
            df[column] = df[column].astype(object)
            df.at[i, column] = value
    return df


# One defect per row of "task_defects" (rows 0, 3, 6, 9 are IMG rows; row i has 2 + i % 4 choices).
ROW_DEFECTS = {
    0: {"image": {"bytes": b"not a png", "path": None}},              # corrupt bytes
    3: {"image": {"bytes": png(shade=9)[:60], "path": None}},         # truncated: header ok, pixels missing
    6: {"image": {"bytes": png(65, height=4), "path": None}},         # side 65 > max_image_side
    9: {"image": None},                                               # IMG row without image
    1: {"question": "   "},                                           # blank question
    2: {"answer": 7},                                                 # answer out of range
    4: {"id": "bad-1"},                                               # duplicate id
    5: {"choices": []},                                               # zero choices
    7: {"grade": "grade13", "subject": "alchemy", "context": "VIDEO"},
}


def bad_tables() -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    base = task_table("bad", 12)
    leak_test = task_table("leaktest")
    leak_test.iloc[1] = task_table("leaktrain").iloc[0]
    leak_test.at[1, "id"] = "leaktest-copy"
    tables = {
        "task_defects": with_rows(base, ROW_DEFECTS),
        "missing_column": base.drop(columns=["question"]),
        "answer_as_string": base.astype({"answer": str}),
        "empty_table": base.iloc[:0],
        "leak_train": task_table("leaktrain"), "leak_test": leak_test,
        "bad_text": pd.DataFrame({"text": ["  ", b"\xff\xfe not utf-8", ""]}),
        "caption_without_image": with_rows(captions_table(), {1: {"image": None}}),
    }
    kinds = {"bad_text": "text", "caption_without_image": "captions"}
    return tables, {name: kinds.get(name, "task") for name in tables}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    docs = tmp_path_factory.mktemp("validate") / "docs"
    tables, kinds = good_tables()
    return validate_tables(tables, kinds, SPEC, docs), docs


@pytest.fixture(scope="module")
def bad() -> dict:
    return validate_tables(*bad_tables(), SPEC, None)


def failures(report: dict, table: str) -> list[dict]:
    return report["tables"][table]["failures"]


def find(report: dict, table: str, column: str | None, expectation: str, check: str = "") -> dict:
    hits = [f for f in failures(report, table)
            if f["column"] == column and f["expectation"] == expectation and check in (f["check"] or "")]
    assert len(hits) == 1, f"no single {expectation} on {column} ({check}) in {failures(report, table)}"
    return hits[0]


def test_good_tables_pass_and_imbalance_only_warns(good: tuple[dict, Path]) -> None:
    report, _ = good
    assert report["success"], summarize(report)
    assert all(t["success"] and not t["failures"] for t in report["tables"].values())
    assert report["tables"]["task_train"]["rows"] == MIN_BALANCE_ROWS
    assert [c["success"] for c in report["cross_checks"] if c["check"] == "train_test_leakage"] == [True]
    (skew,) = [c for c in report["cross_checks"] if c["check"] == "answer_balance"]  # small groups are not judged
    assert (skew["severity"], skew["success"], skew["tables"], skew["shares"]) == ("warning", False, ["task_train"],
                                                                                  [1.0, 0.0])
    assert len(report["warnings"]) == 1 and report["warnings"][0].startswith("task_train: answer shares [1.0, 0.0]")
    assert summarize(report).startswith("validation passed")


def test_data_docs_are_built(good: tuple[dict, Path]) -> None:
    _, docs = good
    index = docs / "index.html"
    assert index.is_file()
    assert "task_train" in index.read_text()


def test_bad_tables_fail_overall(bad: dict) -> None:
    assert not bad["success"]
    json.dumps(bad)  # the stage writes the report as JSON
    assert {n for n, t in bad["tables"].items() if not t["success"]} == set(bad["tables"]) - {"leak_train", "leak_test"}


@pytest.mark.parametrize(("column", "expectation", "check", "count", "examples"), [
    ("image", "expect_column_values_to_be_in_set", "decode", 2, ["bad-0", "bad-3"]),
    ("image", "expect_column_values_to_be_between", "max_image_side=64", 1, ["bad-6"]),
    ("image", "expect_column_values_to_be_in_set", "iff context", 1, ["bad-9"]),
    ("question", "expect_column_values_to_match_regex", "not blank", 1, ["bad-1"]),
    ("answer", "expect_column_values_to_be_in_set", "0 <= answer < len(choices)", 2, ["bad-2", "bad-5"]),
    ("id", "expect_column_values_to_be_unique", "", 2, ["bad-1"]),
    ("choices", "expect_column_values_to_be_between", "2 <= len(choices) <= 5", 1, ["bad-5"]),
    ("grade", "expect_column_values_to_be_in_set", "", 1, ["bad-7"]),
    ("subject", "expect_column_values_to_be_in_set", "", 1, ["bad-7"]),
    ("context", "expect_column_values_to_be_in_set", "", 1, ["bad-7"]),
])
def test_row_defects_name_expectation_column_and_rows(bad: dict, column: str, expectation: str, check: str,
                                                      count: int, examples: list) -> None:
    failure = find(bad, "task_defects", column, expectation, check)
    assert (failure["unexpected_count"], failure["examples"]) == (count, examples)


def test_row_defects_are_all_that_is_found(bad: dict) -> None:
    assert len(failures(bad, "task_defects")) == 10
    assert "error" not in str(failures(bad, "task_defects"))


def test_missing_column_is_a_failure_not_a_crash(bad: dict) -> None:
    assert failures(bad, "missing_column") == [
        {"expectation": "expect_column_to_exist", "column": "question", "check": None, "unexpected_count": None,
         "examples": []}]


def test_wrong_dtype_is_named(bad: dict) -> None:
    failure = find(bad, "answer_as_string", "answer", "expect_column_values_to_be_in_type_list")
    assert failure["examples"] == ["str"]


def test_empty_table_fails_row_count(bad: dict) -> None:
    assert bad["tables"]["empty_table"]["rows"] == 0
    assert find(bad, "empty_table", None, "expect_table_row_count_to_be_between")["examples"] == [0]


def test_text_must_be_utf8_strings_and_not_all_blank(bad: dict) -> None:
    assert find(bad, "bad_text", "text", "expect_column_values_to_be_in_set", "UTF-8")["examples"] == [1]
    assert find(bad, "bad_text", "text", "expect_column_values_to_be_of_type")["examples"] == [1]
    assert find(bad, "bad_text", "text", "expect_column_max_to_be_between", "non-empty text")["examples"] == [0]


def test_captions_need_images(bad: dict) -> None:
    assert find(bad, "caption_without_image", "image", "expect_column_values_to_not_be_null")["examples"] == ["c-1"]


def test_train_test_leakage_reports_ids(bad: dict) -> None:
    (leak,) = [c for c in bad["cross_checks"] if c["check"] == "train_test_leakage"]
    assert not leak["success"] and leak["severity"] == "error" and leak["unexpected_count"] == 1
    assert leak["ids"] == {"leak_train": ["leaktrain-0"], "leak_test": ["leaktest-copy"]}
    assert leak["examples"] == [{"leak_train": "leaktrain-0", "leak_test": "leaktest-copy"}]


def test_summary_names_failures_and_rows(bad: dict) -> None:
    text = summarize(bad)
    assert text.startswith("validation FAILED")
    assert "task_defects: expect_column_values_to_be_in_set on answer" in text and "'bad-2'" in text
    assert "missing_column: expect_column_to_exist on question\n" in text
    assert "empty_table: expect_table_row_count_to_be_between on the table" in text
    assert "train_test_leakage" in text and "leaktest-copy" in text


@pytest.mark.parametrize(("field", "value"), [("max_image_side", 0), ("max_image_bytes", -1),
                                              ("balance_tolerance", 0.0)])
def test_spec_errors_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ValidationSpec(**{field: value})


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="tbl"):
        validate_tables({"tbl": pd.DataFrame({"text": ["a"]})}, {"tbl": "audio"}, SPEC, None)
