"""Rendering matches the reference converters (QCM-LEA, vicuna_v1) and prepared shards keep images inside."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from qslaw.data.prepare import prepare_world
from qslaw.data.render import chat_prefix, chunk_ids, human_turn, lea, qcm
from qslaw.embedded.world import WorldSpec, generate_world

ROW = {"question": "Question: Which  animal lives in Lake Varn?", "hint": "", "choices": ["glorp", "savlusk"],
       "answer": 1, "lecture": "A habitat is a home.", "solution": "The savlusk lives there."}


def test_qcm_prompt_is_the_reference_format() -> None:
    assert qcm(ROW["question"], ROW["hint"], ROW["choices"]) == (
        "Which animal lives in Lake Varn?\nContext: N/A\nOptions: (A) glorp (B) savlusk")
    assert qcm("Q?", " A fact. ", ["x", "y", "z"]).endswith("Context: A fact.\nOptions: (A) x (B) y (C) z")


def test_image_token_goes_in_front_and_letter_suffix_is_optional() -> None:
    assert human_turn(ROW, has_image=True).startswith("<image>\nWhich animal")
    assert human_turn(ROW, has_image=False).startswith("Which animal")
    suffix = "Answer with the option's letter from the given choices directly."
    assert human_turn(ROW, False, "qcm_letter").endswith(suffix)


def test_lea_answer_and_template() -> None:
    assert lea(ROW["lecture"], ROW["solution"], ROW["answer"]) == (
        "A habitat is a home. The savlusk lives there. The answer is B.")
    prefix = chat_prefix("hi")
    assert prefix.startswith("A chat between a curious user") and prefix.endswith(" USER: hi ASSISTANT:")


def test_chunks_are_exact_and_drop_the_remainder() -> None:
    assert chunk_ids(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert chunk_ids([1, 2], 4) == []


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prep")
    generate_world(WorldSpec(n_train=36, n_validation=18, n_test=18, n_captions=6, image_size=32,
                             corpus_words=2000), root / "world")
    prepare_world(root / "world", root / "prepared", "qcm")
    return root / "prepared"


def test_prepared_tables_hold_images_conversations_and_a_manifest(prepared: Path) -> None:
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["tables"]["task_train"]["rows"] == 36 and manifest["tables"]["captions"]["rows"] == 6
    assert set(manifest["sha256"]) == {p.name for p in prepared.glob("*.parquet")}
    task = pd.read_parquet(prepared / "task_train.parquet")
    img = task[task.context == "IMG"]
    assert len(img) and all(isinstance(r["bytes"], bytes) for r in img.image)
    assert all(p.startswith("<image>\n") for p in img.prompt)
    assert all(r.response.endswith(f"The answer is {'ABCDE'[r.answer]}.") for r in task.itertuples())
    assert task.id.is_unique
    assert not list(prepared.rglob("*.png"))
