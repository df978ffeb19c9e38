"""IMG question templates: answerable only by looking at the rendered scene.

How it works
------------
Each template samples a fresh scene and asks about attributes the caption also states, so a
vision tower pretrained on captions has seen every concept. The question text never reveals the
answer; the other choices are values that are plausible but false for this scene. Solutions name the value
where it is read ("The colour of the circle is red."), not restated from an earlier read; counting keeps
"There are 3 circles. So the answer is 3." (45-51 % after fine-tuning, chance 25; "Count the circles in the
picture. The number of circles is 3." fell to 25 %: the fine-tuned model looped on the repeated phrase).
A colour is stated in the corpus's fact form, "The colour of the circle is red.". With "The circle in the picture
is red." the fine-tuned model continued "The square" from the corpus's "The X lives in" and wrote "The square lives
in Sool Marsh." for 8 of 11 test questions (3 right). Both colour templates share their lecture, so they share the
form: with "The shape in the picture is red." beside the new form, 7 of 28 one-shape answers became "The colour of
the picture is red.".

| subject | band  | template                                                            |
|---------|-------|---------------------------------------------------------------------|
| NAT     | G1-6  | count the shapes of one kind or one colour                          |
| NAT     | G7-12 | the colour of the only shape of a kind; count all the shapes        |
| SOC     | G1-6  | in which cell is the one shape of a one-shape picture               |
| SOC     | G7-12 | in which cell is a named shape                                      |
| LAN     | G1-6  | the colour word of the one shape of a one-shape picture             |
| LAN     | G7-12 | fill in the colour word of a picture whose 2-4 shapes share it      |

Replaced (session 7): size comparison (22 % after the fp LoRA fine-tune, chance 50), "which sentence is true of
the picture" (32 %, chance 25) and relative position ("left of it", with `locate` 36 %, chance 32). Given the
scene as its caption in the hint, i.e. as text, they did no better (56, 18 and 25 %): they ask for more than
the 4-layer LM can do with what it reads. Their replacements ask for one attribute of one shape.

Replaced (session 14): the fill-in of a cell's colour or shape word (25 % after the fp LoRA fine-tune on world
seed 0, chance 25; its shape half 13 % there and 42 % on seed 1: it needs the cell and the shape, neither of which
the base reads) and counting by size and colour (35 %). The fill-in now asks for the one colour of a picture
whose 2-4 shapes share it, and the count is of all the shapes (the caption's first sentence): over world seeds 0,
1 and 2 the fill-in scores 93-100 % and the total count 19-50 %, and IMG 53.0 ± 2.1 and 56.9 ± 8.6 in two loops
against 46.6 ± 6.3 before (README).

A shape is named by colour + shape only when that pair is unique in the scene; templates that
need such names return None otherwise and the caller draws again.
"""

from __future__ import annotations

import dataclasses
import random

from qslaw.data.problems import LAN, NAT, SOC, Draft, Template, TemplateContext, pick_distractors
from qslaw.data.scenes import COLORS, POSITIONS, SHAPES, Scene, SceneObject, sample_scene

COUNT_LECTURE = ("To count objects in a picture, look at each part of the picture and count every object that "
                 "matches, once.")
MAP_LECTURE = ("A picture can be split into three rows and three columns. Naming the row and the column tells "
               "where an object is.")
"""Names no row or column: the model writes the lecture before its solution, and the LM picks the answer letter
by the option whose first word was mentioned last, so a lecture saying "top, middle, bottom" pulled the letter
of where-questions whose solution named the right cell to another option (the letter right for 29 and 38 % of
those on two of four fine-tunes, 100 % on the others; `tests/qslaw/data/test_world.py`,
``test_lectures_name_no_choice_word``)."""
SENTENCE_LECTURE = ("A sentence describes a picture only if every detail matches: the colour, the shape, the size "
                    "and the place of the object.")
COLOR_LECTURE = "Every object has a colour. To name the colour of an object, find the object and look at it."
COUNTS = tuple(str(n) for n in range(6))


def _name(obj: SceneObject) -> str:
    return f"{obj.color} {obj.shape}"


