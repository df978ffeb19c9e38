"""The base stage logs the build report's scalar figures under flat names."""

from __future__ import annotations

import math

from steps.base import build_metrics


def test_build_metrics_flattens_scalars_and_drops_the_rest() -> None:
    report = {"vocab_size": 2048, "spec": {"seed": 0}, "versions": {"torch": "2.13.0"},
              "lm": {"final_val_ppl": 3.4, "curve": [{"step": 0}], "stopped_early": False},
              "tower": {"retrieval_after": 0.2, "cell_loss_after": None}, "tower_grid": None,
              "caption": {"loss_after": 0.45, "word_cos_after": math.nan}, "wall_s": {"total": 250.0}}
    assert build_metrics(report) == {"vocab_size": 2048, "lm_final_val_ppl": 3.4, "tower_retrieval_after": 0.2,
                                     "caption_loss_after": 0.45, "wall_s_total": 250.0}
