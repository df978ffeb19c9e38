"""TXT question templates: answerable only by reading the hint.

How it works
------------
The hint states a fact drawn at random for this one question (a measured value, an invented town's
market day, an invented word's meaning in a story …), so it cannot be memorised from the corpus or
from other questions; the question asks about that fact.

| subject | band  | template                                                          |
|---------|-------|-------------------------------------------------------------------|
| NAT     | G1-6  | compare two measured objects (heavier/lighter, warmer, longer …)  |
| NAT     | G7-12 | compute a speed from a distance and a time                        |
| SOC     | G1-6  | read the day of an event from a town's schedule                   |
| SOC     | G7-12 | compute the coins left after a purchase                           |
| LAN     | G1-6  | what an invented word means in a story                            |
| LAN     | G7-12 | which of two actions in a sentence happened first                 |

Names of towns and words come from ``invent_word``; a town name ends in ``-ton`` or ``-ford``,
which no knowledge-base name does, and a story word has two syllables (lexicon words have one) and
is never a creature's name, so hints never contradict the corpus.
"""

from __future__ import annotations

import random

from qslaw.data.facts import MEANINGS
from qslaw.data.names import invent_word
from qslaw.data.problems import LAN, NAT, SOC, Draft, Template, TemplateContext, pick_distractors

PEOPLE = ("Mira", "Tam", "Oda", "Lev", "Ines", "Bo", "Kay", "Rafe", "Una", "Pim", "Sol", "Vera")
PRONOUN = {"Mira": "she", "Oda": "she", "Ines": "she", "Kay": "she", "Una": "she", "Vera": "she"}
MEASURES = (
    # (objects, value template, unit range, more word, less word, lecture)
    (("rock", "shell", "apple", "book", "shoe", "brick"), "weighs {v} grams", (50, 900), "heavier", "lighter",
     "Mass tells how heavy an object is. The object with the larger mass is heavier."),
    (("cup of tea", "bowl of soup", "glass of milk", "pot of water"), "has a temperature of {v} degrees Celsius",
     (5, 95), "warmer", "colder", "Temperature tells how hot or cold something is. A higher temperature is warmer."),
    (("rope", "ribbon", "stick", "scarf", "pencil"), "is {v} centimeters long", (5, 200), "longer", "shorter",
     "Length tells how long something is. The object with the greater length is longer."),
)
VEHICLES = ("cart", "boat", "sled", "bicycle", "wagon", "raft")
EVENTS = ("market", "fair", "music night", "boat race", "book swap", "bread sale")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
GOODS = (("apple", "apples"), ("pencil", "pencils"), ("candle", "candles"), ("ribbon", "ribbons"), ("jar", "jars"))
ACTIONS = (("wash", "washed"), ("paint", "painted"), ("fix", "fixed"), ("open", "opened"), ("clean", "cleaned"),
           ("fill", "filled"), ("pack", "packed"), ("carry", "carried"), ("fold", "folded"), ("sort", "sorted"))
THINGS = ("box", "basket", "door", "boat", "jar", "table", "net", "cart", "shelf", "bag")


def _pronoun(name: str) -> str:
    return PRONOUN.get(name, "he")


