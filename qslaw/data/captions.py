"""Image–caption pairs in the LLaVA pretraining (LCS-558K) JSON shape.

How it works
------------
``caption_records`` samples ``n`` scenes from their own random stream and returns, per scene, the
PNG bytes and a record
``{"id": "000042", "image": "000042.png", "conversations": [{"from": "human", "value":
"<image>\\n<instruction>"}, {"from": "gpt", "value": <caption>}]}``.
The instruction is drawn from ``INSTRUCTIONS`` (brief-description prompts in the style of LLaVA's
pretraining set); the caption is ``describe_scene``: the object count and every object's size,
colour, shape and cell. ``image`` is relative to the images folder, as LLaVA's ``image_folder``
argument expects.
"""

from __future__ import annotations

import json
from pathlib import Path

from qslaw.data.names import sub_rng
from qslaw.data.scenes import describe_scene, png_bytes, render_scene, sample_scene

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


def caption_records(seed: int, n: int, image_size: int) -> list[tuple[dict[str, object], bytes]]:
    """``n`` (record, png bytes) pairs."""
    rng = sub_rng(seed, "captions")
    pairs = []
    for i in range(n):
        scene = sample_scene(rng)
        record_id = f"{i:06d}"
        record = {"id": record_id, "image": f"{record_id}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{rng.choice(INSTRUCTIONS)}"},
            {"from": "gpt", "value": describe_scene(scene)},
        ]}
        pairs.append((record, png_bytes(render_scene(scene, image_size))))
    return pairs


def write_captions(pairs: list[tuple[dict[str, object], bytes]], out_dir: Path) -> None:
    """``out_dir/captions.json`` and ``out_dir/images/<id>.png``."""
    images = out_dir / "images"
    images.mkdir(parents=True)
    for record, data in pairs:
        (images / str(record["image"])).write_bytes(data)
    text = json.dumps([record for record, _ in pairs], indent=1, ensure_ascii=False)
    (out_dir / "captions.json").write_text(text + "\n", encoding="utf-8")
