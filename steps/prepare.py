"""Stage `prepare`: build or load the task data, captions and text corpus; render conversations; write shards.

Run alone::

    python -m steps.prepare artifacts/prepare

Sources (params ``prepare``): the embedded world (default), or ScienceQA-schema parquet, WikiText parquet or
raw text, and a LLaVA caption JSON + image folder — local paths (never the network) or hub ids; see
:mod:`qslaw.data.sources`. Writes ``task_{split}.parquet`` (ScienceQA columns + QCM-LEA conversation +
evaluation prompt),
``captions.parquet``, ``text_{split}.parquet`` and ``manifest.json`` (counts and sha256 of every file),
all with images inside the parquet files; see :mod:`qslaw.data.prepare`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from qslaw.config import Params
from steps.common import StageError, main_guard, section
from steps.tracking import log_artifact, log_metrics, stage_run


def run(params: Params, out_dir: Path) -> dict:
    """Load each source (embedded world or real data), render and write the prepared shards."""
    from qslaw.data.prepare import prepare_tables
    from qslaw.data.sources import SourceError, load_captions, load_llava_task, load_task, load_text
    from qslaw.embedded.world import generate_world
    from qslaw.embedded.world.generate import world_spec

    p = params.prepare
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        if p.uses_embedded:
            generate_world(world_spec(params), world)
        try:
            if p.task_source.endswith(".json"):
                task = load_llava_task(p.task_source, p.task_metadata, p.task_image_dir)
            else:
                task = load_task(str(world / "task") if p.task_source == "embedded" else p.task_source)
            text = load_text(str(world / "corpus") if p.text_source == "embedded" else p.text_source)
            captions = (load_captions(str(world / "captions" / "captions.json"), str(world / "captions" / "images"))
                        if p.caption_source == "embedded" else load_captions(p.caption_source, p.caption_image_dir))
        except SourceError as e:
            raise StageError(str(e)) from None
        return prepare_tables(task, text, captions, out_dir, p.eval_prompt)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare the task, caption and text tables.")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)

    def body(params: Params) -> None:
        with stage_run("prepare", section(params, "prepare", "world")):
            manifest = run(params, args.out_dir)
            log_metrics({f"rows_{name}": t["rows"] for name, t in manifest["tables"].items()})
            log_artifact(args.out_dir / "manifest.json")

    from qslaw.embedded.world.generate import world_spec

    main_guard("prepare", body, world_spec)


if __name__ == "__main__":
    main()
