"""Stage `base`: build the embedded tiny LLaVA, or resolve a real llava-hf checkpoint, into one folder layout.

Run alone::

    python -m steps.base artifacts/base

With ``base.model: embedded`` the stage generates the world's corpus and captions (params ``world``) and
builds the base (tokenizer, pretrained Llama LM, caption-pretrained CLIP tower, projector). Otherwise
``base.model`` is a local llava-hf directory (copied) or a hub id fetched at ``base.revision``. Either way
the output loads with ``LlavaForConditionalGeneration.from_pretrained`` and ``AutoProcessor.from_pretrained``
and carries ``base_info.json`` (model id, revision, file hashes) for lineage.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

from qslaw.config import Params
from qslaw.fsutil import atomic_dir, file_hashes
from steps.common import StageError, main_guard, section
from steps.tracking import log_artifact, log_metrics, set_tags, stage_run

REQUIRED_FILES = ("config.json",)


def world_inputs(params: Params, tmp: Path) -> tuple[list[str], list[str], list, list]:
    """Corpus train/validation texts, (image, caption) pairs and (image, Q&A turns) records of the embedded world."""
    from qslaw.data.prepare import read_rows
    from qslaw.data.sources import load_captions, load_instructions
    from qslaw.embedded.world import generate_world
    from qslaw.embedded.world.generate import world_spec
    from qslaw.train.encode import load_image

    generate_world(world_spec(params), tmp / "world")
    corpus = {s: [r["text"] for r in read_rows(tmp / "world" / "corpus" / f"{s}.parquet")]
              for s in ("train", "validation")}
    world = tmp / "world" / "captions"
    captions = load_captions(str(world / "captions.json"), str(world / "images"))
    pairs = [(load_image(r["image"]), r["response"]) for r in captions]
    instruct = load_instructions(str(world / "instruct.json"), str(world / "images"))
    records = [(load_image(r["image"]), r["turns"]) for r in instruct]
    return corpus["train"], corpus["validation"], pairs, records


def build_embedded(params: Params, out_dir: Path) -> dict:
    from qslaw.embedded.base.builder import build_embedded_base, model_spec

    with tempfile.TemporaryDirectory() as tmp:
        train, validation, pairs, records = world_inputs(params, Path(tmp))
        report = build_embedded_base(out_dir, train, validation, pairs, model_spec(params), instructions=records)
    return report


def resolve_real(model: str, revision: str, out_dir: Path) -> None:
    """Copy a local llava-hf directory, or download a hub id at a pinned revision, into ``out_dir``."""
    source = Path(model)
    if source.is_dir():
        shutil.copytree(source, out_dir, dirs_exist_ok=True)
    else:
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(model, revision=revision, local_dir=out_dir)
        except Exception as e:  # offline, unknown id, gated repo
            raise StageError(f"base.model: cannot fetch hub id {model!r} at revision {revision!r} ({e}); "
                             "download it elsewhere and set base.model to the local llava-hf directory") from None
    missing = [f for f in REQUIRED_FILES if not (out_dir / f).exists()]
    if missing:
        raise StageError(f"base.model: {model} is not a llava-hf directory (missing {', '.join(missing)})")


def write_info(params: Params, out_dir: Path) -> dict:
    revision = "embedded" if params.base.model == "embedded" else params.base.revision
    if Path(params.base.model).is_dir():
        revision = "local"
    info = {"model": params.base.model, "revision": revision, "sha256": file_hashes(out_dir)}
    (out_dir / "base_info.json").write_text(json.dumps(info, indent=2))
    return info


def check_loads(out_dir: Path) -> dict:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    try:
        model = LlavaForConditionalGeneration.from_pretrained(out_dir)
        AutoProcessor.from_pretrained(out_dir)
    except Exception as e:
        raise StageError(f"base.model: the checkpoint does not load as a llava-hf model: {e}") from None
    return {f"params_{name}": sum(p.numel() for p in module.parameters()) for name, module in
            (("vision_tower", model.model.vision_tower), ("projector", model.model.multi_modal_projector),
             ("language_model", model.model.language_model))}


def build_metrics(report: dict) -> dict[str, float]:
    """The build report's scalar figures as flat metric names: ``lm_final_val_ppl``, ``tower_grid_cell_loss_after``,
    ``caption_word_cos_after``, ``wall_s_total`` ... (None, lists and curves left out)."""
    flat = {k: v for k, v in report.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for part in ("lm", "tower", "tower_grid", "caption", "instruct", "wall_s"):
        for key, value in (report.get(part) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                flat[f"{part}_{key}"] = value
    return flat


def run(params: Params, out_dir: Path) -> dict:
    """Build or resolve into a temporary directory, check it loads, then rename it to ``out_dir``."""
    with atomic_dir(out_dir) as tmp:
        if params.base.model == "embedded":
            report = build_embedded(params, tmp)
        else:
            resolve_real(params.base.model, params.base.revision, tmp)
            report = {}
        write_info(params, tmp)
        counts = check_loads(tmp)
    return {**counts, **build_metrics(report)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build or resolve the base llava-hf model.")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("base", section(params, "base", "world")):
            metrics = run(params, args.out_dir)
            info = json.loads((args.out_dir / "base_info.json").read_text())
            set_tags({"base.model": info["model"], "base.revision": info["revision"]})
            log_metrics(metrics)
            for name in ("build_report.json", "base_info.json"):
                if (args.out_dir / name).exists():
                    log_artifact(args.out_dir / name)

    from qslaw.embedded.base.builder import model_spec
    from qslaw.embedded.world.generate import world_spec

    main_guard("base", body, lambda p: (world_spec(p), model_spec(p)))


if __name__ == "__main__":
    main()