def _where_solution(name: str, obj: SceneObject) -> str:
    """``The red circle is in the top middle of the picture. It is in the top row.``

    The LM names the letter of the option whose first word the output mentioned last, and every where-question
    offers one option per first word (top, middle, bottom, center), so "top middle" alone ends on the first word
    of the "middle left/right" option: the letter was wrong for 30 % of where-solutions, which a fine-tune then
    had to learn to override. Restating the row puts the answer's first word last."""
    row = "" if obj.position == "center" else f" It is in the {obj.position.split()[0]} row."
    return f"The {name} is in the {obj.position} of the picture.{row}"


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


def count_all(rng: random.Random, ctx: TemplateContext) -> Draft:
    """How many shapes (of any kind) the picture has: the caption's first sentence."""
    scene = sample_scene(rng)
    n = len(scene.objects)
    return _count_draft(rng, scene, "How many shapes are in the picture?", n, _plural("shape", n),
                        "Count all the objects in a picture")


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
        solution=_where_solution(_name(obj), obj), scene=scene,
    )


def fill_in_color(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Complete a sentence about a picture whose 2-4 shapes share one colour with that colour word."""
    scene = sample_scene(rng, 4)
    while len(scene.objects) < 2:
        scene = sample_scene(rng, 4)
    color = rng.choice(tuple(COLORS))
    scene = Scene(tuple(dataclasses.replace(o, color=color) for o in scene.objects))
    text = "The colour of every shape in the picture is ___."
    return Draft(
        question=f"Complete the sentence about the picture.\n{text}", answer=color,
        distractors=pick_distractors(rng, tuple(COLORS), color, 3), subject=LAN, topic="vocabulary",
        category="Describing words", skill="Complete a sentence about a picture", task="fill in the blank",
        lecture=SENTENCE_LECTURE, scene=scene, solution=text.replace("___", color),
    )


def color_of_shape(rng: random.Random, ctx: TemplateContext) -> Draft | None:
    """What colour is the (only) circle."""
    scene = sample_scene(rng)
    shapes = [s for s in SHAPES if scene.count(shape=s) == 1]
    if not shapes:
        return None
    shape = rng.choice(shapes)
    obj = next(o for o in scene.objects if o.shape == shape)
    return Draft(
        question=f"What colour is the {shape} in the picture?", answer=obj.color,
        distractors=pick_distractors(rng, tuple(COLORS), obj.color, 3), subject=NAT, topic="physics",
        category="Colours of objects", skill="Identify the colour of an object", lecture=COLOR_LECTURE, scene=scene,
        solution=f"The colour of the {shape} is {obj.color}.",
    )


def locate_one(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Where is the one shape of a one-shape picture."""
    scene = sample_scene(rng, 1)
    obj = scene.objects[0]
    return Draft(
        question="Where is the shape in the picture?", answer=obj.position,
        distractors=pick_distractors(rng, POSITIONS, obj.position, 3), subject=SOC, topic="geography",
        category="Maps and directions", skill="Find where an object is in a picture", lecture=MAP_LECTURE,
        solution=_where_solution("shape", obj), scene=scene,
    )


def color_word(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Which word names the colour of the one shape of a one-shape picture."""
    scene = sample_scene(rng, 1)
    obj = scene.objects[0]
    return Draft(
        question="Which word describes the colour of the shape in the picture?", answer=obj.color,
        distractors=pick_distractors(rng, tuple(COLORS), obj.color, 3), subject=LAN, topic="vocabulary",
        category="Describing words", skill="Use a colour word that describes a picture", lecture=COLOR_LECTURE,
        solution=f"The colour of the shape is {obj.color}.", scene=scene,
    )


TEMPLATES: dict[tuple[str, str], tuple[Template, ...]] = {
    (NAT, "G1-6"): (count_by_one_attribute,),
    (NAT, "G7-12"): (color_of_shape, count_all),
    (SOC, "G1-6"): (locate_one,),
    (SOC, "G7-12"): (locate,),
    (LAN, "G1-6"): (color_word,),
    (LAN, "G7-12"): (fill_in_color,),
}
"""IMG templates per (subject, grade band)."""
