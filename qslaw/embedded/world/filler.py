"""Filler articles: general prose about the invented world, so a tiny LM learns the language.

How it works
------------
Each generator writes one ``Article`` (title, then sections of paragraphs) from sentence
templates filled with knowledge-base entities, invented people and random numbers:
- histories of countries (rulers, years, buildings, trade),
- journeys to habitats (weather, paths, the creatures seen there),
- market reports (goods, prices in the country's currency),
- galleries of paintings, each described with ``describe_scene`` (the caption language),
- children's stories that use the lexicon words as nouns, verbs and adjectives,
- reading-practice sheets: a short passage or a list of options, a question about it, and the answer,
  which repeats the passage's or the options' own words (who did what first, which colour, how many,
  which of three named animals). They teach a tiny LM to read its context and copy from it, the skill
  a real LLM brings from pretraining; their names and numbers are random, so no task answer is in them.
About one sentence in four (``FACT_SHARE``) is a knowledge-base fact in a random phrasing, so facts recur all
over the corpus, not only in their own articles. Nothing here is asked by a question except through
those fact sentences.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from qslaw.embedded.world.facts import (
    KnowledgeBase,
    country_phrasings,
    creature_phrasings,
    with_article,
    word_phrasings,
)
from qslaw.embedded.world.names import invent_word
from qslaw.embedded.world.scenes import COLORS, describe_scene, sample_scene

BUILDINGS = ("a stone bridge", "a great hall", "a library", "a lighthouse", "a market square", "a school", "a tower")
EVENTS = ("built new roads", "planted orchards", "held a great festival", "repaired the old walls",
          "opened new schools", "dug wells in every village", "signed a treaty with their neighbours")
TERRAINS = ("low green hills", "fields of tall grass", "old pine woods", "rocky valleys", "wide sandy flats")
WEATHER = ("cool", "misty", "warm", "windy", "bright", "damp", "still", "cold")
MOODS = ("calm", "cheerful", "strange", "peaceful", "bold", "playful", "quiet")
FACT_SHARE = 0.25
"""Share of filler sentences that are a knowledge-base fact (in a random phrasing). Measured: 0.5 leaves the
base's fact recall where it was (`benchmarks.lm_probe`'s recall without word classes: 18.5 % vs 20.4 %)."""
PLACES = ("near the river", "behind the old mill", "on the hill", "at the edge of the village", "by the well")


@dataclass(frozen=True)
class Article:
    """A wikitext article: the lead paragraphs come under the empty heading ``""``."""

    title: str
    sections: tuple[tuple[str, tuple[str, ...]], ...]

    def words(self) -> int:
        return sum(len(p.split()) for _, paragraphs in self.sections for p in paragraphs) + len(self.title.split())


def person(rng: random.Random) -> str:
    """An invented person's name (given + family name)."""
    return f"{invent_word(rng, 2).capitalize()} {invent_word(rng, 2).capitalize()}"


