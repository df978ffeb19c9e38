"""Data sources selected in params: the embedded world, or real data as it comes — local files or hub ids.

How it works
------------
Every source becomes the same in-memory rows that :func:`qslaw.data.prepare.prepare_tables` renders, so the
embedded world and real data share one code path (the embedded world is itself written in these formats):

* task data — ScienceQA schema (derek-thomas/ScienceQA): a directory of parquet files, one or more per
  split, named as the hub lays them out (``data/train-00000-of-00001.parquet``) or plainly
  (``train.parquet``); or the hub id when online. Loaded with ``datasets`` (``load_dataset("parquet")``),
  images kept as ``{bytes, path}`` (``Image(decode=False)``), so they are checked, never silently decoded.
  Or LLaVA's converted ScienceQA (``llava_{split}_QCM-LEA.json`` records ``id``, ``image``,
  ``conversations``; ``task_source`` holds the path with ``{split}``) together with ScienceQA's
  ``problems.json`` (``prepare.task_metadata``), which supplies each record's ScienceQA fields (subject,
  grade, lecture, ...) by its pid, and the image folder the records' ``image`` paths are relative to
  (``prepare.task_image_dir``); rows come out in the ScienceQA schema, so rendering and scoring are unchanged.
* text — WikiText raw: a directory of parquet files with a ``text`` column (hub layout
  ``wikitext-2-raw-v1/train-00000-of-00001.parquet`` or ``train.parquet``) or raw text files
  (``wiki.train.raw`` / ``train.txt``, one line per row, blank lines as empty rows, as the hub has
  them); or ``Salesforce/wikitext:wikitext-2-raw-v1`` from the hub (``name:config``).
* captions — a LLaVA pretraining JSON (LCS-558K shape: ``id``, ``image``, ``conversations``) and the
  image folder its ``image`` paths are relative to (default: ``images/`` beside the JSON).
* visual instructions — a LLaVA-Instruct JSON (same record shape, several human/gpt turns); the embedded base
  builder reads the world's ``captions/instruct.json`` with :func:`load_instructions`.

A local path never touches the network. A hub id that cannot be fetched (offline, unknown) raises
:class:`SourceError` naming the param and saying how to supply local files; so does a missing split, file
or image — a referenced image that does not exist is named with its record id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}


class SourceError(ValueError):
    """A data source that cannot be read as configured; the message names the param."""


def _split_files(root: Path, split: str, suffixes: tuple[str, ...]) -> list[Path]:
    """Files of ``split`` under ``root`` (any depth): ``<split>.<ext>``, ``<split>-*.<ext>``, ``wiki.<split>.raw``."""
    names = SPLIT_ALIASES[split]
    pattern = re.compile(rf"^(?:wiki\.)?(?:{'|'.join(names)})(?:[-.][^/]*)?$")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes
                  and pattern.match(p.name.removesuffix(p.suffix)))


def _hub_error(key: str, source: str, error: Exception, hint: str) -> SourceError:
    return SourceError(f"{key}: cannot load {source!r} from the hub ({type(error).__name__}: {str(error)[:200]}). "
                       f"Without network, download it elsewhere and point {key} at the local copy: {hint}")


def load_task(source: str, key: str = "prepare.task_source") -> dict[str, list[dict]]:
    """ScienceQA-schema rows per split from a local parquet directory or a hub id."""
    from datasets import Image, load_dataset

    from qslaw.data.schema import _quiet

    path = Path(source)
    with _quiet():
        if path.exists():
            if not path.is_dir():
                raise SourceError(f"{key}: {source} is not a directory of ScienceQA parquet files")
            files = {s: [str(f) for f in _split_files(path, s, (".parquet",))] for s in SPLITS}
            missing = [s for s, f in files.items() if not f]
            if missing:
                raise SourceError(f"{key}: no parquet file for split(s) {missing} under {source} "
                                  f"(expected e.g. data/{missing[0]}-00000-of-00001.parquet or {missing[0]}.parquet)")
            data = load_dataset("parquet", data_files=files)
        else:
            try:
                data = load_dataset(source)
            except Exception as e:  # offline, unknown id, gated
                raise _hub_error(key, source, e, "`hf download derek-thomas/ScienceQA --repo-type dataset "
                                 "--local-dir DIR`, then set it to DIR") from None
        out = {}
        for split in SPLITS:
            name = next((n for n in SPLIT_ALIASES[split] if n in data), None)
            if name is None:
                raise SourceError(f"{key}: {source} has no {split} split (has {sorted(data)})")
            table = data[name]
            if "image" in table.column_names:
                table = table.cast_column("image", Image(decode=False))
            out[split] = table.to_list()
    return out


LLAVA_SPLITS = {"train": ("train",), "validation": ("val", "validation", "minival"), "test": ("test", "minitest")}
SCIENCEQA_FIELDS = ("question", "choices", "answer", "hint", "task", "grade", "subject", "topic", "category",
                    "skill", "lecture", "solution")


def load_llava_task(pattern: str, problems_json: str, image_dir: str,
                    key: str = "prepare.task_source") -> dict[str, list[dict]]:
    """ScienceQA-schema rows per split from LLaVA's ``llava_{split}_QCM-LEA.json`` files + ``problems.json``."""
    if "{split}" not in pattern:
        raise SourceError(f"{key}: a LLaVA JSON source needs '{{split}}' in its path, got {pattern!r}")
    if not problems_json or not Path(problems_json).is_file():
        raise SourceError(f"prepare.task_metadata: {problems_json!r} is not ScienceQA's problems.json; a LLaVA "
                          "JSON lacks subject, grade and the other fields scoring needs")
    problems = json.loads(Path(problems_json).read_text(encoding="utf-8"))
    images = Path(image_dir) if image_dir else Path(pattern).parent / "images"
    out = {}
    for split, names in LLAVA_SPLITS.items():
        path = next((Path(pattern.format(split=n)) for n in names if Path(pattern.format(split=n)).is_file()), None)
        if path is None:
            raise SourceError(f"{key}: no LLaVA JSON for split {split!r} ({pattern.format(split=names[0])} missing)")
        rows = []
        for i, record in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            pid = str(record.get("id", f"#{i}"))
            if pid not in problems:
                raise SourceError(f"prepare.task_metadata: record {pid} of {path.name} has no entry in {problems_json}")
            meta = problems[pid]
            missing = [f for f in SCIENCEQA_FIELDS if f not in meta]
            if missing:
                raise SourceError(f"prepare.task_metadata: problem {pid} lacks field(s) {missing}")
            image = None
            if record.get("image"):
                file = images / record["image"]
                if not file.is_file():
                    raise SourceError(f"{key}: record {pid} references image {record['image']!r}, "
                                      f"not found under {images}")
                image = {"bytes": file.read_bytes(), "path": record["image"]}
            rows.append({"image": image, **{f: meta[f] for f in SCIENCEQA_FIELDS}})
        out[split] = rows
    return out


