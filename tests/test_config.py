"""Bad params fail fast, naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from qslaw.config import load_params, parse_params
from qslaw.embedded.base.builder import model_spec
from qslaw.embedded.world.generate import world_spec

ROOT = Path(__file__).resolve().parents[1]


def params_with(path: str, value: object) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    node = raw
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return raw


@pytest.mark.parametrize(
    "key,value",
    [
        ("quantize.bits", 5), ("quantize.bits", "4"), ("quantize.group_size", 0), ("quantize.start_layer", -3),
        ("quantize.gamma_mode", "fake"), ("quantize.method", "gptq"), ("quantize.lwc_epochs", 0),
        ("quantize.lwc_lr", -1.0), ("quantize.calib_samples", 1), ("train.method", "magic"),
        ("train.precision", "fp8"), ("train.zero_stage", 4), ("warmup.lr", 0), ("warmup.batch_size", 0),
        ("warmup.epochs", 1.5), ("hybrid.text_ratio", -0.5), ("hybrid.lora_r", 0), ("hybrid.lora_dropout", 1.0),
        ("hybrid.multimodal_samples", 0), ("evaluate.max_new_tokens", 0), ("evaluate.limit", -1),
        ("prepare.eval_prompt", "free"), ("prepare.task_source", " "), ("validate.max_image_side", 0),
        ("validate.balance_tolerance", 2.0), ("world.n_train", 3), ("world.image_size", 8),
        ("base.embedded.hidden_size", 200), ("base.embedded.patch_size", 7), ("base.model", " "),
        ("export.model_name", "has space"), ("export.check_questions", 0),
    ],
)
def test_invalid_value_names_its_key(key: str, value: object) -> None:
    """Every section fails on load; the embedded default's two fail when a stage that uses them loads them."""
    with pytest.raises(ValueError, match="^" + re.escape(key) + ": "):
        params = parse_params(params_with(key, value))
        world_spec(params), model_spec(params)


def test_unknown_key_and_missing_section_are_named() -> None:
    raw = params_with("hybrid.lora_rank", 8)
    with pytest.raises(ValueError, match=r"^hybrid\.lora_rank: unknown key"):
        parse_params(raw)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["evaluate"]
    with pytest.raises(ValueError, match=r"^evaluate: missing section"):
        parse_params(raw)


def test_defaults_load_into_library_specs() -> None:
    params = load_params(ROOT / "params.yaml")
    spec = params.quantize.quant_spec()
    assert (spec.bits, spec.group_size, spec.gamma_mode) == (4, 128, "packed")
    assert params.quantize.calib_spec().method == "lwc"
    assert model_spec(params).hidden_size % params.quantize.group_size == 0
    assert world_spec(params).n_train == params.world["n_train"]
