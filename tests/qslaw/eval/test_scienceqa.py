"""ScienceQA parser and per-category bookkeeping against hand-computed tables."""

from __future__ import annotations

import pytest

from qslaw.eval.scienceqa import CATEGORIES, categories, parse_answer, score


@pytest.mark.parametrize(("output", "n_choices", "expected"), [
    ("B", 3, 1),                                             # bare letter
    ("  C \n", 4, 2),                                        # stripped first
    ("B. because the magnet attracts", 2, 1),                # "X. " prefix
    ("The lecture. The answer is C.", 4, 2),                 # exactly one match
    ("So the answer is D.", 4, None),                        # regex is case-sensitive
    ("The answer is A. No wait, The answer is B.", 3, None),  # two matches
    ("I do not know.", 3, None),                             # no match
    ("The answer is C", 3, None),                            # the dot needs a character after the letter
    ("E", 3, -1),                                            # letter beyond the choices
    ("The answer is F.", 5, -1),                             # any capital in the regex, beyond E
    ("F", 6, None),                                          # bare letters are A-E only
    ("BC", 3, None),
])
def test_parse_answer(output: str, n_choices: int, expected: int | None) -> None:
    assert parse_answer(output, n_choices) == expected


def row(subject: str, hint: str, image: bool, grade: int, answer: int, pred: int | None) -> dict:
    return {"subject": f"{subject} science", "hint": hint, "has_image": image, "grade": f"grade{grade}",
            "answer": answer, "pred": pred}


ROWS = [
    row("natural", "", True, 3, 0, 0),        # NAT IMG G1-6            correct
    row("natural", "ctx", True, 8, 1, 1),     # NAT TXT IMG G7-12       correct
    row("natural", "ctx", False, 5, 2, 0),    # NAT TXT G1-6            wrong
    row("social", "", False, 7, 0, 0),        # SOC NO G7-12            correct
    row("social", "ctx", False, 12, 1, None),  # SOC TXT G7-12          parse failure -> wrong
    row("social", "", True, 2, 0, -1),        # SOC IMG G1-6            beyond choices -> wrong
    row("language", "", False, 1, 1, 1),      # LAN NO G1-6             correct
    row("language", "ctx", False, 9, 0, 0),   # LAN TXT G7-12           correct
]


def test_categories_of_one_row() -> None:
    assert categories(ROWS[1]) == ["NAT", "TXT", "IMG", "G7-12"]
    assert categories(ROWS[6]) == ["LAN", "NO", "G1-6"]


def test_score_table() -> None:
    result = score(ROWS)
    assert result["counts"] == {"Avg": 8, "NAT": 3, "SOC": 3, "LAN": 2, "TXT": 4, "IMG": 3, "NO": 2,
                                "G1-6": 4, "G7-12": 4}
    assert result["correct"] == {"Avg": 5, "NAT": 2, "SOC": 1, "LAN": 2, "TXT": 2, "IMG": 2, "NO": 2,
                                 "G1-6": 2, "G7-12": 3}
    expected = {"Avg": 62.5, "NAT": 200 / 3, "SOC": 100 / 3, "LAN": 100.0, "TXT": 50.0, "IMG": 200 / 3,
                "NO": 100.0, "G1-6": 50.0, "G7-12": 75.0}
    assert result["accuracy"] == pytest.approx(expected)
    assert result["parse_failures"] == 1 and result["parse_failure_rate"] == 1 / 8


def test_empty_category_is_omitted_and_beyond_choices_is_not_a_failure() -> None:
    result = score([row("natural", "", True, 3, 1, parse_answer("E", 3))])
    assert set(result["accuracy"]) == {"Avg", "NAT", "IMG", "G1-6"}
    assert result["accuracy"]["Avg"] == 0.0 and result["parse_failures"] == 0
    assert set(result["accuracy"]) <= {"Avg", *CATEGORIES}
