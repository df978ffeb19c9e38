"""Image–caption pairs (LLaVA pretraining JSON) and visual Q&A about the same pictures (LLaVA-Instruct JSON).

How it works
------------
``caption_records`` samples ``n`` scenes from their own random stream and returns, per scene, the
PNG bytes, a caption record
``{"id": "000042", "image": "000042.png", "conversations": [{"from": "human", "value":
"<image>\\n<instruction>"}, {"from": "gpt", "value": <caption>}]}``
and an instruction record about the same image in the LLaVA-Instruct shape (several human/gpt turns,
``<image>`` in the first): short questions with one-sentence answers about what ``describe_scene`` states
(``scene_questions``: counts, colours, shapes, sizes and cells). The instruction is drawn from
``INSTRUCTIONS`` (brief-description prompts in the style of LLaVA's pretraining set); the caption is
``describe_scene``. ``image`` is relative to the images folder, as LLaVA's ``image_folder`` argument
expects. The base-model builder uses the captions for the tower and projector and the Q&A for its visual
instruction tuning (as LLaVA-1.5's base was tuned on VQA data before anyone fine-tunes it on ScienceQA); the
scenes come from the caption stream, never from the task splits.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from qslaw.embedded.world.names import sub_rng
from qslaw.embedded.world.scenes import COLORS, SHAPES, Scene, describe_scene, png_bytes, render_scene, sample_scene

INSTRUCTIONS = (
    "Describe the image briefly.",
    "Give a short description of the picture.",
    "Summarize the visual content of the image.",
    "What is in this picture? Answer briefly.",
    "Write a short caption for the image.",
    "Share a concise description of the image.",
    "Describe what you see in a few words.",
    "List the shapes in the image.",
)
MAX_TURNS = 6
"""Q&A turns per instruction record."""


def _plural(noun: str, n: int) -> str:
    return noun if n == 1 else f"{noun}s"


def scene_questions(rng: random.Random, scene: Scene) -> list[tuple[str, str]]:
    """Up to ``MAX_TURNS`` (question, answer) pairs about ``scene``, each answerable only from the picture.

    Answers are one sentence that restates the question and ends on what the picture shows ("The circle is
    red."), so the model learns to read the picture mid-sentence, where a ScienceQA solution needs it."""
    objs, n = scene.objects, len(scene.objects)
    color, shape = rng.choice(tuple(COLORS)), rng.choice(SHAPES)
    n_color, n_shape = scene.count(color=color), scene.count(shape=shape)
    pairs = [("How many shapes are in the picture?", f"The number of shapes is {n}."),
             (f"How many {color} shapes are there?", f"The number of {color} shapes is {n_color}."),
             (f"How many {shape}s are there?", f"The number of {shape}s is {n_shape}.")]
    if n == 1:
        o = objs[0]
        pairs += [("What colour is the shape?", f"The shape is {o.color}."),
                  ("Which shape is it?", f"It is a {o.shape}."),
                  ("Where is the shape?", f"The shape is in the {o.position}."),
                  ("Is the shape large or small?", f"The shape is {o.size}.")]
    else:
        o = rng.choice(objs)
        pairs.append((f"What is in the {o.position}?", f"In the {o.position} there is a {o.phrase()}."))
        for s in SHAPES:
            if scene.count(shape=s) == 1:
                pairs.append((f"What colour is the {s}?", f"The {s} is {next(x.color for x in objs if x.shape == s)}."))
        for o in scene.unique_by_look():
            pairs.append((f"Where is the {o.color} {o.shape}?", f"The {o.color} {o.shape} is in the {o.position}."))
    rng.shuffle(pairs)
    return pairs[:MAX_TURNS]


def caption_records(seed: int, n: int, image_size: int) -> list[tuple[dict[str, object], bytes, dict[str, object]]]:
    """``n`` (caption record, png bytes, instruction record) triples."""
    rng, qa_rng = sub_rng(seed, "captions"), sub_rng(seed, "instruct")
    out = []
    for i in range(n):
        scene = sample_scene(rng)
        record_id = f"{i:06d}"
        record = {"id": record_id, "image": f"{record_id}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{rng.choice(INSTRUCTIONS)}"},
            {"from": "gpt", "value": describe_scene(scene)},
        ]}
        turns = []
        for k, (question, answer) in enumerate(scene_questions(qa_rng, scene)):
            turns += [{"from": "human", "value": f"<image>\n{question}" if k == 0 else question},
                      {"from": "gpt", "value": answer}]
        instruct = {"id": record_id, "image": record["image"], "conversations": turns}
        out.append((record, png_bytes(render_scene(scene, image_size)), instruct))
    return out


def write_captions(records: list[tuple[dict[str, object], bytes, dict[str, object]]], out_dir: Path) -> None:
    """``out_dir/captions.json``, ``out_dir/instruct.json`` and ``out_dir/images/<id>.png``."""
    images = out_dir / "images"
    images.mkdir(parents=True)
    for record, data, _ in records:
        (images / str(record["image"])).write_bytes(data)
    for name, column in (("captions.json", 0), ("instruct.json", 2)):
        text = json.dumps([r[column] for r in records], indent=1, ensure_ascii=False)
        (out_dir / name).write_text(text + "\n", encoding="utf-8")
