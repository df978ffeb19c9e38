"""The methods benchmark's table: one row per method, mean ± sd over seeds, every category."""

from __future__ import annotations

from pipelines.bench_methods import CATEGORIES, table, trainable_count


def row(method: str, seed: int, avg: float) -> dict:
    return {"method": method, "seed": seed, **dict.fromkeys(CATEGORIES, avg), "parse_failure_rate": 0.1,
            "perplexity": 5.0, "trainable_params": 1234, "peak_rss_mib": 900.0, "train_wall_s": 60.0}


def test_table_has_a_row_per_method_with_mean_and_sd_over_seeds() -> None:
    text = table([row("qslaw", 0, 50.0), row("qslaw", 1, 60.0), row("qlora", 0, 40.0), row("qlora", 1, 40.0)])
    lines = [line for line in text.splitlines() if line.startswith("| q")]
    assert len(lines) == 2
    assert lines[0].startswith("| qslaw | 55.0 ± 7.1 |") and "1,234" in lines[0]
    assert lines[1].startswith("| qlora | 40.0 ± 0.0 |")
    assert "Seeds: [0, 1]" in text and all(c in text.splitlines()[2] for c in CATEGORIES)


def test_trainable_counts_every_trained_group_and_gamma() -> None:
    assert trainable_count({"trainable_lora": 10, "trainable_projector": 5, "gamma_params": 3, "steps_tune": 99}) == 18
