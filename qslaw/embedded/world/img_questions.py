"""IMG question templates: answerable only by looking at the rendered scene.

How it works
------------
Each template samples a fresh scene and asks about attributes the caption also states, so a
vision tower pretrained on captions has seen every concept. The question text never reveals the
answer; the other choices are values that are plausible but false for this scene. The one IMG hint, a map key,
pairs every choice with a colour, so it never reveals the answer either: the picture's colour picks the pair.
Solutions name the value where it is read ("The colour of the circle is red."), not restated from an earlier
read; counting keeps "There are 3 circles. So the answer is 3." (45-51 % after fine-tuning, chance 25; "Count the
circles in the picture. The number of circles is 3." fell to 25 %: the fine-tuned model looped on the repeated
phrase).
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
| SOC     | G7-12 | what the one shop on a map sells: its colour, looked up in the key  |
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

Replaced (session 16): where a named shape is among several (SOC G7-12; 21-39 % over eight fine-tunes, chance 25,
like the one-shape picture's cell: the base reads no cells, README). The one-shape picture's cell stays (SOC G1-6),
so where is a sixth of IMG instead of a third. The replacement reads what the base does read, a colour, and then
the hint, as TXT questions do: a market map's key pairs four colours with the four goods on offer ("Map key: red
apples, blue bread, ..."), and the question asks what the one shop on the map sells. Over world seeds 0 / 1 / 2 it
scored 89 / 96 / 61 %, and IMG 59.1 ± 8.7 (+34.1 above chance) against 53.0 ± 2.1 with the named shape's
cell (README).

A shape is named by its kind ("the circle") only when it is the only one of its kind in the scene
(``color_of_shape``); otherwise the template returns None and the caller draws again.
"""

from __future__ import annotations

import dataclasses
import random

from qslaw.embedded.world.problems import LAN, NAT, SOC, Draft, Template, TemplateContext, pick_distractors
from qslaw.embedded.world.scenes import COLORS, POSITIONS, SHAPES, Scene, SceneObject, sample_scene

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
MAP_KEY_LECTURE = ("A map key tells what each colour on a map stands for. Find the colour of a place on the map, "
                   "then find that colour in the key.")
MARKET_GOODS = ("apples", "bread", "candles", "fish", "honey", "jars", "pencils", "ribbons", "salt", "wool")
"""What a market map's shops sell: one word each, no two starting alike (`problems.option_head`)."""
COUNTS = tuple(str(n) for n in range(6))


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


def read_map_key(rng: random.Random, ctx: TemplateContext) -> Draft:
    """What the one shop on a market map sells: its colour, read from the picture, looked up in the hint's key.

    The key pairs four colours with four goods, the choices, so the hint alone cannot tell the answer: only the
    picture's colour does. Each colour comes right before its good ("red apples"), as a price list puts a good
    right before its price (``qslaw.embedded.world.txt_questions.read_price``): the solution writes the colour, then the
    good that follows it in the hint."""
    scene = sample_scene(rng, 1)
    color = scene.objects[0].color
    goods = rng.sample(MARKET_GOODS, 4)
    colors = [color, *rng.sample([c for c in COLORS if c != color], 3)]
    pairs = list(zip(colors, goods))
    rng.shuffle(pairs)
    return Draft(
        question="What does the shop on the map sell?", answer=goods[0], distractors=tuple(goods[1:]),
        hint=f"The map shows one shop at a market. Map key: {', '.join(f'{c} {g}' for c, g in pairs)}.",
        subject=SOC, topic="geography", category="Reading maps", skill="Read a map key", lecture=MAP_KEY_LECTURE,
        solution=f"The colour of the shop is {color}. The map key says: {color} {goods[0]}.", scene=scene,
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
    (SOC, "G7-12"): (read_map_key,),
    (LAN, "G1-6"): (color_word,),
    (LAN, "G7-12"): (fill_in_color,),
}
"""IMG templates per (subject, grade band)."""
