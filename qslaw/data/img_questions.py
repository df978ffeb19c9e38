"""IMG question templates: answerable only by looking at the rendered scene.

How it works
------------
Each template samples a fresh scene and asks about attributes the caption also states, so a
vision tower pretrained on captions has seen every concept. The question text never reveals the
answer; the other choices are values that are plausible but false for this scene.

| subject | band  | template                                                          |
|---------|-------|-------------------------------------------------------------------|
| NAT     | G1-6  | count the shapes of one kind or one colour                        |
| NAT     | G7-12 | which of two named shapes is larger; count by size and colour     |
| SOC     | G1-6  | in which cell of the picture is a named shape                     |
| SOC     | G7-12 | where is one shape compared with another (left/right/above/below) |
| LAN     | G1-6  | fill in the colour or shape word of a sentence about a cell       |
| LAN     | G7-12 | which sentence is true of the picture                             |

A shape is named by colour + shape only when that pair is unique in the scene; templates that
need such names return None otherwise and the caller draws again.
"""

from __future__ import annotations

import random

from qslaw.data.problems import LAN, NAT, SOC, Draft, Template, TemplateContext, pick_distractors
from qslaw.data.scenes import COLORS, POSITIONS, SHAPES, SIZES, Scene, SceneObject, sample_scene

COUNT_LECTURE = ("To count objects in a picture, look at each part of the picture and count every object that "
                 "matches, once.")
SIZE_LECTURE = "Objects can be compared by size. A large object takes up more space than a small one."
MAP_LECTURE = ("A picture can be split into a top, a middle and a bottom row, and a left, a middle and a right "
               "column. Naming the row and the column tells where an object is.")
SENTENCE_LECTURE = ("A sentence describes a picture only if every detail matches: the colour, the shape, the size "
                    "and the place of the object.")
COUNTS = tuple(str(n) for n in range(6))


def _name(obj: SceneObject) -> str:
    return f"{obj.color} {obj.shape}"


def _count_draft(rng: random.Random, scene: Scene, question: str, n: int, what: str, skill: str) -> Draft:
    return Draft(
        question=question, answer=str(n), distractors=pick_distractors(rng, COUNTS, str(n), 3), subject=NAT,
        topic="physics", category="Counting objects", skill=skill, lecture=COUNT_LECTURE, scene=scene,
        solution=f"Look at the whole picture. There {'is' if n == 1 else 'are'} {n} {what}. So the answer is {n}.",
    )


def _plural(noun: str, n: int) -> str:
    return noun if n == 1 else f"{noun}s"


def _pick_by_count(rng: random.Random, options: list[tuple[tuple[str, ...], int]]) -> tuple[tuple[str, ...], int]:
    """An (attributes, count) option, the count drawn uniformly among those on offer (not mostly 0 or 1)."""
    count = rng.choice(sorted({n for _, n in options}))
    return rng.choice([o for o in options if o[1] == count])


def count_by_one_attribute(rng: random.Random, ctx: TemplateContext) -> Draft:
    """How many circles / how many red shapes."""
    scene = sample_scene(rng)
    if rng.random() < 0.5:
        (shape,), n = _pick_by_count(rng, [((s,), scene.count(shape=s)) for s in SHAPES])
        question, what = f"How many {shape}s are in the picture?", _plural(shape, n)
    else:
        (color,), n = _pick_by_count(rng, [((c,), scene.count(color=c)) for c in COLORS])
        question, what = f"How many {color} shapes are in the picture?", f"{color} {_plural('shape', n)}"
    return _count_draft(rng, scene, question, n, what, "Count objects of one kind")


def count_by_size_and_color(rng: random.Random, ctx: TemplateContext) -> Draft:
    """How many small blue shapes."""
    scene = sample_scene(rng)
    (size, color), n = _pick_by_count(rng, [((s, c), scene.count(size=s, color=c)) for s in SIZES for c in COLORS])
    question = f"How many {size} {color} shapes are in the picture?"
    return _count_draft(rng, scene, question, n, f"{size} {color} {_plural('shape', n)}",
                        "Count objects by two features")


def compare_sizes(rng: random.Random, ctx: TemplateContext) -> Draft | None:
    """Which of a large and a small named shape is larger (or smaller)."""
    scene = sample_scene(rng)
    named = scene.unique_by_look()
    large = [o for o in named if o.size == "large"]
    small = [o for o in named if o.size == "small"]
    if not large or not small:
        return None
    a, b = rng.choice(large), rng.choice(small)
    word, answer, other = ("larger", a, b) if rng.random() < 0.5 else ("smaller", b, a)
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    return Draft(
        question=f"Which shape is {word}, the {_name(first)} or the {_name(second)}?", answer=_name(answer),
        distractors=(_name(other),), subject=NAT, topic="physics", category="Comparing sizes",
        skill="Compare the sizes of objects", lecture=SIZE_LECTURE, scene=scene,
        solution=f"The {_name(a)} is large and the {_name(b)} is small. So the {word} one is the {_name(answer)}.",
    )


def locate(rng: random.Random, ctx: TemplateContext) -> Draft | None:
    """In which cell is the named shape."""
    scene = sample_scene(rng)
    named = scene.unique_by_look()
    if not named:
        return None
    obj = rng.choice(named)
    return Draft(
        question=f"Where is the {_name(obj)} in the picture?", answer=obj.position,
        distractors=pick_distractors(rng, POSITIONS, obj.position, 3), subject=SOC, topic="geography",
        category="Maps and directions", skill="Find where an object is in a picture", lecture=MAP_LECTURE,
        solution=f"Find the {_name(obj)}. It is in the {obj.position} of the picture.", scene=scene,
    )


