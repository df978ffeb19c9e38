"""The streamed-quantize benchmark runs end to end at a tiny shape and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import stream_quantize


def test_the_benchmark_writes_a_sharded_checkpoint_and_reports_memory(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    stream_quantize.main(["--shape", "tiny", "--method", "lwc", "--calib-samples", "2", "--calib-length", "200",
                          "--workdir", str(tmp_path), "--out", str(tmp_path / "rows.jsonl")])
    row = json.loads((tmp_path / "rows.jsonl").read_text().splitlines()[-1])
    assert row["shape"] == "tiny" and row["lwc_epochs"] == 1 and row["shards"] >= 1
    assert 0 < row["packed_model_gib"] < row["checkpoint_gib"]
    assert row["host_peak_above_imports_gib"] > 0 and row["quantize_s"] > 0 and row["gpu_peak_gib"] == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == row