def load_text(source: str, key: str = "prepare.text_source") -> dict[str, list[dict]]:
    """WikiText-style ``{"text": line}`` rows per split from local parquet/raw text files or the hub."""
    from datasets import load_dataset

    from qslaw.data.schema import _quiet

    path = Path(source)
    with _quiet():
        if path.exists():
            if not path.is_dir():
                raise SourceError(f"{key}: {source} is not a directory of WikiText parquet or text files")
            out = {}
            for split in SPLITS:
                parquet = _split_files(path, split, (".parquet",))
                raw = _split_files(path, split, (".raw", ".txt"))
                if parquet:
                    table = load_dataset("parquet", data_files={split: [str(f) for f in parquet]})[split]
                    if "text" not in table.column_names:
                        raise SourceError(f"{key}: {parquet[0]} has no 'text' column (has {table.column_names})")
                    out[split] = [{"text": t} for t in table["text"]]
                elif raw:
                    out[split] = [{"text": line} for f in raw for line in _read_lines(f, key)]
                else:
                    raise SourceError(f"{key}: no parquet or text file for split {split!r} under {source} "
                                      f"(expected e.g. {split}.parquet or wiki.{split}.raw)")
            return out
        name, _, config = source.partition(":")
        try:
            data = load_dataset(name, config or None)
        except Exception as e:
            raise _hub_error(key, source, e, "`hf download Salesforce/wikitext --repo-type dataset --local-dir DIR`, "
                             "then set it to DIR/wikitext-2-raw-v1") from None
    return {split: [{"text": t} for t in data[next(n for n in SPLIT_ALIASES[split] if n in data)]["text"]]
            for split in SPLITS}