def _relations(a: SceneObject, b: SceneObject) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """(true, false) wording on the horizontal and vertical axes, None where ``a`` and ``b`` align."""
    horizontal = None if a.col == b.col else (("left of", "right of") if a.col < b.col else ("right of", "left of"))
    vertical = None if a.row == b.row else (("above", "below") if a.row < b.row else ("below", "above"))
    return horizontal, vertical


def relative_position(rng: random.Random, ctx: TemplateContext) -> Draft | None:
    """Is one named shape left of / right of / above / below another."""
    scene = sample_scene(rng)
    named = scene.unique_by_look()
    if len(named) < 2:
        return None
    a, b = rng.sample(named, 2)
    axes = [axis for axis in _relations(a, b) if axis is not None]
    if len(axes) == 1:
        truth = axes[0][0]
        wrong = tuple(w for w in ("left of", "right of", "above", "below") if w != truth)
    else:
        truth, false = rng.choice(axes)
        wrong = (false,)
    return Draft(
        question=f"Where is the {_name(a)} compared with the {_name(b)}?", answer=f"{truth} it",
        distractors=tuple(f"{w} it" for w in wrong), subject=SOC, topic="geography",
        category="Maps and directions", skill="Describe where objects are relative to each other",
        lecture=MAP_LECTURE, scene=scene,
        solution=f"The {_name(a)} is in the {a.position} and the {_name(b)} is in the {b.position}. "
        f"So the {_name(a)} is {truth} it.",
    )


def fill_in_word(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Complete a sentence about one cell with its colour or shape word."""
    scene = sample_scene(rng)
    obj = rng.choice(scene.objects)
    if rng.random() < 0.5:
        text, answer, pool = f"The {obj.shape} in the {obj.position} is ___.", obj.color, tuple(COLORS)
    else:
        text, answer, pool = f"The {obj.color} shape in the {obj.position} is a ___.", obj.shape, SHAPES
    return Draft(
        question=f"Complete the sentence about the picture.\n{text}", answer=answer,
        distractors=pick_distractors(rng, pool, answer, 3), subject=LAN, topic="vocabulary",
        category="Describing words", skill="Use a word that describes a picture", task="fill in the blank",
        lecture=SENTENCE_LECTURE, scene=scene,
        solution=f"In the {obj.position} of the picture there is a {obj.phrase()}. So the missing word is {answer}.",
    )


def _statement(size: str, color: str, shape: str, cell: int) -> str:
    return f"There is a {size} {color} {shape} in the {POSITIONS[cell]}."


def _mutate(rng: random.Random, obj: SceneObject) -> str:
    """A statement about ``obj`` with one random detail changed (possibly to itself)."""
    size, color, shape, cell = obj.size, obj.color, obj.shape, obj.cell
    detail = rng.randrange(4)
    size = rng.choice(tuple(SIZES)) if detail == 0 else size
    color = rng.choice(tuple(COLORS)) if detail == 1 else color
    shape = rng.choice(SHAPES) if detail == 2 else shape
    cell = rng.randrange(len(POSITIONS)) if detail == 3 else cell
    return _statement(size, color, shape, cell)


def _random_statement(rng: random.Random) -> str:
    return _statement(rng.choice(tuple(SIZES)), rng.choice(tuple(COLORS)), rng.choice(SHAPES),
                      rng.randrange(len(POSITIONS)))


def _false_statements(rng: random.Random, scene: Scene, obj: SceneObject, k: int) -> tuple[str, ...]:
    """``k`` false sentences: near misses of the *other* objects, or random ones.

    Never variations of ``obj`` itself: the true sentence would then be the one the others all
    resemble, guessable without looking at the picture."""
    truths = {_statement(o.size, o.color, o.shape, o.cell) for o in scene.objects}
    others = [o for o in scene.objects if o != obj]
    found: list[str] = []
    while len(found) < k:
        s = _mutate(rng, rng.choice(others)) if others and rng.random() < 0.5 else _random_statement(rng)
        if s not in truths and s not in found:
            found.append(s)
    return tuple(found)


def true_sentence(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Which of four sentences describes the picture."""
    scene = sample_scene(rng)
    obj = rng.choice(scene.objects)
    answer = _statement(obj.size, obj.color, obj.shape, obj.cell)
    return Draft(
        question="Which sentence describes the picture?", answer=answer,
        distractors=_false_statements(rng, scene, obj, 3), subject=LAN, topic="writing-strategies",
        category="Describing a picture", skill="Choose the sentence that matches a picture",
        lecture=SENTENCE_LECTURE, scene=scene,
        solution=f"Check each sentence against the picture. Only this one matches every detail: {answer}",
    )


TEMPLATES: dict[tuple[str, str], tuple[Template, ...]] = {
    (NAT, "G1-6"): (count_by_one_attribute,),
    (NAT, "G7-12"): (compare_sizes, count_by_size_and_color),
    (SOC, "G1-6"): (locate,),
    (SOC, "G7-12"): (relative_position,),
    (LAN, "G1-6"): (fill_in_word,),
    (LAN, "G7-12"): (true_sentence,),
}
"""IMG templates per (subject, grade band)."""
