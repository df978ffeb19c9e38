"""ZeRO stage × 4-bit format compatibility: every stage trains every format to the same losses.

One CPU rank
and a tiny model: ZeRO-3 keeps parameters under ``stage3_param_persistence_threshold`` whole, so this checks
the engine wiring and optimizer partitioning of each format, not ZeRO-3 sharding of large frozen 4-bit weights.
"""

from __future__ import annotations

import tempfile

import pytest
import torch
from tiny_models import tiny_llava, tiny_llava_batch

from qslaw.model.lora import add_lora
from qslaw.model.surgery import quantize_model, set_trainable
from qslaw.quant.spec import QuantSpec
from qslaw.train.encode import collate
from qslaw.train.loop import LoopSpec, train

FORMATS = ("packed_gamma", "requant_gamma", "packed_lora", "bnb_nf4_lora")


def model_in(fmt: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tiny_llava(hidden=128, ffn=256)
    if fmt in ("packed_gamma", "requant_gamma"):
        model = quantize_model(model, QuantSpec(group_size=32, start_layer=-1, gamma_mode=fmt.split("_")[0]))
        set_trainable(model, ["gamma", "projector"])
        return model
    if fmt == "packed_lora":
        spec = QuantSpec(group_size=32, start_layer=-1, gamma_mode="packed", gamma=False)
        model = add_lora(quantize_model(model, spec), spec, r=4)
    else:
        from transformers import BitsAndBytesConfig, LlavaForConditionalGeneration

        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            model = LlavaForConditionalGeneration.from_pretrained(tmp, quantization_config=BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.float32,
                llm_int8_skip_modules=["model.vision_tower", "model.multi_modal_projector", "lm_head"]))
        model = add_lora(model, QuantSpec(group_size=32), r=4)
    set_trainable(model, ["lora", "projector"])
    return model


def losses(fmt: str, stage: int) -> list[float]:
    model = model_in(fmt)
    batch = tiny_llava_batch(batch=8)
    samples = [{"input_ids": batch["input_ids"][i], "labels": batch["input_ids"][i],
                "pixel_values": batch["pixel_values"][i]} for i in range(8)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    history = train(model, samples, lambda s: collate(s, 0), [{"params": trainable, "lr": 1e-2}],
                    LoopSpec(epochs=2, batch_size=4, zero_stage=stage), "infra/deepspeed/zero2.json", progress=False)
    return [r["loss"] for r in history]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_zero_stage_trains_the_format_identically(fmt: str) -> None:
    reference = losses(fmt, 0)
    assert reference[-1] < reference[0]
    for stage in (1, 2, 3):
        assert losses(fmt, stage) == pytest.approx(reference, rel=1e-5), stage
