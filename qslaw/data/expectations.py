"""What a prepared table must satisfy: helper columns computed in pandas, and one GX suite per table kind.

How it works
------------
Great Expectations checks columns one at a time, so every row-level rule that spans columns or needs
real work (decoding an image) becomes a *helper column* computed here first, in one pass over the rows,
and a GX expectation then checks that column. Helper names start with ``_`` and each expectation on one
carries ``meta={"column": <source column>}`` and a ``description``, so reports and Data Docs name the
table column and the rule, not the helper::

    _n_choices       len(choices) (NaN when choices is not a list)      2 <= _n_choices <= 5
    _choices_str     choices is a list of str                           in {True}
    _answer_ok       answer is an int and 0 <= answer < len(choices)    in {True}
    _image_ok        bytes decode with PIL and convert to RGB           in {True}  (None: no image / too big)
    _image_side      max(width, height) from the header                 <= max_image_side
    _image_bytes     len(encoded bytes)                                 <= max_image_bytes
    _image_sha       sha256 of the encoded bytes (for the leakage check, not an expectation)
    _image_vs_ctx    image present == (context == "IMG")                in {True}
    _text_utf8       str encodes / bytes decode as UTF-8                in {True}
    _text_chars      len(text.strip())                                  max >= 1 (some non-empty text)

Each image is opened once: the header gives the size; only an image within both limits is fully decoded
(``convert("RGB")``), so a huge image is reported, never decompressed. Images must carry their bytes (the
prepared shards embed them); a path-only image counts as undecodable. A helper whose source columns are
missing is not computed; the ``expect_column_to_exist`` failure names the source column instead.
Nulls are skipped by GX column-map expectations, so "no image" rows only meet ``_image_vs_ctx``.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from qslaw.data.schema import CONTEXTS, SUBJECTS

KINDS = ("task", "text", "captions")
GRADES = tuple(f"grade{i}" for i in range(1, 13))
SCIENCEQA_COLUMNS = ("image", "question", "choices", "answer", "hint", "task", "grade", "subject", "topic",
                     "category", "skill", "lecture", "solution")
COLUMNS: dict[str, tuple[str, ...]] = {
    "task": (*SCIENCEQA_COLUMNS, "id", "context", "prompt", "response", "eval_prompt"),
    "text": ("text",),
    "captions": ("id", "image", "prompt", "response"),
}
STRING_COLUMNS: dict[str, tuple[str, ...]] = {
    kind: tuple(c for c in cols if c not in ("image", "choices", "answer")) for kind, cols in COLUMNS.items()}
NON_BLANK: dict[str, tuple[str, ...]] = {
    "task": ("id", "question", "prompt", "response", "eval_prompt"),
    "text": (),
    "captions": ("id", "prompt", "response"),
}
INT_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "int"]


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def as_list(value: object) -> list | None:
    """A list, tuple or numpy array (parquet gives lists back as arrays) as a list; anything else None."""
    return list(value) if isinstance(value, list | tuple | np.ndarray) else None


def _image_bytes(value: object) -> bytes | None:
    if isinstance(value, dict):
        value = value.get("bytes")
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) and len(value) else None


def inspect_image(value: object, max_side: int, max_bytes: int) -> tuple[bool | None, float, float, str | None]:
    """``(decodes, longest side, n bytes, sha256)`` of one image cell; all None/NaN for a missing image."""
    if _is_null(value):
        return None, math.nan, math.nan, None
    data = _image_bytes(value)
    if data is None:
        return False, math.nan, math.nan, None
    sha, side, ok = hashlib.sha256(data).hexdigest(), math.nan, None
    try:
        with Image.open(io.BytesIO(data)) as img:
            side = float(max(img.size))
            if side <= max_side and len(data) <= max_bytes:
                img.convert("RGB")
                ok = True
    except Exception:  # noqa: BLE001 - PIL raises many types on bad input; any of them means "does not decode"
        ok = False
    return ok, side, float(len(data)), sha


def _image_columns(images: pd.Series, max_side: int, max_bytes: int) -> dict[str, list]:
    facts = [inspect_image(v, max_side, max_bytes) for v in images]
    names = ("_image_ok", "_image_side", "_image_bytes", "_image_sha")
    return {name: [f[i] for f in facts] for i, name in enumerate(names)}


def _utf8(value: object) -> bool | None:
    if _is_null(value):
        return None
    try:
        value.encode("utf-8") if isinstance(value, str) else bytes(value).decode("utf-8")
    except (UnicodeError, TypeError):
        return False
    return True


def _text_chars(value: object) -> int:
    return len(value.strip()) if isinstance(value, str) else 0


def _task_columns(df: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "choices" in df:
        choices = [as_list(v) for v in df["choices"]]
        out["_n_choices"] = [math.nan if c is None else len(c) for c in choices]
        out["_choices_str"] = [c is not None and all(isinstance(x, str) for x in c) for c in choices]
        if "answer" in df:
            out["_answer_ok"] = [
                isinstance(a, int | np.integer) and not isinstance(a, bool | np.bool_) and c is not None
                and 0 <= a < len(c) for a, c in zip(df["answer"], choices, strict=True)]
    if "image" in df and "context" in df:
        out["_image_vs_ctx"] = (df["image"].map(_is_null) == (df["context"] != "IMG")).to_numpy()
    return out


def derive_columns(df: pd.DataFrame, kind: str, max_side: int, max_bytes: int) -> pd.DataFrame:
    """A shallow copy of ``df`` with the helper columns of its kind (see the module docstring)."""
    out: dict[str, Any] = {}
    if "image" in df and kind in ("task", "captions"):
        out |= _image_columns(df["image"], max_side, max_bytes)
    if kind == "task":
        out |= _task_columns(df)
    if kind == "text" and "text" in df:
        out |= {"_text_utf8": df["text"].map(_utf8).to_numpy(), "_text_chars": df["text"].map(_text_chars).to_numpy()}
    df = df.drop(columns=[c for c in out if c in df])  # re-deriving replaces earlier helpers
    return pd.concat([df, pd.DataFrame(out, index=df.index)], axis=1) if out else df.copy(deep=False)


def _flag(gxe: Any, helper: str, column: str, description: str) -> Any:
    return gxe.ExpectColumnValuesToBeInSet(
        column=helper, value_set=[True], description=description, meta={"column": column})


def _common(gxe: Any, kind: str) -> list:
    cols = STRING_COLUMNS[kind]
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="the table has at least one row"),
        *(gxe.ExpectColumnToExist(column=c) for c in COLUMNS[kind]),
        *(gxe.ExpectColumnValuesToBeOfType(column=c, type_="str") for c in cols),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in cols),
        *(gxe.ExpectColumnValuesToMatchRegex(column=c, regex=r"\S", description=f"{c} is not blank")
          for c in NON_BLANK[kind]),
        *((gxe.ExpectColumnValuesToBeUnique(column="id"),) if "id" in COLUMNS[kind] else ()),
    ]


def _image_rules(gxe: Any, max_side: int, max_bytes: int) -> list:
    side = gxe.ExpectColumnValuesToBeBetween(
        column="_image_side", min_value=1, max_value=max_side, meta={"column": "image"},
        description=f"image sides are at most max_image_side={max_side} px")
    size = gxe.ExpectColumnValuesToBeBetween(
        column="_image_bytes", min_value=1, max_value=max_bytes, meta={"column": "image"},
        description=f"encoded images are at most max_image_bytes={max_bytes} bytes")
    return [_flag(gxe, "_image_ok", "image", "image bytes decode with PIL and convert to RGB"), side, size]


def _task_rules(gxe: Any) -> list:
    n_choices = gxe.ExpectColumnValuesToBeBetween(
        column="_n_choices", min_value=2, max_value=5, meta={"column": "choices"},
        description="2 <= len(choices) <= 5")
    return [
        gxe.ExpectColumnValuesToBeInTypeList(column="answer", type_list=INT_TYPES),
        gxe.ExpectColumnValuesToNotBeNull(column="answer"),
        gxe.ExpectColumnValuesToBeInSet(column="grade", value_set=list(GRADES)),
        gxe.ExpectColumnValuesToBeInSet(column="subject", value_set=list(SUBJECTS)),
        gxe.ExpectColumnValuesToBeInSet(column="context", value_set=list(CONTEXTS)),
        n_choices,
        _flag(gxe, "_choices_str", "choices", "choices is a list of strings"),
        _flag(gxe, "_answer_ok", "answer", "answer is an integer with 0 <= answer < len(choices)"),
        _flag(gxe, "_image_vs_ctx", "image", "an image is present iff context == 'IMG'"),
    ]


def _text_rules(gxe: Any) -> list:
    return [
        _flag(gxe, "_text_utf8", "text", "text is valid UTF-8"),
        gxe.ExpectColumnMaxToBeBetween(column="_text_chars", min_value=1, meta={"column": "text"},
                                       description="the table holds some non-empty text"),
    ]


def build_expectations(kind: str, max_side: int, max_bytes: int) -> list:
    """The GX expectations of one table kind ("task", "text" or "captions"), on the helper columns above."""
    import great_expectations.expectations as gxe

    rules: dict[str, Callable[[], Sequence]] = {
        "task": lambda: [*_image_rules(gxe, max_side, max_bytes), *_task_rules(gxe)],
        "text": lambda: _text_rules(gxe),
        "captions": lambda: [gxe.ExpectColumnValuesToNotBeNull(column="image"),
                             *_image_rules(gxe, max_side, max_bytes)],
    }
    return [*_common(gxe, kind), *rules[kind]()]
