"""Per-skill diagnostics of the benchmark check: which value a solution wrote, and whether the letter follows it."""

from __future__ import annotations

import pytest

from benchmarks.benchmark_check import by_skill, skill_table, written_option

WHERE = ["top middle", "center", "bottom left", "middle right"]


def test_written_option_is_the_option_named_last_before_the_answer() -> None:
    out = "The shape is in the bottom left of the picture. It is in the bottom row. The answer is A."
    assert written_option(out, WHERE) == 2
    # "top middle" alone ends on "middle", the first word of another option: the reader names that one
    assert written_option("The shape is in the top middle of the picture. The answer is C.", WHERE) == 3
    assert written_option("The shape is in the top middle. It is in the top row.", WHERE) == 0
    assert written_option("Look at the picture. The answer is B.", WHERE) is None
    assert written_option("The colour of the shape is Red. The answer is A.", ["red", "blue"]) == 0


def test_by_skill_tells_reading_from_letter_naming() -> None:
    rows = [{"skill": "where", "context": "IMG", "choices": WHERE, "answer": 2},
            {"skill": "where", "context": "IMG", "choices": WHERE, "answer": 2},
            {"skill": "where", "context": "IMG", "choices": WHERE, "answer": 0},
            {"skill": "colour", "context": "IMG", "choices": ["red", "blue"], "answer": 1}]
    outputs = ["It is in the bottom left. The answer is C.",   # read right, letter right
               "It is in the bottom left. The answer is A.",   # read right, letter wrong
               "It is in the center. The answer is B.",        # read wrong, letter follows
               "The colour is blue. The answer is"]            # read right, no letter
    got = by_skill(rows, outputs, [2, 0, 1, None])
    assert got["where"] == {"context": "IMG", "n": 3, "accuracy": pytest.approx(100 / 3),
                            "written_right": pytest.approx(200 / 3), "letter_follows": pytest.approx(200 / 3)}
    assert got["colour"]["written_right"] == 100 and got["colour"]["letter_follows"] == 0
    table = skill_table(got).splitlines()
    assert len(table) == 4 and table[2].startswith("| IMG | colour | 1 | 0.0 | 100.0 | 0.0 |")
