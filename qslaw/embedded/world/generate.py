"""The synthetic world: task data, captions and corpus from one seed, written atomically.

How it works
------------
``generate_world(spec, out_dir)`` writes::

    out_dir/task/{train,validation,test}.parquet     ScienceQA schema (schema.SCIENCEQA_FEATURES)
    out_dir/captions/captions.json + images/*.png    LLaVA pretraining JSON (captions.py)
    out_dir/captions/instruct.json                   LLaVA-Instruct JSON: Q&A about the same images
    out_dir/corpus/{train,validation,test}.parquet   wikitext-2-raw-v1 layout (corpus.py)
    out_dir/manifest.json                            spec, counts, sha256 of every other file

Task problems cycle through the 18 cells context (IMG, TXT, NO) × subject × grade band, so every
cell gets ``n // 18`` or one more problems per split; within a cell a template is drawn at random
(``img_questions``, ``txt_questions``, ``no_questions``). A problem whose ``Problem.key()`` was already
drawn, in this or an earlier split (train, then validation, then test), is drawn again, so no
question + choices + context appears twice. The rows of a split are shuffled at the end.

Determinism: every random stream is ``names.sub_rng(seed, label)``, PNGs carry no metadata,
parquet and JSON carry no time stamps, so one spec always gives byte-identical files.
Atomicity: everything is written to a hidden temporary folder next to ``out_dir`` that replaces
``out_dir`` by a rename only once complete; on any error the temporary folder is removed and an
existing ``out_dir`` is left as it was.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from qslaw.config import Params, build
from qslaw.data.schema import write_scienceqa, write_wikitext
from qslaw.embedded.world import img_questions, no_questions, txt_questions
from qslaw.embedded.world.captions import caption_records, write_captions
from qslaw.embedded.world.corpus import build_corpus, word_count
from qslaw.embedded.world.facts import KnowledgeBase, build_knowledge_base
from qslaw.embedded.world.names import sub_rng
from qslaw.embedded.world.problems import (
    BANDS,
    CONTEXTS,
    SUBJECTS,
    AnswerDeck,
    Problem,
    Template,
    TemplateContext,
    finalize,
)
from qslaw.fsutil import atomic_dir, file_hashes

SPLITS = ("train", "validation", "test")
CELLS = tuple((c, s, b) for c in CONTEXTS for s in SUBJECTS for b in BANDS)
TEMPLATES: dict[str, dict[tuple[str, str], tuple[Template, ...]]] = {
    "IMG": img_questions.TEMPLATES, "TXT": txt_questions.TEMPLATES, "NO": no_questions.TEMPLATES}
MAX_TRIES = 500
WORKED_EXAMPLES = 3
"""Training solutions per lecture (IMG and TXT lectures: their solutions restate the context) that the corpus's
lesson articles give as worked examples; a NO solution would plant one memorised fact after its lecture, and the
fine-tuned 4-layer LM then wrote that sentence for every question of the lecture."""


@dataclass(frozen=True)
class WorldSpec:
    """Size and seed of the synthetic world (the ``prepare`` stage's params)."""

    seed: int = 0
    """Seed of every random stream: knowledge base, scenes, questions, captions, corpus."""
    n_train: int = 2000
    """Task problems in the train split (at least 18: one per context × subject × grade band)."""
    n_validation: int = 300
    """Task problems in the validation split (at least 18)."""
    n_test: int = 500
    """Task problems in the test split (at least 18)."""
    n_captions: int = 2000
    """Image–caption pairs."""
    image_size: int = 64
    """Side of every square picture, in pixels (16–1024)."""
    corpus_words: int = 200_000
    """Target words of the train corpus; validation and test get a tenth each. Fact articles (~20k words)
    are always written, whatever the target."""

    def __post_init__(self) -> None:
        for name in ("seed", "n_train", "n_validation", "n_test", "n_captions", "image_size", "corpus_words"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be an int, got {getattr(self, name)!r}")
        checks = {"seed": self.seed >= 0, "n_captions": self.n_captions >= 1,
                  "image_size": 16 <= self.image_size <= 1024, "corpus_words": self.corpus_words >= 1000}
        checks.update({f"n_{s}": self.split_size(s) >= len(CELLS) for s in SPLITS})
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: out of range, got {getattr(self, name)!r}")

    def split_size(self, split: str) -> int:
        """Task problems of ``split``."""
        return getattr(self, f"n_{split}")


def _draw(rng: random.Random, cell: tuple[str, str, str], tctx: TemplateContext, deck: AnswerDeck,
          seen: set[tuple[str, ...]], image_size: int) -> Problem:
    """One new problem of ``cell``; retries templates that do not fit and problems already seen."""
    context, subject, band = cell
    for _ in range(MAX_TRIES):
        draft = rng.choice(TEMPLATES[context][(subject, band)])(rng, tctx)
        if draft is None:
            continue
        problem = finalize(draft, band, context, deck, rng, image_size)
        if problem.key() not in seen:
            seen.add(problem.key())
            return problem
    raise RuntimeError(f"no new problem for {cell} in {tctx.split} after {MAX_TRIES} tries")


def build_split(spec: WorldSpec, kb: KnowledgeBase, split: str, seen: set[tuple[str, ...]]) -> list[Problem]:
    """The problems of one split, every cell in turn, then shuffled."""
    rng = sub_rng(spec.seed, f"task:{split}")
    deck, tctx = AnswerDeck(rng), TemplateContext(kb, split)
    problems = [_draw(rng, CELLS[i % len(CELLS)], tctx, deck, seen, spec.image_size)
                for i in range(spec.split_size(split))]
    rng.shuffle(problems)
    return problems


def build_problems(spec: WorldSpec, kb: KnowledgeBase) -> dict[str, list[Problem]]:
    """All task splits, de-duplicated across splits."""
    seen: set[tuple[str, ...]] = set()
    return {split: build_split(spec, kb, split, seen) for split in SPLITS}


def task_counts(problems: list[Problem]) -> dict[str, object]:
    """Counts of one split by context, subject, grade band, their product and answer slot."""
    band = {p: "G1-6" if int(p.grade.removeprefix("grade")) <= 6 else "G7-12" for p in problems}
    return {
        "total": len(problems),
        "context": dict(sorted(Counter(p.context for p in problems).items())),
        "subject": dict(sorted(Counter(p.subject for p in problems).items())),
        "grade_band": dict(sorted(Counter(band.values()).items())),
        "cells": dict(sorted(Counter(f"{p.context}|{p.subject}|{band[p]}" for p in problems).items())),
        "answer_slot": dict(sorted(Counter(f"{p.answer}/{len(p.choices)}" for p in problems).items())),
    }


def corpus_counts(lines: list[str]) -> dict[str, int]:
    """Rows, words and articles (top-level headings) of one corpus split."""
    articles = sum(line.startswith(" = ") and not line.startswith(" = = ") for line in lines)
    return {"lines": len(lines), "words": word_count(lines), "articles": articles}


def _write_world(spec: WorldSpec, root: Path) -> dict[str, object]:
    kb = build_knowledge_base(spec.seed)
    problems = build_problems(spec, kb)
    (root / "task").mkdir()
    for split, rows in problems.items():
        write_scienceqa([p.row() for p in rows], root / "task" / f"{split}.parquet")
    captions = caption_records(spec.seed, spec.n_captions, spec.image_size)
    write_captions(captions, root / "captions")
    lessons = sorted({(p.subject, p.category, p.lecture) for p in problems["train"]})
    examples: dict[str, list[str]] = {}
    for p in (p for p in problems["train"] if p.context != "NO"):
        seen = examples.setdefault(p.lecture, [])
        if len(seen) < WORKED_EXAMPLES and p.solution not in seen:
            seen.append(p.solution)
    corpus = build_corpus(kb, spec.seed, spec.corpus_words, lessons, examples)
    (root / "corpus").mkdir()
    for split, lines in corpus.items():
        write_wikitext(lines, root / "corpus" / f"{split}.parquet")
    manifest = {
        "spec": dataclasses.asdict(spec),
        "task": {split: task_counts(rows) for split, rows in problems.items()},
        "captions": {"pairs": len(captions)},
        "corpus": {split: corpus_counts(lines) for split, lines in corpus.items()},
        "files": file_hashes(root),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def generate_world(spec: WorldSpec, out_dir: Path) -> dict[str, object]:
    """Write the whole world under ``out_dir`` (replacing it) and return the manifest."""
    with atomic_dir(out_dir) as tmp:
        return _write_world(spec, tmp)


def world_spec(params: Params) -> WorldSpec:
    """The pipeline params' ``world`` section as a :class:`WorldSpec`, checked as strictly as any other section
    (``ValueError`` naming ``world.<key>``); :mod:`qslaw.config` keeps it a plain mapping because the method
    library never imports this package."""
    return build(WorldSpec, params.world, "world")
