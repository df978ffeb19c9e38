"""ScienceQA scoring: the reference answer parser, the category table and per-category accuracy.

How it works
------------
Exactly LLaVA's ``llava/eval/eval_science_qa.py`` as QSLAW runs it (reference notes §6.3):

* **Parsing** (:func:`parse_answer`), on the stripped output ``s``:

  1. ``s`` is one of ``A``–``E`` → that letter;
  2. else ``s`` starts with ``"X. "`` with ``X`` in ``A``–``E`` → ``X``;
  3. else ``re.findall(r"The answer is ([A-Z]).", s)`` (the dot is any character but a newline, so a
     final ``"The answer is C"`` with nothing after it does not match); the letter is used only if there
     is **exactly one** match.

  The letter becomes a choice index; a letter beyond the row's choices is ``-1`` (wrong, but parsed).
  Where the reference writes ``"FAILED"`` (and then scores it as −1) we return ``None``, so parse
  failures can be counted separately; both count as wrong.

* **Categories** (:func:`categories`): NAT / SOC / LAN by ``subject``; TXT when the hint is non-empty;
  IMG when the row has an image (the reference greps ``'<image>'`` in the logged prompt, which is the
  same thing); NO when neither; G1-6 / G7-12 from ``grade`` (``"grade1"``..``"grade12"``). TXT and IMG
  may overlap, so the context columns need not add up to Avg.

* **Score** (:func:`score`): ``Avg`` = correct / total over all rows, each category the same over its
  rows, as percentages in [0, 100]; a category without rows is left out (not reported as 0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from qslaw.data.render import LETTERS

OPTIONS = "ABCDE"
CATEGORIES = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12")
SUBJECTS = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}
ANSWER_RE = re.compile(r"The answer is ([A-Z]).")


def parse_letter(output: str) -> str | None:
    """The answer letter by the reference's three rules, or None when they fail."""
    text = output.strip()
    if text in OPTIONS and len(text) == 1:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    matches = ANSWER_RE.findall(text)
    return matches[0] if len(matches) == 1 else None


def parse_answer(output: str, n_choices: int) -> int | None:
    """Choice index of `output`; -1 for a letter beyond `n_choices`; None for a parse failure."""
    letter = parse_letter(output)
    if letter is None:
        return None
    index = LETTERS.index(letter)
    return index if index < n_choices else -1


def grade_band(grade: str) -> str:
    """"G1-6" or "G7-12" from a ScienceQA grade string such as "grade7"."""
    number = int(grade.removeprefix("grade"))
    return "G1-6" if number <= 6 else "G7-12"


def categories(row: Mapping) -> list[str]:
    """The categories a row counts in, in `CATEGORIES` order (TXT and IMG may both apply)."""
    found = [SUBJECTS[row["subject"]]] if row["subject"] in SUBJECTS else []
    has_hint, has_image = bool(row["hint"]), bool(row["has_image"])
    found += ["TXT"] * has_hint + ["IMG"] * has_image + ["NO"] * (not has_hint and not has_image)
    return found + [grade_band(row["grade"])]


def score(rows: Sequence[Mapping]) -> dict:
    """Per-category accuracy (percent), counts, correct counts and the parse-failure rate."""
    if not rows:
        raise ValueError("score: no rows to score")
    counts: dict[str, int] = dict.fromkeys(("Avg", *CATEGORIES), 0)
    correct = dict(counts)
    for row in rows:
        hit = row["pred"] is not None and row["pred"] == row["answer"]
        for name in ("Avg", *categories(row)):
            counts[name] += 1
            correct[name] += int(hit)
    present = [name for name in counts if counts[name]]
    failures = sum(row["pred"] is None for row in rows)
    return {
        "accuracy": {name: 100.0 * correct[name] / counts[name] for name in present},
        "counts": {name: counts[name] for name in present},
        "correct": {name: correct[name] for name in present},
        "parse_failures": failures,
        "parse_failure_rate": failures / len(rows),
    }
