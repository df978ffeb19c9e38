"""Contract tests of the synthetic world generator (small sizes: a few seconds on 2 cores)."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Features
from PIL import Image

import qslaw.embedded.world.generate as world_module
from qslaw.data.schema import SCIENCEQA_FEATURES, context_type
from qslaw.data.sources import load_instructions
from qslaw.embedded.world import WorldSpec, describe_scene, generate_world, render_scene
from qslaw.embedded.world.captions import MAX_TURNS, scene_questions
from qslaw.embedded.world.facts import build_knowledge_base, fact_keywords, strip_article
from qslaw.embedded.world.generate import CELLS, SPLITS, build_problems, file_hashes
from qslaw.embedded.world.img_questions import COLOR_LECTURE, TEMPLATES, count_all, fill_in_color, read_map_key
from qslaw.embedded.world.problems import option_head, pick_distractors, written_option
from qslaw.embedded.world.scenes import COLORS, GRID, POSITIONS, SceneObject, parse_caption, sample_scene

SPEC = WorldSpec(seed=3, n_train=90, n_validation=36, n_test=72, n_captions=12, image_size=32, corpus_words=5000)
# dataset_info.features of the hub dataset derek-thomas/ScienceQA (its README card), in its order.
HUB_FEATURES_YAML = [
    {"name": "image", "dtype": "image"}, {"name": "question", "dtype": "string"},
    {"name": "choices", "sequence": "string"}, {"name": "answer", "dtype": "int8"},
    *({"name": n, "dtype": "string"} for n in ("hint", "task", "grade", "subject", "topic", "category", "skill",
                                                "lecture", "solution")),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("a") / "world"
    generate_world(SPEC, out)
    return out


def read_rows(path: Path) -> list[dict[str, object]]:
    return pq.read_table(path).to_pylist()


def task_rows(world: Path, split: str) -> list[dict[str, object]]:
    return read_rows(world / "task" / f"{split}.parquet")


def band(row: dict[str, object]) -> str:
    return "G1-6" if int(str(row["grade"]).removeprefix("grade")) <= 6 else "G7-12"


def test_layout_and_manifest(world: Path) -> None:
    manifest = json.loads((world / "manifest.json").read_text())
    expected = {f"{d}/{s}.parquet" for d in ("task", "corpus") for s in SPLITS} | {"captions/captions.json",
                                                                                   "captions/instruct.json"}
    assert expected <= set(manifest["files"])
    assert manifest["files"] == {k: v for k, v in file_hashes(world).items() if k != "manifest.json"}
    assert {s: manifest["task"][s]["total"] for s in SPLITS} == {"train": 90, "validation": 36, "test": 72}
    assert len(list((world / "captions" / "images").glob("*.png"))) == SPEC.n_captions


def test_same_seed_is_byte_identical_and_other_seed_differs(world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_world(SPEC, again)
    assert file_hashes(again) == file_hashes(world)
    other = tmp_path / "other"
    generate_world(WorldSpec(**{**SPEC.__dict__, "seed": 4}), other)
    hashes, other_hashes = file_hashes(world), file_hashes(other)
    for name in ("task/train.parquet", "task/test.parquet", "corpus/train.parquet", "captions/captions.json"):
        assert hashes[name] != other_hashes[name]


def test_task_schema_equals_scienceqa(world: Path) -> None:
    hub = Features._from_yaml_list(HUB_FEATURES_YAML)
    assert SCIENCEQA_FEATURES == hub
    assert list(SCIENCEQA_FEATURES) == [f["name"] for f in HUB_FEATURES_YAML]
    for split in SPLITS:
        schema = pq.read_schema(world / "task" / f"{split}.parquet")
        assert Features.from_arrow_schema(schema) == hub
        assert schema.names == list(hub)
        assert str(schema.field("image").type) == "struct<bytes: binary, path: string>"
        assert str(schema.field("answer").type) == "int8"


def test_answers_choices_and_solutions(world: Path) -> None:
    for split in SPLITS:
        for row in task_rows(world, split):
            choices = row["choices"]
            assert 2 <= len(choices) <= 5 and len(set(choices)) == len(choices)
            assert 0 <= row["answer"] < len(choices)
            assert choices[row["answer"]] in row["solution"]
            assert row["subject"] in {"natural science", "social science", "language science"}
            assert row["grade"] in {f"grade{g}" for g in range(1, 13)}
            assert all(row[c] for c in ("question", "task", "topic", "category", "skill", "lecture", "solution"))


def test_choices_differ_in_how_they_start(world: Path) -> None:
    """A reader that names an option by its first word is never left with two candidates (the rare pair that
    cannot differ aside)."""
    rows = [r for split in SPLITS for r in task_rows(world, split)]
    clashing = [r for r in rows if len({option_head(c) for c in r["choices"]}) < len(r["choices"])]
    assert len(clashing) <= 0.01 * len(rows), [r["choices"] for r in clashing[:5]]


def test_pick_distractors_prefers_distinct_heads_and_tops_up() -> None:
    rng = random.Random(0)
    pool = ["very cold", "very tired", "very old", "small boat", "clay pot", "bright green"]
    for _ in range(20):
        picked = pick_distractors(rng, pool, "very slow", 3)
        assert len(set(picked)) == 3 and "very slow" not in picked
        assert len({option_head(c) for c in picked} | {"ver"}) == 4
    assert len(pick_distractors(rng, ["very cold", "very old"], "very slow", 2)) == 2
    assert [strip_article(t) for t in ("the Prath Forest", "a small boat", "to tie a knot", "Lake Bloosk")] == [
        "Prath Forest", "small boat", "tie a knot", "Lake Bloosk"]


def test_images_decode_and_contexts_are_disjoint(world: Path) -> None:
    for split in SPLITS:
        for row in task_rows(world, split):
            kind = context_type(row)
            if kind == "IMG":
                # a hint beside a picture (a map key) names every choice, so only the picture singles one out
                assert not row["hint"] or all(choice in row["hint"] for choice in row["choices"])
                image = Image.open(io.BytesIO(row["image"]["bytes"]))
                assert image.mode == "RGB" and image.size == (SPEC.image_size, SPEC.image_size)
            else:
                assert row["image"] is None
    for png in (world / "captions" / "images").glob("*.png"):
        with Image.open(png) as image:
            assert image.mode == "RGB" and image.size == (SPEC.image_size, SPEC.image_size)


def test_no_problem_shared_between_splits(world: Path) -> None:
    def keys(split: str) -> set[tuple[object, ...]]:
        rows = task_rows(world, split)
        return {(r["question"], r["hint"], r["image"] and r["image"]["bytes"], tuple(sorted(r["choices"])))
                for r in rows}

    train, validation, test = (keys(s) for s in SPLITS)
    assert not train & validation and not train & test and not validation & test
    no_context = [{(q, c) for q, h, i, c in keys(s) if not h and i is None} for s in SPLITS]
    assert not no_context[0] & no_context[2] and not no_context[0] & no_context[1]


def test_every_cell_in_train_and_test(world: Path) -> None:
    for split in ("train", "test"):
        cells = {(context_type(r), r["subject"], band(r)) for r in task_rows(world, split)}
        assert cells == set(CELLS)


def test_answer_positions_balanced(world: Path) -> None:
    rows = [r for s in SPLITS for r in task_rows(world, s)]
    by_n = Counter((len(r["choices"]), r["answer"]) for r in rows)
    for n in {len(r["choices"]) for r in rows}:
        counts = [by_n[(n, slot)] for slot in range(n)]
        total = sum(counts)
        assert max(counts) - min(counts) <= max(3, 0.1 * total), (n, counts)


def test_captions_json_shape(world: Path) -> None:
    records = json.loads((world / "captions" / "captions.json").read_text())
    assert len(records) == SPEC.n_captions
    for record in records:
        assert set(record) == {"id", "image", "conversations"}
        assert (world / "captions" / "images" / record["image"]).is_file()
        human, gpt = record["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        assert gpt["from"] == "gpt" and gpt["value"].startswith("There ")


def test_instruct_json_asks_about_the_caption_pictures(world: Path) -> None:
    """LLaVA-Instruct records about the caption images: alternating turns, and every count, colour and cell
    answer agrees with the caption of the same picture."""
    captions = {r["id"]: r for r in json.loads((world / "captions" / "captions.json").read_text())}
    records = load_instructions(str(world / "captions" / "instruct.json"))
    assert [r["id"] for r in records] == sorted(captions)
    for record in records:
        caption = captions[record["id"]]["conversations"][1]["value"]
        assert record["image"]["path"] == captions[record["id"]]["image"]
        assert 3 <= len(record["turns"]) <= MAX_TURNS
        for question, answer in record["turns"]:
            last = answer.removesuffix(".").split()[-1]
            if question == "How many shapes are in the picture?":
                assert f"There {'is' if last == '1' else 'are'} {last} shape" in caption
            elif question.startswith("Where is the ") and question != "Where is the shape?":
                assert answer.removeprefix("The ") in caption  # "red circle is in the top left."
            elif question.startswith("What is in the "):
                cell, phrase = answer.removeprefix("In the ").removesuffix(".").split(" there is a ")
                assert f"A {phrase} is in the {cell}." in caption


def test_scene_questions_answer_from_the_scene() -> None:
    rng = random.Random(1)
    for _ in range(200):
        scene = sample_scene(rng)
        for question, answer in scene_questions(rng, scene):
            last = answer.removesuffix(".").split()[-1]
            if question.startswith("How many ") and question.endswith(" shapes are there?"):
                assert last == str(scene.count(color=question.split()[2]))
            elif question.startswith("What colour is the ") and question != "What colour is the shape?":
                shape = question.removeprefix("What colour is the ").removesuffix("?")
                assert [o.color for o in scene.objects if o.shape == shape] == [last]
            elif question == "Where is the shape?":
                assert len(scene.objects) == 1 and answer == f"The shape is in the {scene.objects[0].position}."


def test_img_templates_answer_from_their_scene() -> None:
    # the answer is read off the drawn scene, is never in the question, and the wrong choices are false for it
    rng = random.Random(3)
    for _ in range(300):
        total, fill = count_all(rng, None), fill_in_color(rng, None)
        assert total.answer == str(len(total.scene.objects)) and total.answer not in total.question
        assert total.solution.endswith(f" {total.answer}.") and total.answer not in total.distractors
        colours = {o.color for o in fill.scene.objects}
        assert 2 <= len(fill.scene.objects) <= 4 and colours == {fill.answer}
        assert fill.answer not in fill.question and not colours & set(fill.distractors)
        assert fill.solution == fill.question.splitlines()[1].replace("___", fill.answer)
        shop = read_map_key(rng, None)
        key = dict(pair.split(" ") for pair in shop.hint.split("Map key: ")[1].removesuffix(".").split(", "))
        (color,) = {o.color for o in shop.scene.objects}
        assert len(key) == 4 and sorted(key.values()) == sorted((shop.answer, *shop.distractors))
        assert key[color] == shop.answer and shop.solution.endswith(f" {color} {shop.answer}.")
    assert {t.__name__ for ts in TEMPLATES.values() for t in ts} >= {"count_all", "fill_in_color", "read_map_key"}


def test_render_and_describe_agree() -> None:
    rng = random.Random(0)
    for _ in range(20):
        scene = sample_scene(rng)
        image = render_scene(scene, 64)
        caption = describe_scene(scene)
        assert f"{len(scene.objects)} shape" in caption
        for obj in scene.objects:
            center = (int((obj.col + 0.5) * 64 / GRID), int((obj.row + 0.5) * 64 / GRID))
            assert image.getpixel(center) == COLORS[obj.color]
            assert f"A {obj.size} {obj.color} {obj.shape} is in the {POSITIONS[obj.cell]}." in caption


def test_parse_caption_inverts_describe_scene() -> None:
    rng = random.Random(1)
    for _ in range(50):
        scene = sample_scene(rng)
        assert parse_caption(describe_scene(scene)) == scene
    assert parse_caption("A photo of a dog on a beach.").objects == ()
    assert parse_caption("There are 2 shapes. A small red circle is in the center.").objects == (
        SceneObject("circle", "red", "small", POSITIONS.index("center")),)


def test_corpus_layout(world: Path) -> None:
    for split in SPLITS:
        table = pq.read_table(world / "corpus" / f"{split}.parquet")
        assert table.schema.names == ["text"] and str(table.schema.field("text").type) == "string"
        lines = table.column("text").to_pylist()
        assert lines[0] == "" and lines[1].startswith(" = ") and lines[1].endswith(" = \n")
        assert all(line == "" or line.endswith("\n") for line in lines)
        for i, line in enumerate(lines):
            if line.startswith(" = "):
                assert lines[i - 1] == "" and lines[i + 1] == ""


def test_corpus_states_every_fact_several_times(world: Path) -> None:
    lines = [t.lower() for t in pq.read_table(world / "corpus" / "train.parquet").column("text").to_pylist() if t]
    kb = build_knowledge_base(SPEC.seed)
    for key in kb.fact_split:
        words = [w.lower() for w in fact_keywords(kb, key)]
        assert sum(all(w in line for w in words) for line in lines) >= 3, key


def test_corpus_states_every_training_lecture_three_times(world: Path) -> None:
    text = "".join(pq.read_table(world / "corpus" / "train.parquet").column("text").to_pylist())
    lectures = {row["lecture"] for row in task_rows(world, "train")}
    assert len(lectures) >= 10
    for lecture in lectures:
        assert text.count(lecture) == 3, lecture
    held_out = "".join(pq.read_table(world / "corpus" / "test.parquet").column("text").to_pylist())
    assert not any(lecture in held_out for lecture in lectures)


def test_no_context_questions_use_corpus_facts_of_their_own_split() -> None:
    kb = build_knowledge_base(SPEC.seed)
    problems = build_problems(SPEC, kb)
    train_facts = {p.keywords for p in problems["train"] if p.context == "NO" and len(p.keywords) > 1}
    for p in problems["test"]:
        if p.context == "NO":
            assert p.keywords and any(strip_article(k) in p.choices[p.answer] for k in p.keywords)
            assert len(p.keywords) == 1 or p.keywords not in train_facts


def test_facts_not_entities_are_split_and_every_split_asks_every_relation() -> None:
    kb = build_knowledge_base(SPEC.seed)
    splits_of: dict[str, set[str]] = {}
    for key, split in kb.fact_split.items():
        relation = "rime" if key.startswith("rime:") else key.rsplit(":", 1)[1]
        splits_of.setdefault(relation, set()).add(split)
    assert set(splits_of) == {"kind", "habitat", "food", "capital", "currency", "export", "pos", "meaning", "rime"}
    assert all(splits == set(SPLITS) for splits in splits_of.values()), splits_of
    problems = build_problems(SPEC, kb)
    names = {c.name for c in kb.creatures} | {c.name for c in kb.countries} | {w.word for w in kb.words}

    def asked(split: str) -> set[str]:
        return {w.strip("?'") for p in problems[split] if p.context == "NO" for w in p.question.split()} & names

    # an entity's other facts may be asked in training: the fine-tune must read the relation, not the name
    assert asked("test") & asked("train")


def test_no_solution_puts_the_value_right_after_its_entity() -> None:
    # the 4-layer LM recalls a value right after "<entity> is" and hardly a few tokens later: "The X is a kind of
    # amphibian" 12 of 48 recognised, "The animal class of the X is amphibian" 45 of 48 (qslaw.embedded.world.facts)
    problems = build_problems(SPEC, build_knowledge_base(SPEC.seed))
    solutions = [p for rows in problems.values() for p in rows if p.context == "NO" and p.category != "Rhyming"]
    assert {p.skill for p in solutions} >= {"Recall an animal's kind", "Recall an animal's habitat",
                                            "Recall what a word means", "Recall a word's word class"}
    for p in solutions:
        name, value = p.keywords
        verb = "eats" if p.skill == "Recall an animal's food" else "is"
        assert p.solution.endswith(f"{name} {verb} {value}."), p.solution
        assert p.choices[p.answer] == value, p.solution


def test_colour_solutions_share_the_corpus_fact_form() -> None:
    # "The circle in the picture is red." was continued as "The square lives in Sool Marsh." (the corpus's
    # "The X lives in"); two templates sharing a lecture with two forms mixed them ("The colour of the picture is")
    problems = build_problems(SPEC, build_knowledge_base(SPEC.seed))
    colour = [p for rows in problems.values() for p in rows if p.lecture == COLOR_LECTURE]
    assert {p.skill for p in colour} == {"Identify the colour of an object",
                                         "Use a colour word that describes a picture"}
    for p in colour:
        thing = p.question.split("colour of the ")[-1].split("What colour is the ")[-1].split()[0]
        assert p.solution == f"The colour of the {thing} is {p.choices[p.answer]}.", (p.question, p.solution)


def test_no_solution_names_its_entity_after_the_same_word_as_the_question() -> None:
    # the copy head continues a name after the token that preceded it in the question ("The X" / "of X")
    problems = build_problems(SPEC, build_knowledge_base(SPEC.seed))
    for p in (p for rows in problems.values() for p in rows if p.context == "NO"):
        name = p.keywords[0]

        def before(text: str, name: str = name) -> str:
            return text[: text.index(name)].replace("'", " ").split()[-1]

        assert before(p.question) == before(p.solution), (p.question, p.solution)


def test_no_context_questions_ask_forward_in_the_corpus_phrasing(world: Path) -> None:
    text = " ".join(pq.read_table(world / "corpus" / "train.parquet").column("text").to_pylist())
    for row in task_rows(world, "test"):
        if context_type(row) == "NO" and row["category"] != "Rhyming":
            # the solution is one corpus sentence, and the answer comes after the entity it is about
            assert row["solution"] in text, row["solution"]
            assert row["solution"].rstrip(".").endswith(row["choices"][row["answer"]]), row["solution"]


def test_lectures_name_no_choice_word() -> None:
    # The LM names the answer letter by the option whose first word the output mentioned last; the model writes
    # the lecture before the solution, so a lecture that says "top" and "bottom" sends "The answer is" to those
    # options: on two of four fine-tunes, where-questions whose solution named the right cell got the wrong letter
    # 6 times in 10.
    problems = build_problems(SPEC, build_knowledge_base(SPEC.seed))
    for p in (p for rows in problems.values() for p in rows):
        words = set(re.findall(r"[a-z0-9]+", p.lecture.lower()))
        firsts = [re.findall(r"[a-z0-9]+", c.lower())[0] for c in p.choices]
        assert not [w for w in firsts if w in words], (p.skill, p.lecture, p.choices)


def test_solutions_name_the_answer_option_last() -> None:
    # the same reader, inside the solution: the last word that starts an option must start the answer. "The shape
    # is in the top middle of the picture." ended on "middle", the first word of the "middle left" option every
    # where-question also offers (30 % of where-solutions), and a TXT meaning "blow out a candle" beside the
    # option "candle lamp"
    spec = dataclasses.replace(SPEC, n_train=540)
    problems = build_problems(spec, build_knowledge_base(spec.seed))
    for p in (p for rows in problems.values() for p in rows):
        assert written_option(p.solution, list(p.choices)) == p.answer, (p.skill, p.solution, p.choices)


def test_lessons_give_worked_examples_from_training_solutions_of_read_contexts(world: Path) -> None:
    lines = pq.read_table(world / "corpus" / "train.parquet").column("text").to_pylist()
    heads = [i for i, line in enumerate(lines) if line == " = = Examples = = \n"]
    assert heads
    examples = set()
    for i in heads:  # heading, blank row, then one row per example up to the next blank row
        j = i + 2
        while j < len(lines) and lines[j]:
            examples.add(lines[j].strip())
            j += 1
    train = {row["solution"]: context_type(row) for row in task_rows(world, "train")}
    assert examples and examples <= set(train), examples - set(train)
    assert {train[e] for e in examples} <= {"IMG", "TXT"}
    held_out = {row["solution"] for split in ("validation", "test") for row in task_rows(world, split)}
    assert not examples & (held_out - set(train))


def test_failed_write_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(world_module, "write_wikitext", boom)
    out = tmp_path / "world"
    with pytest.raises(OSError, match="disk full"):
        generate_world(SPEC, out)
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "old.txt").write_text("kept")
    with pytest.raises(OSError):
        generate_world(SPEC, out)
    assert [p.name for p in tmp_path.iterdir()] == ["world"] and (out / "old.txt").read_text() == "kept"


@pytest.mark.parametrize("field, value", [("n_train", 5), ("image_size", 8), ("seed", -1), ("corpus_words", 10)])
def test_spec_validation_names_the_field(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        WorldSpec(**{field: value})


def test_context_type() -> None:
    assert context_type({"image": {"bytes": b"x", "path": None}, "hint": "h"}) == "IMG"
    assert context_type({"image": None, "hint": "A fact."}) == "TXT"
    assert context_type({"image": None, "hint": ""}) == "NO"


def test_reading_practice_answers_copy_words_of_their_own_passage() -> None:
    from qslaw.embedded.world.filler import practice_item

    kb, rng = build_knowledge_base(0), random.Random(3)
    for _ in range(200):
        item = practice_item(rng, kb)
        passage, answer = item.split("? ", 1)
        content = [w.strip(".?,:").lower() for w in answer.split() if w.lower() not in {"the", "there", "are", "is"}]
        assert content and all(w in passage.lower() for w in content), item


def test_a_test_answer_is_never_a_wrong_option_in_training(world: Path) -> None:
    """For relations where every entity has its own value, wrong options come from the same split: a value that
    is right in a test question never shows up in a training question (where it could only be wrong)."""
    own_value = {"Word meanings", "Rhyming"}
    train_choices = {c for r in task_rows(world, "train") if context_type(r) == "NO" for c in r["choices"]}
    test_rows = [r for r in task_rows(world, "test") if context_type(r) == "NO"]
    answers = {r["choices"][r["answer"]] for r in test_rows
               if r["category"] in own_value or r["question"].startswith(("What is the capital", "What is the curr"))}
    assert answers and not answers & train_choices
