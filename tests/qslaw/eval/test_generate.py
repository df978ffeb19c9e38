"""Batched greedy generation on a tiny LLaVA: batch-invariant, deterministic, mixed image/text batches."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image
from tiny_models import IMAGE_SIZE, IMAGE_TOKEN, N_IMAGE_TOKENS, PATCH, tiny_llava
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPImageProcessorPil, LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast

from qslaw.data import render
from qslaw.eval.generate import GenerationProtocol, encode_prompt, generate_answers, num_image_tokens

SPECIALS = ["<unk>", "<s>", "</s>"]
CORPUS = render.chat_prefix("Which shape is red ?\nContext: N/A\nOptions: (A) circle (B) square (C) triangle")
WORDS = sorted({w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(CORPUS)})


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: specials at 0..2, the prompt words, filler words, `<image>` at the model's id."""
    words = WORDS + [f"w{i}" for i in range(IMAGE_TOKEN - len(SPECIALS) - len(WORDS))]
    vocab = {t: i for i, t in enumerate(SPECIALS + words)} | {"<image>": IMAGE_TOKEN}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>", extra_special_tokens={"image_token": "<image>"})


@pytest.fixture(scope="module")
def processor() -> LlavaProcessor:
    images = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                   crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return LlavaProcessor(image_processor=images, tokenizer=tiny_tokenizer(), patch_size=PATCH,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)


@pytest.fixture(scope="module")
def model() -> LlavaForConditionalGeneration:
    model = tiny_llava(seed=1)
    with torch.no_grad():  # sharpen the logits so greedy choices are far from ties
        model.lm_head.weight.mul_(20)
    return model


COLOURS = ("black", "white", "red", "blue")


def image(k: int) -> Image.Image:
    """A solid, non-square picture: different colours steer the tiny model to different answers."""
    return Image.new("RGB", (IMAGE_SIZE + 4, IMAGE_SIZE), COLOURS[k])


def prompts() -> list[tuple[str, Image.Image | None]]:
    """Image and text-only prompts of different lengths, interleaved."""
    return [
        ("<image>\nWhich shape is red ?\nContext : N/A\nOptions : (A) circle (B) square", image(0)),
        ("Which shape is red ?\nContext : N/A\nOptions : (A) circle", None),
        ("<image>\nWhich shape ?\nOptions : (A) circle (B) square (C) triangle", image(1)),
        ("Which shape is red ? red red red red\nContext : N/A\nOptions : (A) circle (B) square (C) triangle", None),
        ("<image>\nWhich ?", image(2)),
    ]


def test_image_token_count_matches_model(model: LlavaForConditionalGeneration, processor: LlavaProcessor) -> None:
    assert num_image_tokens(model.config) == N_IMAGE_TOKENS
    ids = encode_prompt(processor.tokenizer, prompts()[0][0], True, IMAGE_TOKEN, N_IMAGE_TOKENS)
    assert ids[0] == 1 and ids.count(IMAGE_TOKEN) == N_IMAGE_TOKENS and 0 not in ids
    with pytest.raises(ValueError, match="has_image"):
        encode_prompt(processor.tokenizer, prompts()[1][0], True, IMAGE_TOKEN, N_IMAGE_TOKENS)


def test_batched_equals_one_at_a_time_and_is_deterministic(model: LlavaForConditionalGeneration,
                                                           processor: LlavaProcessor) -> None:
    one = generate_answers(model, processor, prompts(), max_new_tokens=4, batch_size=1, progress=False)
    mixed = generate_answers(model, processor, prompts(), max_new_tokens=4, batch_size=3, progress=False)
    again = generate_answers(model, processor, prompts(), max_new_tokens=4, batch_size=3, progress=False)
    assert one == mixed == again
    assert len(one) == 5 and any(one) and len(set(one)) > 1


def test_text_only_and_image_only_batches(model: LlavaForConditionalGeneration, processor: LlavaProcessor) -> None:
    every = generate_answers(model, processor, prompts(), max_new_tokens=4, batch_size=5, progress=False)
    text = [p for p in prompts() if p[1] is None]
    images = [p for p in prompts() if p[1] is not None]
    assert generate_answers(model, processor, text, 4, batch_size=2, progress=False) == [every[1], every[3]]
    assert generate_answers(model, processor, images, 4, batch_size=3, progress=False) == [every[0], every[2], every[4]]


def test_image_changes_the_answer(model: LlavaForConditionalGeneration, processor: LlavaProcessor) -> None:
    human = prompts()[0][0]
    answers = generate_answers(model, processor, [(human, image(0)), (human, image(1))], 6, 2, progress=False)
    assert answers[0] != answers[1]


def test_protocol_is_frozen_validated_and_logged() -> None:
    protocol = GenerationProtocol(max_new_tokens=64, batch_size=8, prompt_format="qcm_letter")
    assert protocol.to_dict() == {"max_new_tokens": 64, "batch_size": 8, "prompt_format": "qcm_letter",
                                  "decoding": "greedy", "padding": "left", "template": "vicuna_v1"}
    assert protocol.eval_prompt() == "qcm_letter" and GenerationProtocol(8, 1).eval_prompt() is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        protocol.batch_size = 1
    with pytest.raises(ValueError, match="prompt_format"):
        GenerationProtocol(8, 1, prompt_format="free")