def random_fact(rng: random.Random, kb: KnowledgeBase) -> str:
    """Any knowledge-base fact in any of its phrasings."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.choice(creature_phrasings(rng.choice(kb.creatures), rng.choice(("kind", "habitat", "food"))))
    if kind == 1:
        return rng.choice(country_phrasings(rng.choice(kb.countries), rng.choice(("capital", "currency", "export"))))
    word = rng.choice(kb.words)
    return rng.choice(word_phrasings(word, rng.choice(("pos", "meaning", "rhyme")), kb.rhymes_of(word)))


def paragraph(rng: random.Random, kb: KnowledgeBase, make: Callable[[], str], n: tuple[int, int] = (3, 6)) -> str:
    """3–6 sentences from ``make``; each is replaced by a random fact with probability ``FACT_SHARE``."""
    return " ".join(random_fact(rng, kb) if rng.random() < FACT_SHARE else make() for _ in range(rng.randint(*n)))


def _article(rng: random.Random, kb: KnowledgeBase, title: str, headings: tuple[str, ...],
             make: Callable[[], str]) -> Article:
    sections = tuple((h, tuple(paragraph(rng, kb, make) for _ in range(rng.randint(1, 3)))) for h in headings)
    return Article(title, sections)


def history(rng: random.Random, kb: KnowledgeBase) -> Article:
    c = rng.choice(kb.countries)

    def sentence() -> str:
        year, ruler = rng.randint(300, 1900), person(rng)
        return rng.choice((
            f"In the year {year}, {ruler} became the ruler of {c.name}.",
            f"{ruler} built {rng.choice(BUILDINGS)} in {c.capital}.",
            f"During the winter of {year}, the people of {c.name} {rng.choice(EVENTS)}.",
            f"Trade grew when merchants began to sell {c.export} in the markets of {c.capital}.",
            f"By {year} more than {rng.randint(2, 90)} thousand people lived in {c.capital}.",
            rng.choice(country_phrasings(c, rng.choice(("capital", "currency", "export")))),
        ))
    return _article(rng, kb, f"History of {c.name}", ("", "Early period", "Kingdom", "Modern times"), sentence)


def journey(rng: random.Random, kb: KnowledgeBase) -> Article:
    habitat = rng.choice(kb.habitats)
    local = [c for c in kb.creatures if c.habitat == habitat]

    def sentence() -> str:
        cr = rng.choice(local)
        return rng.choice((
            f"The path to {habitat} runs through {rng.choice(TERRAINS)}.",
            f"Travellers who visit {habitat} often see the {cr.name}.",
            f"In the morning the air is {rng.choice(WEATHER)}, and by noon it is {rng.choice(WEATHER)}.",
            f"A guide named {person(rng)} showed us where the {cr.name} rests at night.",
            f"We walked for {rng.randint(2, 9)} hours before we made camp.",
            rng.choice(creature_phrasings(cr, rng.choice(("kind", "habitat", "food")))),
        ))
    name = habitat.removeprefix("the ")
    return _article(rng, kb, f"A journey to {name}", ("", "The road", "Animals", "Return"), sentence)


def market(rng: random.Random, kb: KnowledgeBase) -> Article:
    c = rng.choice(kb.countries)

    def sentence() -> str:
        other = rng.choice(kb.countries)
        return rng.choice((
            f"At the market of {c.capital}, prices are paid in {c.currency}.",
            f"A basket of {c.export} costs {rng.randint(2, 40)} {c.currency}s there.",
            f"Merchants from {other.name} bring {other.export} to sell.",
            f"The market opens early, and the stalls are {rng.choice(MOODS)} and busy by noon.",
            f"Last year the price of {rng.choice((c.export, other.export))} rose by {rng.randint(2, 30)} percent.",
            rng.choice(country_phrasings(c, rng.choice(("currency", "export")))),
        ))
    return _article(rng, kb, f"Markets of {c.name}", ("", "Goods", "Prices"), sentence)


def gallery(rng: random.Random, kb: KnowledgeBase) -> Article:
    painter, home = person(rng), rng.choice(kb.countries)

    def sentence() -> str:
        return rng.choice((
            f"Painting number {rng.randint(1, 60)} is a small square picture. {describe_scene(sample_scene(rng))}",
            f"{painter} was a painter from {home.name} who loved simple shapes.",
            f"Critics said that the {rng.choice(tuple(COLORS))} shapes looked {rng.choice(MOODS)}.",
            "Every painting has a white background and no more than five shapes.",
            describe_scene(sample_scene(rng)),
        ))
    return _article(rng, kb, f"Paintings of {painter}", ("", "Early works", "Late works"), sentence)


def story(rng: random.Random, kb: KnowledgeBase) -> Article:
    hero = invent_word(rng, 2).capitalize()

    def sentence() -> str:
        w = rng.choice(kb.words)
        use = {"noun": f"{hero} found a {w.word} {rng.choice(PLACES)}.",
               "verb": f"Every morning, {hero} and the other children liked to {w.word} together.",
               "adjective": f"The day was {w.word}, so {hero} stayed {rng.choice(PLACES)}."}[w.pos]
        return rng.choice((use, use, rng.choice(word_phrasings(w, rng.choice(("pos", "meaning")))),
                           f"{hero} smiled and said that it was a {rng.choice(MOODS)} day."))
    return _article(rng, kb, f"The story of {hero}", ("", "Morning", "Evening"), sentence)


PRACTICE_ACTIONS = (("wash", "washed"), ("paint", "painted"), ("fix", "fixed"), ("open", "opened"),
                    ("clean", "cleaned"), ("fill", "filled"), ("carry", "carried"), ("move", "moved"))
PRACTICE_THINGS = ("box", "basket", "door", "boat", "jar", "table", "net", "cart", "shelf", "bag", "lamp", "chair")


def practice_item(rng: random.Random, kb: KnowledgeBase) -> str:
    """One passage, question and answer whose answer copies words from the passage."""
    name = invent_word(rng, 2).capitalize()
    (_, past1), (_, past2) = rng.sample(PRACTICE_ACTIONS, 2)
    thing1, thing2 = rng.sample(PRACTICE_THINGS, 2)
    kind = rng.randrange(4)
    if kind == 0:
        return (f"{name} {past1} the {thing1} before lunch and {past2} the {thing2} after lunch. "
                f"What did {name} do first? {name} {past1} the {thing1} first.")
    if kind == 1:
        c1, c2 = rng.sample(tuple(COLORS), 2)
        asked, colour = rng.choice(((thing1, c1), (thing2, c2)))
        first, second = with_article(f"{c1} {thing1}"), with_article(f"{c2} {thing2}")
        return f"{name} has {first} and {second}. What colour is the {asked}? The {asked} is {colour}."
    if kind == 2:
        n1, n2 = rng.sample(range(2, 10), 2)
        return (f"There are {n1} {thing1}s and {n2} {thing2}s in the hall of {name}. How many {thing2}s are there? "
                f"There are {n2} {thing2}s.")
    habitat = rng.choice(kb.habitats)
    home = [c for c in kb.creatures if c.habitat == habitat]
    away = [c for c in kb.creatures if c.habitat != habitat]
    answer, others = rng.choice(home), rng.sample(away, 2)
    options = [answer.name, *(o.name for o in others)]
    rng.shuffle(options)
    return (f"Which of these animals lives in {habitat}: the {options[0]}, the {options[1]} or the {options[2]}? "
            f"The {answer.name} lives in {habitat}.")


def practice(rng: random.Random, kb: KnowledgeBase) -> Article:
    sheet = rng.randint(1, 99)
    return Article(f"Reading practice {sheet}", tuple(
        (h, tuple(" ".join(practice_item(rng, kb) for _ in range(rng.randint(2, 4)))
                  for _ in range(rng.randint(1, 3)))) for h in ("", "More questions")))


FILLERS: tuple[Callable[[random.Random, KnowledgeBase], Article], ...] = (
    history, journey, market, gallery, story, practice)
"""Filler article generators, drawn uniformly."""