def compare_measures(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Two objects with measured values; which is heavier / lighter (warmer, longer …)."""
    objects, phrase, (low, high), more, less, lecture = rng.choice(MEASURES)
    a, b = rng.sample(objects, 2)
    va, vb = rng.sample(range(low, high + 1), 2)
    word = rng.choice((more, less))
    winner = a if (va > vb) == (word == more) else b
    person = rng.choice(PEOPLE)
    hint = (f"{person} measured two objects. The {a} {phrase.format(v=va)}. "
            f"The {b} {phrase.format(v=vb)}.")
    bigger, smaller = (a, b) if va > vb else (b, a)
    return Draft(
        question=f"Which object is {word}?", answer=f"the {winner}", distractors=(f"the {b if winner == a else a}",),
        hint=hint, subject=NAT, topic="physics", category="Measurement", skill="Compare measured values",
        lecture=lecture, solution=f"{max(va, vb)} is more than {min(va, vb)}, so the {bigger} is {more} and the "
        f"{smaller} is {less}. The {word} object is the {winner}.",
    )


def compute_speed(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Distance and time in the hint; the speed is the answer."""
    vehicle, v, t = rng.choice(VEHICLES), rng.randint(2, 12), rng.randint(2, 9)
    d = v * t
    wrong = sorted({d + t, abs(d - t), v + 1, v - 1, v + 2, t, 2 * v} - {v, 0, 1})
    return Draft(
        question=f"What was the speed of the {vehicle}?", answer=f"{v} meters per second",
        distractors=tuple(f"{w} meters per second" for w in rng.sample(wrong, 3)),
        hint=f"A {vehicle} moved {d} meters in {t} seconds at a steady speed.", subject=NAT, topic="physics",
        category="Velocity and speed", skill="Calculate speed from distance and time",
        lecture="Speed tells how far something moves in each unit of time: speed = distance divided by time.",
        solution=f"Divide the distance by the time: {d} meters divided by {t} seconds is {v} meters per second.",
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


def coins_left(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Budget: coins minus count times price."""
    person, (one, many) = rng.choice(PEOPLE), rng.choice(GOODS)
    price, k = rng.randint(2, 9), rng.randint(2, 5)
    total = k * price + rng.randint(0, 30)
    left = total - k * price
    wrong = sorted({left + price, left + k, total - price, total, abs(left - price), left + 1} - {left})
    pronoun = _pronoun(person).capitalize()
    hint = f"{person} has {total} coins. {pronoun} buys {k} {many}. Each {one} costs {price} coins."
    return Draft(
        question=f"How many coins does {person} have left?", answer=str(left),
        distractors=tuple(str(w) for w in rng.sample(wrong, 3)), hint=hint, subject=SOC, topic="economics",
        category="Budgets", skill="Calculate the money left after a purchase",
        lecture="To find the money left, multiply the price by the number of items and subtract that from the money "
        "you started with.",
        solution=f"{k} {many} cost {k} times {price}, which is {k * price} coins. {total} minus {k * price} is {left}.",
    )


def word_in_story(rng: random.Random, ctx: TemplateContext) -> Draft:
    """An invented word defined in the hint."""
    taken = {c.name for c in ctx.kb.creatures}
    word = invent_word(rng, 2)
    while word in taken:
        word = invent_word(rng, 2)
    pool = [m for meanings in MEANINGS.values() for m in meanings]
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
    (base1, past1), (base2, past2) = rng.sample(ACTIONS, 2)
    thing1, thing2 = rng.sample(THINGS, 2)
    act1, act2 = f"{past1} the {thing1}", f"{past2} the {thing2}"
    form = rng.choice(("before", "after", "then"))
    hint = {"before": f"{person} {act1} before {_pronoun(person)} {act2}.",
            "after": f"{person} {act2} after {_pronoun(person)} {act1}.",
            "then": f"First, {person} {act1}. Then {_pronoun(person)} {act2}."}[form]
    return Draft(
        question=f"What did {person} do first?", answer=f"{base1} the {thing1}", distractors=(f"{base2} the {thing2}",),
        hint=hint, subject=LAN, topic="reading-comprehension", category="Sequence of events",
        skill="Find the order of events in a text",
        lecture="Words such as before, after, first and then tell the order in which things happen.",
        solution=f"The text says that {person} {act1} first. So the answer is {base1} the {thing1}.",
    )


TEMPLATES: dict[tuple[str, str], tuple[Template, ...]] = {
    (NAT, "G1-6"): (compare_measures,),
    (NAT, "G7-12"): (compute_speed,),
    (SOC, "G1-6"): (read_schedule,),
    (SOC, "G7-12"): (coins_left,),
    (LAN, "G1-6"): (word_in_story,),
    (LAN, "G7-12"): (first_action,),
}
"""TXT templates per (subject, grade band)."""
