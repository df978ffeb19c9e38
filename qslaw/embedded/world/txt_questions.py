"""TXT question templates: answerable only by reading the hint.

How it works
------------
The hint states a fact drawn at random for this one question (an object's material, a trip's time, a
price, an invented town's market day, an invented word's meaning in a story …), so it cannot be
memorised from the corpus or from other questions; the question asks about that fact. Every template
is a reading task (find the fact, then its option): the embedded 4-layer LM cannot learn arithmetic or
numeric comparison in its budget, and templates it can only guess at would make TXT a coin toss for every
method instead of a measure of how much reading a quantized model keeps.

| subject | band  | template                                                          |
|---------|-------|-------------------------------------------------------------------|
| NAT     | G1-6  | what an object is made of                                         |
| NAT     | G7-12 | how long a trip took, from its distance, time and speed           |
| SOC     | G1-6  | read the day of an event from a town's schedule                   |
| SOC     | G7-12 | what one of two goods costs on a town's price list                |
| LAN     | G1-6  | what an invented word means in a story                            |
| LAN     | G7-12 | which of two actions in a sentence happened first                 |

Names of towns and words come from ``invent_word``; a town name ends in ``-ton`` or ``-ford``,
which no knowledge-base name does, and a story word has two syllables (lexicon words have one) and
is never a creature's name, so hints never contradict the corpus.
"""

from __future__ import annotations

import random

from qslaw.embedded.world.facts import MEANINGS, strip_article
from qslaw.embedded.world.names import invent_word
from qslaw.embedded.world.problems import LAN, NAT, SOC, Draft, Template, TemplateContext, pick_distractors

PEOPLE = ("Mira", "Tam", "Oda", "Lev", "Ines", "Bo", "Kay", "Rafe", "Una", "Pim", "Sol", "Vera")
PRONOUN = {"Mira": "she", "Oda": "she", "Ines": "she", "Kay": "she", "Una": "she", "Vera": "she"}
OBJECTS = ("cup", "spoon", "bowl", "chair", "ball", "box", "bell", "lamp", "ring", "hat", "mat", "toy")
MATERIALS = ("wood", "glass", "metal", "paper", "clay", "wool", "stone", "rubber", "cotton", "leather", "plastic",
             "silver")
VEHICLES = ("cart", "boat", "sled", "bicycle", "wagon", "raft")
EVENTS = ("market", "fair", "music night", "boat race", "book swap", "bread sale")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
GOODS = ("apple", "pencil", "candle", "ribbon", "jar")
ACTIONS = ("washed", "painted", "fixed", "opened", "cleaned", "filled", "packed", "carried", "folded", "sorted")
THINGS = ("box", "basket", "door", "boat", "jar", "table", "net", "cart", "shelf", "bag")
DIGITS = tuple(str(n) for n in range(2, 10))


def _pronoun(name: str) -> str:
    return PRONOUN.get(name, "he")


def object_material(rng: random.Random, ctx: TemplateContext) -> Draft:
    """An object's material in the hint; what it is made of."""
    person, thing, material = rng.choice(PEOPLE), rng.choice(OBJECTS), rng.choice(MATERIALS)
    return Draft(
        question=f"What is {person}'s {thing} made of?", answer=material,
        distractors=pick_distractors(rng, MATERIALS, material, 3),
        hint=f"{person} has a {thing} made of {material}.", subject=NAT, topic="physics", category="Materials",
        skill="Identify the material an object is made of",
        lecture="A material is what an object is made of. Different objects can be made of different materials.",
        solution=f"The text says that the {thing} is made of {material}.",
    )


def travel_time(rng: random.Random, ctx: TemplateContext) -> Draft:
    """A trip's distance and time in the hint; how long it took."""
    vehicle, v, t = rng.choice(VEHICLES), rng.randint(2, 12), int(rng.choice(DIGITS))
    return Draft(
        question=f"For how many seconds did the {vehicle} move?", answer=f"{t} seconds",
        distractors=tuple(f"{w} seconds" for w in pick_distractors(rng, DIGITS, str(t), 3)),
        hint=f"A {vehicle} moved {v * t} meters in {t} seconds at a steady speed of {v} meters per second.",
        subject=NAT, topic="physics", category="Velocity and speed", skill="Read distance and time from a text",
        lecture="Speed tells how far something moves in each unit of time. A trip takes a distance and a time.",
        solution=f"The text says that the {vehicle} moved {v * t} meters in {t} seconds.",
    )


