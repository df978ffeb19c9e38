"""Real data sources: ScienceQA parquet (hub layout), WikiText parquet and raw text, a LLaVA caption JSON with
its image folder — each prepared exactly as the embedded world is, and each failure named."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from qslaw.config import load_params
from qslaw.data.prepare import read_rows
from qslaw.data.sources import (
    SCIENCEQA_FIELDS,
    SourceError,
    load_captions,
    load_instructions,
    load_llava_task,
    load_task,
    load_text,
)
from qslaw.embedded.world import WorldSpec, generate_world

ROOT = Path(__file__).resolve().parents[3]
SPEC = WorldSpec(seed=5, n_train=36, n_validation=18, n_test=18, n_captions=6, image_size=32, corpus_words=2000)
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The world re-laid out as users receive real data."""
    root = tmp_path_factory.mktemp("sources")
    world = root / "world"
    generate_world(SPEC, world)
    sqa = root / "ScienceQA" / "data"
    wiki = root / "wikitext" / "wikitext-2-raw-v1"
    raw = root / "wikitext-2-raw"
    for d in (sqa, wiki, raw):
        d.mkdir(parents=True)
    for split in SPLITS:
        shutil.copy(world / "task" / f"{split}.parquet", sqa / f"{split}-00000-of-00001-0a1b2c3d.parquet")
        shutil.copy(world / "corpus" / f"{split}.parquet", wiki / f"{split}-00000-of-00001.parquet")
        lines = [r["text"] for r in read_rows(world / "corpus" / f"{split}.parquet")]
        name = {"validation": "valid"}.get(split, split)  # the real wikitext-2-raw file names
        (raw / f"wiki.{name}.raw").write_text("".join(line or " \n" for line in lines), encoding="utf-8")
    captions = root / "LLaVA-Pretrain"
    shutil.copytree(world / "captions" / "images", captions / "picture_store")
    shutil.copy(world / "captions" / "captions.json", captions / "blip_laion_cc_sbu_558k.json")
    llava, problems = root / "llava", {}
    for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        records = []
        for i, row in enumerate(read_rows(world / "task" / f"{split}.parquet")):
            pid = f"{name}{i}"
            problems[pid] = {f: (list(row[f]) if f == "choices" else row[f]) for f in SCIENCEQA_FIELDS}
            problems[pid]["answer"] = int(row["answer"])
            record = {"id": pid, "conversations": [{"from": "human", "value": row["question"]},
                                                   {"from": "gpt", "value": row["solution"]}]}
            if row["image"] is not None:
                (llava / "images" / pid).mkdir(parents=True)
                (llava / "images" / pid / "image.png").write_bytes(row["image"]["bytes"])
                record["image"] = f"{pid}/image.png"
            records.append(record)
        llava.mkdir(exist_ok=True)
        (llava / f"llava_{name}_QCM-LEA.json").write_text(json.dumps(records))
    (llava / "problems.json").write_text(json.dumps(problems))
    return {"world": world, "sqa": sqa.parent, "wiki": wiki.parent, "raw": raw, "captions": captions,
            "llava": llava}


def without_image_paths(splits: dict[str, list[dict]]) -> dict[str, list[dict]]:
    return {s: [{**r, "image": r["image"] and r["image"]["bytes"]} for r in rows] for s, rows in splits.items()}


def test_llava_json_with_problems_json_loads_the_scienceqa_rows(real: dict[str, Path]) -> None:
    llava = real["llava"]
    rows = load_llava_task(str(llava / "llava_{split}_QCM-LEA.json"), str(llava / "problems.json"), "")
    assert without_image_paths(rows) == without_image_paths(load_task(str(real["world"] / "task")))
    with pytest.raises(SourceError, match=r"prepare\.task_metadata: .* is not ScienceQA's problems\.json"):
        load_llava_task(str(llava / "llava_{split}_QCM-LEA.json"), "", "")
    with pytest.raises(SourceError, match=r"needs '\{split\}'"):
        load_llava_task(str(llava / "llava_train_QCM-LEA.json"), str(llava / "problems.json"), "")


def test_real_layouts_load_the_same_rows_as_the_world(real: dict[str, Path]) -> None:
    world = real["world"]
    assert load_task(str(real["sqa"])) == load_task(str(world / "task"))
    assert load_text(str(real["wiki"])) == load_text(str(world / "corpus"))
    raw = load_text(str(real["raw"]))
    assert raw == load_text(str(world / "corpus"))
    captions = load_captions(str(real["captions"] / "blip_laion_cc_sbu_558k.json"),
                             str(real["captions"] / "picture_store"))
    assert captions == load_captions(str(world / "captions" / "captions.json"))
    task = load_task(str(real["sqa"]))["test"]
    assert all(isinstance(r["image"], dict | type(None)) for r in task)  # bytes kept, never decoded
    assert any(r["image"] and r["image"]["bytes"][:4] == b"\x89PNG" for r in task)


