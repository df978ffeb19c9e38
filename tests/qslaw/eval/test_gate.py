"""The promotion gate: promotes, refuses and explains on crafted metrics."""

from __future__ import annotations

from qslaw.eval.gate import decide


def test_first_model_within_the_perplexity_bound_becomes_champion() -> None:
    d = decide(avg=40.0, perplexity=9.0, fp_perplexity=7.0, champion_avg=None, margin=1.0, ppl_bound=1.5)
    assert d.alias == "champion" and not d.failed and "no champion yet" in d.message


def test_beating_the_champion_by_the_margin_promotes() -> None:
    assert decide(41.0, 9.0, 7.0, champion_avg=40.0, margin=1.0, ppl_bound=1.5).alias == "champion"


def test_too_small_a_gain_is_refused_with_the_numbers() -> None:
    d = decide(40.5, 9.0, 7.0, champion_avg=40.0, margin=1.0, ppl_bound=1.5)
    assert d.alias == "challenger"
    assert d.failed == ["accuracy: Avg 40.50 < champion Avg 40.00 + margin 1.00"]
    assert d.message.startswith("not promoted (challenger): accuracy")


def test_forgetting_language_is_refused_even_when_accuracy_wins() -> None:
    d = decide(90.0, 11.0, 7.0, champion_avg=40.0, margin=1.0, ppl_bound=1.5)
    assert d.alias == "challenger" and len(d.failed) == 1
    assert d.failed[0] == "language retention: perplexity 11.000 > fp base 7.000 × bound 1.50 = 10.500"


def test_both_failures_are_stated_and_nan_perplexity_never_passes() -> None:
    d = decide(30.0, float("nan"), 7.0, champion_avg=40.0, margin=0.0, ppl_bound=1.5)
    assert d.alias == "challenger" and len(d.failed) == 2