def read_schedule(rng: random.Random, ctx: TemplateContext) -> Draft:
    """An invented town's event day."""
    town = invent_word(rng, 2).capitalize() + rng.choice(("ton", "ford"))
    event, day = rng.choice(EVENTS), rng.choice(DAYS)
    return Draft(
        question=f"On which day does the {event} happen in {town}?", answer=day,
        distractors=pick_distractors(rng, DAYS, day, 3), hint=f"In {town}, the {event} happens every {day}.",
        subject=SOC, topic="civics", category="Community schedules", skill="Read a schedule",
        lecture="A schedule tells when events happen. Read the text carefully to find the day.",
        solution=f"The text says that the {event} in {town} happens every {day}.",
    )


def read_price(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Two prices at an invented town's shop; what one good costs."""
    town = invent_word(rng, 2).capitalize() + rng.choice(("ton", "ford"))
    one_a, one_b = rng.sample(GOODS, 2)
    pa, pb = rng.sample(DIGITS, 2)
    asked, price = (one_a, pa) if rng.random() < 0.5 else (one_b, pb)
    return Draft(
        question=f"How many coins does one {asked} cost in {town}?", answer=f"{price} coins",
        distractors=tuple(f"{w} coins" for w in pick_distractors(rng, DIGITS, price, 3)),
        hint=f"The price list of the shop in {town} says: {one_a} {pa} coins, {one_b} {pb} coins.", subject=SOC,
        topic="economics", category="Budgets", skill="Read prices from a price list",
        lecture="A price tells how much money you need to buy something. A price list gives the price of each good.",
        solution=f"The price list says: {asked} {price} coins.",
    )


def word_in_story(rng: random.Random, ctx: TemplateContext) -> Draft:
    """An invented word defined in the hint."""
    taken = {c.name for c in ctx.kb.creatures}
    word = invent_word(rng, 2)
    while word in taken:
        word = invent_word(rng, 2)
    pool = [strip_article(m) for meanings in MEANINGS.values() for m in meanings]
    meaning = rng.choice(pool)
    return Draft(
        question=f"What does the word '{word}' mean in the story?", answer=meaning,
        distractors=pick_distractors(rng, pool, meaning, 3), hint=f"In the story, the word '{word}' means {meaning}.",
        subject=LAN, topic="vocabulary", category="Context clues", skill="Use context to find a word's meaning",
        lecture="When a word is new, look at the text around it. The text often tells what the word means.",
        solution=f"The text tells you that '{word}' means {meaning}.",
    )


def first_action(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Two actions joined by before/after/then; which came first."""
    person = rng.choice(PEOPLE)
    past1, past2 = rng.sample(ACTIONS, 2)
    thing1, thing2 = rng.sample(THINGS, 2)
    act1, act2 = f"{past1} the {thing1}", f"{past2} the {thing2}"
    form = rng.choice(("before", "after", "then"))
    hint = {"before": f"{person} {act1} before {_pronoun(person)} {act2}.",
            "after": f"{person} {act2} after {_pronoun(person)} {act1}.",
            "then": f"First, {person} {act1}. Then {_pronoun(person)} {act2}."}[form]
    return Draft(
        question=f"What did {person} do first?", answer=act1, distractors=(act2,),
        hint=hint, subject=LAN, topic="reading-comprehension", category="Sequence of events",
        skill="Find the order of events in a text",
        lecture="Words such as before, after, first and then tell the order in which things happen.",
        solution=f"The text says that first {person} {act1}.",
    )


TEMPLATES: dict[tuple[str, str], tuple[Template, ...]] = {
    (NAT, "G1-6"): (object_material,),
    (NAT, "G7-12"): (travel_time,),
    (SOC, "G1-6"): (read_schedule,),
    (SOC, "G7-12"): (read_price,),
    (LAN, "G1-6"): (word_in_story,),
    (LAN, "G7-12"): (first_action,),
}
"""TXT templates per (subject, grade band)."""