def test_prepare_stage_on_real_sources_writes_the_embedded_shards(real: dict[str, Path], tmp_path: Path) -> None:
    from steps import prepare

    params = load_params(ROOT / "profiles" / "smoke.yaml")
    params = dataclasses.replace(params, world=dataclasses.asdict(SPEC))
    embedded = prepare.run(params, tmp_path / "embedded")
    params = dataclasses.replace(params, prepare=dataclasses.replace(
        params.prepare, task_source=str(real["sqa"]), text_source=str(real["raw"]),
        caption_source=str(real["captions"] / "blip_laion_cc_sbu_558k.json"),
        caption_image_dir=str(real["captions"] / "picture_store")))
    from_files = prepare.run(params, tmp_path / "real")
    assert from_files["sha256"] == embedded["sha256"]  # byte-identical prepared shards
    assert from_files["tables"]["task_test"]["rows"] == SPEC.n_test


def test_missing_split_names_the_param_and_split(real: dict[str, Path], tmp_path: Path) -> None:
    partial = tmp_path / "sqa"
    shutil.copytree(real["sqa"], partial)
    next((partial / "data").glob("validation-*")).unlink()
    with pytest.raises(SourceError, match=r"prepare\.task_source: no parquet file for split\(s\) \['validation'\]"):
        load_task(str(partial))


def test_a_referenced_image_that_does_not_exist_is_named(real: dict[str, Path], tmp_path: Path) -> None:
    records = json.loads((real["captions"] / "blip_laion_cc_sbu_558k.json").read_text())
    records[2]["image"] = "missing/0001.png"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(records))
    with pytest.raises(SourceError, match=rf"record {records[2]['id']} references image 'missing/0001.png'"):
        load_captions(str(bad), str(real["captions"] / "picture_store"))


@pytest.mark.parametrize(("mend", "message"), [
    (lambda r: r["conversations"].pop(), r"has 5 turns; human and gpt turns must pair up"),
    (lambda r: r["conversations"][1].update({"from": "human"}), r"turn 1 must be \{'from': 'gpt'"),
    (lambda r: r["conversations"][0].update({"value": "What?"}), r"turn 0 lacks the '<image>' placeholder"),
    (lambda r: r.update({"image": "gone.png"}), r"references image 'gone.png'"),
])
def test_a_bad_instruction_record_is_named(real: dict[str, Path], tmp_path: Path, mend: object,
                                           message: str) -> None:
    records = json.loads((real["world"] / "captions" / "instruct.json").read_text())
    good = load_instructions(str(real["world"] / "captions" / "instruct.json"))
    assert good[1]["turns"][0][0] == records[1]["conversations"][0]["value"].removeprefix("<image>\n")
    records[1]["conversations"] = records[1]["conversations"][:6]
    mend(records[1])
    bad = tmp_path / "instruct.json"
    bad.write_text(json.dumps(records))
    with pytest.raises(SourceError, match=rf"base.instruct: record {records[1]['id']} " + message):
        load_instructions(str(bad), str(real["world"] / "captions" / "images"))


def test_non_utf8_text_is_named(real: dict[str, Path], tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(real["raw"], raw)
    (raw / "wiki.valid.raw").unlink()
    (raw / "wiki.validation.raw").write_bytes(b" = Title = \n caf\xe9 \n")
    with pytest.raises(SourceError, match=r"prepare\.text_source: .*wiki\.validation\.raw is not valid UTF-8"):
        load_text(str(raw))


def test_a_hub_id_offline_says_how_to_supply_local_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SourceError, match=r"prepare\.task_source: cannot load 'derek-thomas/ScienceQA'.*local"):
        load_task("derek-thomas/ScienceQA")
    with pytest.raises(SourceError, match=r"prepare\.text_source: cannot load .*local copy"):
        load_text("Salesforce/wikitext:wikitext-2-raw-v1")


def test_the_prepare_stage_turns_a_bad_source_into_a_stage_error(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from steps import prepare
    from steps.common import StageError

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    params = load_params(ROOT / "profiles" / "smoke.yaml")
    params = dataclasses.replace(params, prepare=dataclasses.replace(params.prepare,
                                                                     caption_source=str(tmp_path / "none.json")))
    with pytest.raises(StageError, match=r"prepare\.caption_source: .*none\.json is not a LLaVA caption JSON"):
        prepare.run(params, tmp_path / "out")
    assert not (tmp_path / "out").exists()
