"""Turning conversations and text chunks into model inputs, and batching them.

How it works
------------
A conversation sample is ``chat_prefix(human)`` followed by ``chat_answer(gpt)`` (see
:mod:`qslaw.data.render`). The two parts are tokenized separately and concatenated, so the label mask is
exact: prefix tokens get label ``-100`` and only the assistant span (answer + ``</s>``) is supervised. The
single ``<image>`` placeholder is expanded into as many image tokens as the vision tower yields
(``(image_size / patch_size)²``, plus one with the ``full`` feature strategy) before tokenizing, and the
image becomes ``pixel_values`` through the processor's image processor. Sequences longer than
``max_length`` are cut at the end, as LLaVA does (a sample cut before its answer adds no loss); cutting into
the image tokens, which sit at the front, is an error.

A text chunk is ``L`` token ids with labels equal to the ids (loss on every token) and no image.

:func:`collate` right-pads to the longest sample with the pad id (labels ``-100``, attention mask 0) and
stacks ``pixel_values`` only for the samples that have an image, in batch order, which is how
``LlavaForConditionalGeneration`` matches image features to image tokens in a batch mixing text-only
and multimodal samples.
"""

from __future__ import annotations

import io

import torch
from PIL import Image

from qslaw.data.render import IMAGE_TOKEN, chat_answer, chat_prefix

IGNORE = -100


def image_token_count(config: object) -> int:
    """Image tokens per image that a llava-hf config expects in the prompt."""
    vision = config.vision_config
    n = (vision.image_size // vision.patch_size) ** 2
    return n + (getattr(config, "vision_feature_select_strategy", "default") == "full")


def load_image(image: object) -> Image.Image | None:
    """A PIL image from a datasets Image value ({'bytes', 'path'}), raw bytes, a PIL image or None."""
    if image is None:
        return None
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    data = image.get("bytes") if isinstance(image, dict) else image
    if data is None and isinstance(image, dict) and image.get("path"):
        return Image.open(image["path"]).convert("RGB")
    return Image.open(io.BytesIO(data)).convert("RGB")


def encode_conversation(processor: object, human: str, gpt: str, image: Image.Image | None, n_image_tokens: int,
                        max_length: int) -> dict:
    """Input ids, labels (assistant span only) and pixel values of one conversation."""
    tok = processor.tokenizer
    prefix = chat_prefix(human).replace(IMAGE_TOKEN, IMAGE_TOKEN * n_image_tokens)
    prefix_ids = tok(prefix, add_special_tokens=True).input_ids
    answer_ids = tok(chat_answer(gpt, eos=""), add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = (prefix_ids + answer_ids)[:max_length]
    labels = ([IGNORE] * len(prefix_ids) + answer_ids)[:max_length]
    sample = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
    if image is not None:
        image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
        positions = [i for i, t in enumerate(prefix_ids) if t == image_id]
        if len(positions) != n_image_tokens:
            raise ValueError(f"prompt: a sample with an image needs one {IMAGE_TOKEN} placeholder, "
                             f"got {len(positions)} image tokens for {n_image_tokens} expected: {human[:60]!r}")
        if positions[-1] >= max_length:
            raise ValueError(f"max_length: {max_length} cuts into the {n_image_tokens} image tokens of a prompt")
        sample["pixel_values"] = processor.image_processor(images=image, return_tensors="pt").pixel_values[0]
    return sample


def encode_chunk(ids: list[int]) -> dict:
    """A text chunk: loss on every token, no image."""
    t = torch.tensor(ids)
    return {"input_ids": t, "labels": t.clone()}


def collate(samples: list[dict], pad_id: int) -> dict:
    """Right-pad a list of encoded samples into one batch."""
    width = max(len(s["input_ids"]) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for i, s in enumerate(samples):
        n = len(s["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = s["input_ids"], s["labels"], 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    pixels = [s["pixel_values"] for s in samples if "pixel_values" in s]
    if pixels:
        batch["pixel_values"] = torch.stack(pixels)
    return batch
