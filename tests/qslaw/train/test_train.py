"""Encoding masks, mixing, and one DeepSpeed training run that moves only what it should."""

from __future__ import annotations

import pytest
import torch
from tiny_models import IMAGE_SIZE, IMAGE_TOKEN, N_IMAGE_TOKENS, tiny_llava, tiny_llava_batch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPImageProcessor, PreTrainedTokenizerFast

from qslaw.model.surgery import quantize_model, set_trainable
from qslaw.quant.spec import QuantSpec
from qslaw.train.data import mix
from qslaw.train.encode import IGNORE, collate, encode_chunk, encode_conversation
from qslaw.train.loop import LoopSpec, train

WORDS = ["<unk>", "<s>", "</s>", "<pad>", "a", "chat", "between", "curious", "user", "and", "an", "artificial",
         "intelligence", "assistant.", "the", "assistant", "gives", "helpful,", "detailed,", "polite", "answers",
         "to", "user's", "questions.", "USER:", "ASSISTANT:", "what", "colour?", "red.", "blue", "The", "answer",
         "is", "A.", "A", "The", "gives"]


class Processor:
    def __init__(self) -> None:
        vocab = {w: i for i, w in enumerate(dict.fromkeys(WORDS))}
        vocab["<image>"] = IMAGE_TOKEN
        raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        self.tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>",
                                                 eos_token="</s>", pad_token="<pad>",
                                                 additional_special_tokens=["<image>"])
        self.image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                                  crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def test_only_the_assistant_span_is_supervised() -> None:
    from PIL import Image

    proc = Processor()
    sample = encode_conversation(proc, "<image>\nwhat colour?", "red.", Image.new("RGB", (20, 20)),
                                 N_IMAGE_TOKENS, max_length=200)
    ids, labels = sample["input_ids"].tolist(), sample["labels"].tolist()
    supervised = [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    assert proc.tokenizer.decode(supervised) == "red. </s>"
    assert ids.count(IMAGE_TOKEN) == N_IMAGE_TOKENS
    assert sample["pixel_values"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(ValueError, match="max_length"):
        encode_conversation(proc, "<image>\nwhat colour?", "red.", Image.new("RGB", (20, 20)), N_IMAGE_TOKENS, 3)


def test_collate_pads_and_stacks_only_present_images() -> None:
    a = {"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([IGNORE, 6, 7]),
         "pixel_values": torch.zeros(3, 4, 4)}
    b = encode_chunk([8, 9])
    batch = collate([a, b], pad_id=3)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 3]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, 9, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["pixel_values"].shape == (1, 3, 4, 4)


@pytest.mark.parametrize("ratio,expected", [(1.0, 4), (0.5, 2), (3.0, 6), (0.0, 0)])
def test_mix_ratio_is_exact_and_capped(ratio: float, expected: int) -> None:
    mm = [{"k": "mm"}] * 4
    text = [{"k": "text"}] * 6
    samples, stats = mix(mm, text, ratio)
    assert stats["mix_text"] == expected == sum(s["k"] == "text" for s in samples)
    assert stats["mix_text_ratio"] == expected / 4


def test_deepspeed_loop_trains_gamma_and_projector_only() -> None:
    model = quantize_model(tiny_llava(), QuantSpec(group_size=32, start_layer=0, gamma_mode="packed"))
    set_trainable(model, ["gamma", "projector"])
    batch = tiny_llava_batch(batch=8)
    samples = [{"input_ids": batch["input_ids"][i], "labels": batch["input_ids"][i],
                "pixel_values": batch["pixel_values"][i]} for i in range(8)]
    before = {n: t.clone() for n, t in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    history = train(model, samples, lambda s: collate(s, 0), [{"params": trainable, "lr": 1e-2}],
                    LoopSpec(epochs=3, batch_size=4), "infra/deepspeed/zero2.json", progress=False)
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"]
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert any(n.endswith(".gamma") for n in changed) and any("multi_modal_projector" in n for n in changed)
    assert all(n.endswith(".gamma") or "multi_modal_projector" in n for n in changed), sorted(changed)[:4]


def test_a_non_finite_loss_stops_naming_the_phase_and_step() -> None:
    model = quantize_model(tiny_llava(), QuantSpec(group_size=32, start_layer=0, gamma_mode="packed"))
    set_trainable(model, ["gamma", "projector"])
    with torch.no_grad():
        model.model.multi_modal_projector.linear_1.weight.fill_(float("nan"))
    batch = tiny_llava_batch(batch=4)
    samples = [{"input_ids": batch["input_ids"][i], "labels": batch["input_ids"][i],
                "pixel_values": batch["pixel_values"][i]} for i in range(4)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    with pytest.raises(FloatingPointError, match=r"warmup: loss is nan at step 1"):
        train(model, samples, lambda s: collate(s, 0), [{"params": trainable, "lr": 1e-2}],
              LoopSpec(epochs=1, batch_size=4, desc="warmup"), "infra/deepspeed/zero2.json", progress=False)


def test_linear_schedule_places_the_exact_count_and_follows_the_line() -> None:
    from qslaw.train.data import schedule_slots, scheduled_text_count, text_share

    n_mm = 300
    n_text = scheduled_text_count(n_mm, 0.25, 3.0)
    slots = schedule_slots(n_mm + n_text, n_text, text_share(0.25), text_share(3.0))
    assert sum(slots) == n_text and len(slots) == n_mm + n_text
    window = 60
    for start in range(0, len(slots) - window + 1, window):
        centre = (start + window / 2) / (len(slots) - 1)
        expected = text_share(0.25) + (text_share(3.0) - text_share(0.25)) * centre
        assert abs(sum(slots[start:start + window]) / window - expected) <= 2 / window + 0.02
    assert scheduled_text_count(200, 1.0, 1.0) == 200  # a flat schedule is the fixed ratio


def test_scheduled_batches_use_every_sample_once_in_the_slot_kinds_and_reproducibly() -> None:
    from qslaw.train.data import schedule_slots, scheduled_batches

    is_text = [False] * 10 + [True] * 6
    slots = schedule_slots(16, 6, 0.2, 0.6)
    epoch0 = scheduled_batches(is_text, slots, 4, seed=1, epoch=0)
    flat = [i for b in epoch0 for i in b]
    assert sorted(flat) == list(range(16))
    assert [is_text[i] for i in flat] == slots
    assert epoch0 == scheduled_batches(is_text, slots, 4, seed=1, epoch=0)
    assert epoch0 != scheduled_batches(is_text, slots, 4, seed=1, epoch=1)
    with pytest.raises(ValueError, match="text slots"):
        scheduled_batches(is_text, schedule_slots(16, 5, 0.2, 0.6), 4, seed=1, epoch=0)