def _read_lines(path: Path, key: str) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(f"{key}: {path} is not valid UTF-8 (byte {e.start})") from None
    # a raw WikiText file marks empty rows with blank (" \n") lines; the hub's rows hold "" for them
    return [line if line.strip() else "" for line in text.splitlines(keepends=True)]


def _llava_records(json_path: str, image_dir: str, key: str, what: str) -> tuple[list, Path]:
    path = Path(json_path)
    if not path.is_file():
        raise SourceError(f"{key}: {json_path} is not a LLaVA {what} JSON file")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"{key}: {json_path} is not valid UTF-8 JSON ({e})") from None
    if not isinstance(records, list):
        raise SourceError(f"{key}: {json_path} must hold a JSON list of records")
    return records, Path(image_dir) if image_dir else path.parent / "images"


def _record_image(record: object, i: int, images: Path, key: str) -> tuple[str, dict]:
    """(record id, ``{bytes, path}``) of a LLaVA record whose fields and image exist."""
    rid = record.get("id", f"#{i}") if isinstance(record, dict) else f"#{i}"
    if not isinstance(record, dict) or not {"id", "image", "conversations"} <= record.keys():
        raise SourceError(f"{key}: record {rid} lacks one of 'id', 'image', 'conversations'")
    if len(record["conversations"]) < 2:
        raise SourceError(f"{key}: record {rid} has {len(record['conversations'])} conversation turn(s), "
                          "needs a human and a gpt turn")
    file = images / str(record["image"])
    if not file.is_file():
        raise SourceError(f"{key}: record {rid} references image {record['image']!r}, not found under {images}")
    return str(rid), {"bytes": file.read_bytes(), "path": record["image"]}


def load_captions(json_path: str, image_dir: str = "", key: str = "prepare.caption_source") -> list[dict]:
    """LLaVA pretraining JSON → caption rows with the image bytes inside; every image must exist."""
    records, images = _llava_records(json_path, image_dir, key, "caption")
    rows = []
    for i, record in enumerate(records):
        rid, image = _record_image(record, i, images, key)
        turns = record["conversations"]
        rows.append({"id": rid, "image": image, "prompt": turns[0]["value"], "response": turns[1]["value"]})
    return rows


def load_instructions(json_path: str, image_dir: str = "", key: str = "base.instruct") -> list[dict]:
    """LLaVA-Instruct JSON → rows ``{id, image, turns: [(question, answer), ...]}`` with the image bytes inside.

    Turns must alternate human/gpt, starting with a human turn whose value holds ``<image>`` (removed from the
    question here); the record, turn or image at fault is named."""
    records, images = _llava_records(json_path, image_dir, key, "instruction")
    rows = []
    for i, record in enumerate(records):
        rid, image = _record_image(record, i, images, key)
        conv, turns = record["conversations"], []
        if len(conv) % 2:
            raise SourceError(f"{key}: record {rid} has {len(conv)} turns; human and gpt turns must pair up")
        for t, turn in enumerate(conv):
            want = "human" if t % 2 == 0 else "gpt"
            if not isinstance(turn, dict) or turn.get("from") != want or not isinstance(turn.get("value"), str):
                raise SourceError(f"{key}: record {rid} turn {t} must be {{'from': '{want}', 'value': <text>}}")
        if "<image>" not in conv[0]["value"]:
            raise SourceError(f"{key}: record {rid} turn 0 lacks the '<image>' placeholder")
        for t in range(0, len(conv), 2):
            question = conv[t]["value"].replace("<image>", "").strip()
            turns.append((question, conv[t + 1]["value"].strip()))
        rows.append({"id": rid, "image": image, "turns": turns})
    return rows
