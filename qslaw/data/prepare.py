"""Prepared data: the world's raw tables rendered into training/evaluation conversations, as parquet shards.

How it works
------------
Input is a world directory in the raw formats (ScienceQA parquet splits, a LLaVA caption JSON + image
folder, a wikitext parquet corpus). Output, written atomically::

    task_{train,validation,test}.parquet   the ScienceQA columns + id, context (IMG|TXT|NO), prompt (QCM
                                           human turn, <image> in front), response (LEA), eval_prompt
    captions.parquet                       id, image, prompt, response (caption conversations)
    text_{train,validation,test}.parquet   text (wikitext lines, untouched)
    manifest.json                          rows per table, context counts, sha256 of every file

Images live inside the parquet files (``datasets`` ``Image()`` feature: ``{bytes, path}``), never as loose
files. Tokenization is *not* done here: it depends on the base model's tokenizer, so training stages
tokenize (and cut text into chunks) themselves.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
from datasets import Dataset, Features, Image, Value

from qslaw.data.render import human_turn, lea
from qslaw.data.schema import SCIENCEQA_FEATURES, WIKITEXT_FEATURES, _quiet, context_type
from qslaw.fsutil import atomic_dir, file_hashes

SPLITS = ("train", "validation", "test")
TASK_FEATURES = Features({**SCIENCEQA_FEATURES, "id": Value("string"), "context": Value("string"),
                          "prompt": Value("string"), "response": Value("string"), "eval_prompt": Value("string")})
CAPTION_FEATURES = Features({"id": Value("string"), "image": Image(), "prompt": Value("string"),
                             "response": Value("string")})


def render_task(rows: list[dict], split: str, eval_prompt: str) -> list[dict]:
    """Add id, context, the QCM-LEA conversation and the evaluation prompt to ScienceQA rows."""
    out = []
    for i, row in enumerate(rows):
        has_image = row.get("image") is not None
        out.append({**row, "id": f"{split}-{i:06d}", "context": context_type(row),
                    "prompt": human_turn(row, has_image),
                    "response": lea(row["lecture"], row["solution"], int(row["answer"])),
                    "eval_prompt": human_turn(row, has_image, eval_prompt)})
    return out


def read_rows(path: Path) -> list[dict]:
    """A parquet table as a list of dicts (images stay ``{bytes, path}``)."""
    return pd.read_parquet(path).to_dict("records")


def _write(rows: list[dict], features: Features, path: Path) -> None:
    with _quiet():
        Dataset.from_list(rows, features=features).to_parquet(str(path))


def prepare_tables(task: dict[str, list[dict]], text: dict[str, list[dict]], captions: list[dict], out_dir: Path,
                   eval_prompt: str) -> dict:
    """Render task rows, text rows and caption rows (see :mod:`qslaw.data.sources`) into prepared shards +
    manifest under ``out_dir`` (atomically)."""
    manifest: dict = {"tables": {}}
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            rendered = render_task(task[split], split, eval_prompt)
            _write(rendered, TASK_FEATURES, tmp / f"task_{split}.parquet")
            manifest["tables"][f"task_{split}"] = {"rows": len(rendered),
                                                   "context": dict(Counter(r["context"] for r in rendered))}
            _write(text[split], WIKITEXT_FEATURES, tmp / f"text_{split}.parquet")
            manifest["tables"][f"text_{split}"] = {"rows": len(text[split])}
        _write(captions, CAPTION_FEATURES, tmp / "captions.parquet")
        manifest["tables"]["captions"] = {"rows": len(captions)}
        manifest["sha256"] = file_hashes(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def prepare_world(world_dir: Path, out_dir: Path, eval_prompt: str) -> dict:
    """Render a raw world directory (the embedded world's layout) through the same loaders as real data."""
    from qslaw.data.sources import load_captions, load_task, load_text

    world_dir = Path(world_dir)
    return prepare_tables(load_task(str(world_dir / "task")), load_text(str(world_dir / "corpus")),
                          load_captions(str(world_dir / "captions" / "captions.json"),
                                        str(world_dir / "captions" / "images")), out_dir, eval_prompt)
