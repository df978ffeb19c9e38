"""Table schemas of the world's outputs and their deterministic parquet writers.

How it works
------------
``SCIENCEQA_FEATURES`` mirrors the ``dataset_info.features`` of the hub dataset
derek-thomas/ScienceQA, column for column and in its order: ``image`` is ``Image()`` (parquet
stores the struct ``{bytes: binary, path: string}``, null for text-only problems), ``choices`` is
``List(Value("string"))`` (the card's ``sequence: string``), ``answer`` is ``Value("int8")``, and
every other column is ``Value("string")``. ``WIKITEXT_FEATURES`` is wikitext-2-raw-v1's single
``text`` string column.

Both are written with ``datasets.Dataset.to_parquet``. The file holds only data and the schema
metadata ``datasets`` adds (the features as JSON): no time stamps and no paths, so the same rows
give the same bytes. ``context_type`` classifies a ScienceQA row the way the QSLAW scorer does
(IMG if it has an image, else TXT if its hint is non-empty, else NO); the reference lets IMG and
TXT overlap, our generator keeps them disjoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from datasets import Dataset, Features, Image, List, Value
from datasets import utils as hf_utils

NAT, SOC, LAN = "natural science", "social science", "language science"
SUBJECTS = (NAT, SOC, LAN)
"""ScienceQA's three subjects."""
CONTEXTS = ("IMG", "TXT", "NO")
"""Context types: an image, a text hint, or neither (:func:`context_type`)."""

SCIENCEQA_FEATURES = Features({
    "image": Image(),
    "question": Value("string"),
    "choices": List(Value("string")),
    "answer": Value("int8"),
    "hint": Value("string"),
    "task": Value("string"),
    "grade": Value("string"),
    "subject": Value("string"),
    "topic": Value("string"),
    "category": Value("string"),
    "skill": Value("string"),
    "lecture": Value("string"),
    "solution": Value("string"),
})
WIKITEXT_FEATURES = Features({"text": Value("string")})


def context_type(row: Mapping[str, object]) -> str:
    """``IMG`` when the row has an image, ``TXT`` when its hint is non-empty, else ``NO``."""
    if row.get("image") is not None:
        return "IMG"
    return "TXT" if str(row.get("hint") or "").strip() else "NO"


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the ``datasets`` progress bars, restoring their previous state."""
    was_disabled = hf_utils.are_progress_bars_disabled()
    hf_utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            hf_utils.enable_progress_bars()


def write_scienceqa(rows: list[dict[str, object]], path: Path) -> None:
    """One ScienceQA split as parquet."""
    with _quiet():
        Dataset.from_list(rows, features=SCIENCEQA_FEATURES).to_parquet(str(path))


def write_wikitext(lines: list[str], path: Path) -> None:
    """One corpus split as parquet, one row per line."""
    with _quiet():
        Dataset.from_dict({"text": lines}, features=WIKITEXT_FEATURES).to_parquet(str(path))
