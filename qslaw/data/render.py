"""Rendering ScienceQA rows and text into the conversations the model trains and is evaluated on.

How it works
------------
Exactly the reference converters (``scripts/convert_sqa_to_llava*.py``, LLaVA's vicuna_v1 template):

* human turn (QCM): ``"{question}\\nContext: {hint or 'N/A'}\\nOptions: (A) c0 (B) c1 ..."`` — a leading
  ``"Question: "`` stripped, double spaces collapsed; with an image, ``"<image>\\n"`` goes in front
  (LLaVA's ``preprocess_multimodal`` moves it there);
* assistant turn (LEA): ``"{lecture} {solution} The answer is {X}."`` — a leading ``"Answer: "`` stripped;
* template: ``"{system} USER: {human} ASSISTANT: {gpt}</s>"``, loss on the assistant span only;
* evaluation prompt ``qcm``: the same human turn, decoding from ``"... ASSISTANT:"``; ``qcm_letter`` adds
  LLaVA's single-prediction suffix ``"\\nAnswer with the option's letter from the given choices directly."``.

Text for the hybrid mix is joined with ``"\\n\\n"``, tokenized once and cut into non-overlapping chunks of
exactly ``L`` tokens (the remainder dropped), loss on every token, as in the released mixed dataset.
"""

from __future__ import annotations

import re
import string

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
IMAGE_TOKEN = "<image>"
LETTERS = string.ascii_uppercase
SINGLE_PRED = "\nAnswer with the option's letter from the given choices directly."


def _clean(text: str) -> str:
    return re.sub(r"  +", " ", text).strip()


def qcm(question: str, hint: str, choices: list[str]) -> str:
    """The human turn without image: question, context and lettered options."""
    options = " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    question = question.removeprefix("Question: ")
    return _clean(f"{question}\nContext: {hint.strip() or 'N/A'}\nOptions: {options}")


def lea(lecture: str, solution: str, answer: int) -> str:
    """The assistant turn: lecture, solution and the answer sentence."""
    return _clean(f"{lecture} {solution} The answer is {LETTERS[answer]}.".removeprefix("Answer: "))


def human_turn(row: dict, has_image: bool, eval_prompt: str | None = None) -> str:
    """QCM human turn with ``<image>`` in front when the row has an image."""
    text = qcm(row["question"], row.get("hint") or "", list(row["choices"]))
    if eval_prompt == "qcm_letter":
        text += SINGLE_PRED
    return f"{IMAGE_TOKEN}\n{text}" if has_image else text


def chat_prefix(human: str) -> str:
    """Everything before the assistant's answer (the model decodes from here)."""
    return f"{SYSTEM} USER: {human} ASSISTANT:"


def chat_answer(gpt: str, eos: str = "</s>") -> str:
    """The supervised span, with the separator space and the end-of-sequence token."""
    return f" {gpt}{eos}"


def chunk_ids(ids: list[int], length: int) -> list[list[int]]:
    """Non-overlapping chunks of exactly ``length`` tokens; the remainder is dropped."""
    return [ids[i:i + length] for i in range(0, len(ids) - length + 1, length)]
