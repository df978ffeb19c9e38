"""Batched greedy answer generation for LLaVA-style models: the ScienceQA decoding protocol.

How it works
------------
Each prompt is a human turn as :func:`qslaw.data.render.human_turn` renders it (``"<image>\\n"`` in front
when the problem has an image) plus that image or ``None``. For every prompt we

1. wrap it in the vicuna_v1 prefix, ``render.chat_prefix(human)`` = ``"{system} USER: {human} ASSISTANT:"``,
   and tokenize it with the processor's tokenizer (which adds BOS, as in training);
2. expand the single ``<image>`` id into the ``n`` ids the model consumes, computed from ``model.config``:
   ``n = (image_size // patch_size)²``, plus 1 when ``vision_feature_select_strategy == "full"`` keeps CLS.
   We expand ids ourselves rather than trusting the processor's string expansion, so the count can only
   come from the model that will consume it; a prompt whose ``<image>`` count disagrees with its image
   (0 or 1) is an error;
3. LEFT-pad a batch to a common width with the pad id (``<unk>`` in LLaVA) and a zero attention mask, so
   every row ends at the same position and the new tokens line up;
4. run the image processor on the batch's images only, in prompt order: ``pixel_values`` is
   ``(n_images, 3, H, W)`` in the model's dtype, or absent for a text-only batch — LLaVA scatters image
   features into the ``<image>`` positions in order, so image and text-only rows can share a batch;
5. ``model.generate`` greedily (``do_sample=False``, ``num_beams=1``, no temperature) for at most
   ``max_new_tokens``; a finished row is padded until the batch ends;
6. keep only the new tokens, cut at the first eos, decode without special tokens and strip.

Padding is masked and positions follow the mask, so a prompt decodes to the same text in any batch; the
tests pin batched == one-at-a-time.

Differences from the reference (``llava/eval/model_vqa_science.py``): it decodes one question at a time
with ``temperature=0.2`` sampling by default and ``max_new_tokens=1024``; we decode greedily in batches
(LLaVA's own SQA numbers use temperature 0) and take ``max_new_tokens`` from :class:`GenerationProtocol`.
Other knobs of the checkpoint's ``generation_config`` (e.g. a repetition penalty) still apply; the
embedded base sets none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from qslaw.data import render
from qslaw.eval.runtime import evaluating, model_device

PROMPT_FORMATS = ("qcm", "qcm_letter")


@dataclass(frozen=True)
class GenerationProtocol:
    """The pinned decoding protocol, logged with every evaluation."""

    max_new_tokens: int
    """Most tokens generated per answer (the reference allows 1024)."""
    batch_size: int
    """Prompts decoded together; does not change the texts."""
    prompt_format: str = "qcm"
    """'qcm' (question, context, options) or 'qcm_letter' (plus LLaVA's single-letter instruction)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format: must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")

    def eval_prompt(self) -> str | None:
        """The `eval_prompt` argument of `render.human_turn`."""
        return None if self.prompt_format == "qcm" else self.prompt_format

    def to_dict(self) -> dict:
        """Flat record for logging, with the fixed parts of the protocol spelled out."""
        return {**asdict(self), "decoding": "greedy", "padding": "left", "template": "vicuna_v1"}


def num_image_tokens(config: object) -> int:
    """How many `<image>` ids one image occupies in a LLaVA prompt."""
    vision = config.vision_config
    n = (vision.image_size // vision.patch_size) ** 2
    return n + 1 if config.vision_feature_select_strategy == "full" else n


def expand_image(ids: Sequence[int], image_id: int, n: int) -> list[int]:
    """`ids` with every `image_id` repeated `n` times."""
    return [t for i in ids for t in ([i] * n if i == image_id else [i])]


def encode_prompt(tokenizer: object, human: str, has_image: bool, image_id: int, n_image: int) -> list[int]:
    """Token ids of the chat prefix around `human`, image placeholder expanded."""
    ids = tokenizer(render.chat_prefix(human))["input_ids"]
    if ids.count(image_id) != int(has_image):
        raise ValueError(f"prompt has {ids.count(image_id)} {render.IMAGE_TOKEN} ids but has_image={has_image}: "
                         f"{human[:80]!r}")
    return expand_image(ids, image_id, n_image)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(input_ids, attention_mask)`, both `(len(rows), max_len)`, padded on the left."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[r, width - len(row):] = 1
    return ids, mask


def pixel_values(processor: object, images: Sequence[Image.Image | None]) -> torch.Tensor | None:
    """Processed pixels of the non-None images, in order; None when there are none."""
    present = [image.convert("RGB") for image in images if image is not None]
    if not present:
        return None
    return processor.image_processor(present, return_tensors="pt")["pixel_values"]


def decode_new(tokenizer: object, new_ids: torch.Tensor, eos_id: int) -> str:
    """Text of the generated ids up to the first eos, without special tokens, stripped."""
    ids = new_ids.tolist()
    ids = ids[: ids.index(eos_id)] if eos_id in ids else ids
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


@torch.inference_mode()
def generate_batch(model: nn.Module, processor: object, prompts: Sequence[tuple[str, Image.Image | None]],
                   max_new_tokens: int) -> list[str]:
    """Greedy answers to one batch of (human turn, image) prompts."""
    tok, device = processor.tokenizer, model_device(model)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = [encode_prompt(tok, human, image is not None, model.config.image_token_id,
                          num_image_tokens(model.config)) for human, image in prompts]
    ids, mask = left_pad(rows, pad_id)
    pixels = pixel_values(processor, [image for _, image in prompts])
    extra = {} if pixels is None else {"pixel_values": pixels.to(device=device, dtype=model.dtype)}
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False, num_beams=1,
                         max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=pad_id, **extra)
    return [decode_new(tok, row, tok.eos_token_id) for row in out[:, ids.shape[1]:].cpu()]


def generate_answers(model: nn.Module, processor: object, prompts: Sequence[tuple[str, Image.Image | None]],
                     max_new_tokens: int, batch_size: int, progress: bool = True) -> list[str]:
    """Greedy answers to every prompt, in order, `batch_size` prompts at a time (with a progress bar)."""
    answers: list[str] = []
    starts = range(0, len(prompts), batch_size)
    with evaluating(model):
        for i in tqdm(starts, desc="generate", unit="batch", disable=not progress):
            answers += generate_batch(model, processor, prompts[i:i + batch_size], max_new_tokens)
    return answers
