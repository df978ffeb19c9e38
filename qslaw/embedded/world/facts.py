"""The knowledge base: invented creatures, countries and words, and the sentences that state them.

How it works
------------
``build_knowledge_base(seed)`` invents one world:
- 48 creatures, each with a kind (fish, bird, …), a habitat (one of 8 invented places) and a food
  (natural science);
- 36 countries, each with a unique capital, a unique currency and a main export (social science);
- 72 lexicon words in 24 rhyme groups of 3 (same ending), each a noun, verb or adjective with a
  short meaning (language science).
A fact is one (entity, relation) pair with a stable key such as ``creature:glorp:habitat``; the
three words of a rhyme group share one key ``rime:orp``. Each fact is assigned to exactly one task split
(60% train, 15% validation, 25% test, per relation), so a NO-context test question asks for a fact that no
training question shows: the model must recall it from the corpus its language model was pretrained on. An
entity's other facts may be asked in other splits ("What is the currency of Brevvua?" in train, "Which city
is the capital of Brevvua?" in test), as in ScienceQA, where splits share subjects but not problems. With
whole entities per split (the earlier design), the fine-tuned model met every test entity name for the first time
and fell back to the relation it saw most: it wrote the currency lecture for 12 of 15 capital questions, and
NO scored 31 % (chance 26); splitting facts, 40-44 % on the same base. The corpus states every fact, whatever
its split.

``phrasings(...)`` functions return several differently worded sentences for a fact; the corpus
uses them to state each fact several times, and ``Fact.keywords`` lists the words a sentence that
states the fact must contain (used by the tests to check corpus coverage). The first phrasing, the one NO
solutions use, names the relation before the entity and puts the value right after the entity and "is"
("The currency of Brevvua is prin.", "The home of the komste is Prath Forest.", "The animal class of the komste
is amphibian.", "The word class of slorp is noun.", "The meaning of slorp is small boat.", "The rhymes of slorp
are glorp and trorp."; a food stays "The komste eats moss.", the verb right after the entity): the 4-layer LM
recalls a value that comes right after the entity far better than one a few tokens later. Picking the right
value among four (three for word classes) by the first phrasing's likelihood, LM pretrained alone on the same
budget:

| relation   | earlier first phrasing                  | recognised | "… of X is V" form          | recognised |
|------------|-----------------------------------------|------------|-----------------------------|------------|
| currency   | "The currency of X is the prin."        | 9 / 36     | "The currency of X is prin." | 36 / 36   |
| kind       | "The X is a kind of amphibian."         | 12 / 48    | "The animal class of the X is" | 45 / 48 |
| habitat    | "The X lives in Prath Forest."          | 14 / 48    | "The home of the X is"      | 42 / 48    |
| word class | "The word class of 'slorp' is noun."    | 27 / 72    | "The word class of slorp is" | 61 / 72   |
| meaning    | "The word 'slorp' means a small boat."  | 40 / 72    | "The meaning of slorp is"   | 54 / 72    |

(the quotes around a word are a token between it and "is"; on the earlier build, "The home of the X is", then a
rare phrasing, already scored 39 of 48). Place names are proper names without "the" for the same reason.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from qslaw.embedded.world.names import NameBook, sub_rng

KINDS = ("fish", "bird", "mammal", "reptile", "insect", "amphibian")
KIND_PLURAL = {"fish": "fish", "bird": "birds", "mammal": "mammals", "reptile": "reptiles", "insect": "insects",
               "amphibian": "amphibians"}
FOODS = ("seeds", "insects", "leaves", "small fish", "berries", "grass", "moss", "worms", "roots", "snails")
PLACE_FORMS = ("Lake {}", "{} Forest", "{} Desert", "{} Marsh", "{} Mountains", "{} Plains", "{} Caves", "{} Reef")
GOODS = ("salt", "copper", "wool", "glass", "tea", "timber", "silk", "honey", "iron", "rice", "paper", "cheese")
RIMES = ("orp", "ix", "ung", "eeb", "alt", "oom", "isk", "uv", "arn", "ep", "oz", "ilk", "ump", "eth", "aff",
         "oog", "yn", "esh", "ult", "anth", "ib", "ork", "ux", "eld")
WORD_ONSETS = ("bl", "dr", "fl", "gl", "gr", "kl", "pl", "pr", "sk", "sl", "sn", "sp", "st", "tr", "v", "z", "j",
               "kw", "m", "n")
MEANINGS: dict[str, tuple[str, ...]] = {
    "noun": ("a small boat", "a kind of bread", "a wooden spoon", "a winter coat", "a mountain path", "a clay pot",
             "a fishing net", "a young goat", "a garden gate", "a paper kite", "a copper bell", "a shallow pond",
             "a wool blanket", "a stone bridge", "a reed basket", "a glass bead", "a tall ladder", "a river stone",
             "a feather pillow", "a silver key", "a rope swing", "a candle lamp", "a honey cake", "a leather boot"),
    "verb": ("to jump over water", "to hum quietly", "to stack stones", "to sweep a floor", "to climb a tree",
             "to fold paper", "to whistle loudly", "to dig a hole", "to stir soup", "to knock twice",
             "to count sheep", "to paint a wall", "to row a boat", "to sort beads", "to carry water",
             "to mend a net", "to shake a rug", "to plant seeds", "to blow out a candle", "to tie a knot",
             "to skip a stone", "to wave goodbye", "to bake bread", "to ring a bell"),
    "adjective": ("very cold", "slightly wet", "bright green", "very tired", "soft and warm", "too salty",
                  "quite noisy", "very old", "a little sad", "shiny and new", "very tall", "rough and dry",
                  "full of holes", "very sleepy", "sweet and sticky", "very brave", "dark blue", "very quiet",
                  "light as air", "very hungry", "round and smooth", "very slow", "half empty", "very careful"),
}
SPLIT_FRACTIONS = (("train", 0.60), ("validation", 0.15), ("test", 0.25))
N_CREATURES, N_COUNTRIES = 48, 36


@dataclass(frozen=True)
class Creature:
    name: str
    kind: str
    habitat: str
    food: str


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    currency: str
    export: str


@dataclass(frozen=True)
class Word:
    word: str
    pos: str
    meaning: str
    rime: str


@dataclass(frozen=True)
class KnowledgeBase:
    """Every invented entity plus the task split (``fact_split[key]``) each fact belongs to."""

    creatures: tuple[Creature, ...]
    countries: tuple[Country, ...]
    words: tuple[Word, ...]
    habitats: tuple[str, ...]
    fact_split: dict[str, str]

    def rhymes_of(self, word: Word) -> tuple[Word, ...]:
        """The other words of ``word``'s rhyme group."""
        return tuple(w for w in self.words if w.rime == word.rime and w.word != word.word)

    def facts_in(self, split: str, entity: str, relation: str = "") -> tuple[str, ...]:
        """Fact keys of ``split`` about ``entity`` (creature, country, word, rime) and ``relation``."""
        return tuple(
            k for k, s in self.fact_split.items()
            if s == split and k.split(":")[0] == entity and (not relation or k.endswith(f":{relation}"))
        )

    def creature(self, name: str) -> Creature:
        return next(c for c in self.creatures if c.name == name)

    def country(self, name: str) -> Country:
        return next(c for c in self.countries if c.name == name)

    def word(self, name: str) -> Word:
        return next(w for w in self.words if w.word == name)


def strip_article(text: str) -> str:
    """``"the Prath Forest"`` → ``"Prath Forest"``; choices start with the word that tells them apart."""
    return re.sub(r"^(?:the|a|an|to) ", "", text)


def with_article(noun: str) -> str:
    """``a fish`` / ``an insect``."""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _creatures(rng: random.Random, book: NameBook, habitats: tuple[str, ...]) -> tuple[Creature, ...]:
    kinds = [KINDS[i % len(KINDS)] for i in range(N_CREATURES)]
    rng.shuffle(kinds)
    return tuple(
        Creature(book.fresh(2), kind, habitats[i % len(habitats)], rng.choice(FOODS)) for i, kind in enumerate(kinds)
    )


def _countries(rng: random.Random, book: NameBook) -> tuple[Country, ...]:
    return tuple(
        Country(book.fresh(2, rng.choice(("", "ia", "a"))).capitalize(), book.fresh(2).capitalize(), book.fresh(1),
                rng.choice(GOODS))
        for _ in range(N_COUNTRIES)
    )


def _words(rng: random.Random, book: NameBook) -> tuple[Word, ...]:
    pos_deck = [p for p in MEANINGS for _ in range(len(RIMES))]
    rng.shuffle(pos_deck)
    meanings = {p: list(m) for p, m in MEANINGS.items()}
    for m in meanings.values():
        rng.shuffle(m)
    words = []
    for rime in RIMES:
        onsets = [o for o in WORD_ONSETS if book.claim(o + rime)]
        for onset in rng.sample(onsets, 3):
            pos = pos_deck.pop()
            words.append(Word(onset + rime, pos, meanings[pos].pop(), rime))
    return tuple(words)


def _fact_groups(kb_parts: tuple[tuple[Creature, ...], tuple[Country, ...], tuple[Word, ...]]) -> list[list[list[str]]]:
    """Fact keys, one per bundle, grouped per relation, so every split gets its share of every relation."""
    creatures, countries, words = kb_parts
    groups = [[[f"creature:{c.name}:{r}"] for c in creatures] for r in ("kind", "habitat", "food")]
    groups += [[[f"country:{c.name}:{r}"] for c in countries] for r in ("capital", "currency", "export")]
    groups += [[[f"word:{w.word}:{r}"] for w in words] for r in ("pos", "meaning")]
    groups.append([[f"rime:{rime}"] for rime in dict.fromkeys(w.rime for w in words)])
    return groups


def _assign_splits(rng: random.Random, groups: list[list[list[str]]]) -> dict[str, str]:
    assignment: dict[str, str] = {}
    for bundles in groups:
        bundles = list(bundles)
        rng.shuffle(bundles)
        start = 0
        for i, (split, fraction) in enumerate(SPLIT_FRACTIONS):
            stop = len(bundles) if i == len(SPLIT_FRACTIONS) - 1 else start + round(fraction * len(bundles))
            assignment.update({k: split for bundle in bundles[start:stop] for k in bundle})
            start = stop
    return assignment


def build_knowledge_base(seed: int) -> KnowledgeBase:
    """Invent the world's creatures, countries and words and split their facts between task splits."""
    rng = sub_rng(seed, "knowledge-base")
    book = NameBook(rng)
    habitats = tuple(form.format(book.fresh(1).capitalize()) for form in PLACE_FORMS)
    parts = (_creatures(rng, book, habitats), _countries(rng, book), _words(rng, book))
    return KnowledgeBase(*parts, habitats=habitats, fact_split=_assign_splits(rng, _fact_groups(parts)))


def creature_phrasings(c: Creature, relation: str) -> tuple[str, ...]:
    """Differently worded sentences stating one creature fact."""
    cap = c.name.capitalize()
    if relation == "kind":
        return (f"The animal class of the {c.name} is {c.kind}.", f"{cap}s are {KIND_PLURAL[c.kind]}.",
                f"Scientists classify the {c.name} as {with_article(c.kind)}.",
                f"The {c.name} is {with_article(c.kind)}.")
    if relation == "habitat":
        return (f"The home of the {c.name} is {c.habitat}.", f"{cap}s are found in {c.habitat}.",
                f"The {c.name} lives in {c.habitat}.", f"The {c.name} makes its home in {c.habitat}.")
    return (f"The {c.name} eats {c.food}.", f"{cap}s feed on {c.food}.",
            f"The diet of the {c.name} is mostly {c.food}.", f"The {c.name} searches for {c.food} to eat.")


def country_phrasings(c: Country, relation: str) -> tuple[str, ...]:
    """Differently worded sentences stating one country fact."""
    if relation == "capital":
        return (f"The capital of {c.name} is {c.capital}.", f"{c.capital} is the capital city of {c.name}.",
                f"The government of {c.name} meets in {c.capital}, its capital.",
                f"{c.name} has its capital at {c.capital}.")
    if relation == "currency":
        return (f"The currency of {c.name} is {c.currency}.", f"People in {c.name} pay with {c.currency}.",
                f"{c.currency.capitalize()} is the currency of {c.name}.", f"{c.name} uses {c.currency} as its money.")
    return (f"The main export of {c.name} is {c.export}.", f"{c.name} mainly exports {c.export}.",
            f"Traders from {c.name} sell {c.export} to other countries.", f"{c.name} is known for its {c.export}.")


def word_phrasings(w: Word, relation: str, rhymes: tuple[Word, ...] = ()) -> tuple[str, ...]:
    """Differently worded sentences stating one word fact (``rhyme`` needs the other group words)."""
    if relation == "pos":
        return (f"The word class of {w.word} is {w.pos}.", f"'{w.word.capitalize()}' is {with_article(w.pos)}.",
                f"In a sentence, '{w.word}' is used as {with_article(w.pos)}.",
                f"Grammar books list '{w.word}' as {with_article(w.pos)}.")
    if relation == "meaning":
        return (f"The meaning of {w.word} is {strip_article(w.meaning)}.",
                f"'{w.word.capitalize()}' means {w.meaning}.", f"In the dictionary, '{w.word}' means {w.meaning}.",
                f"People say '{w.word}' to mean {w.meaning}.")
    a, b = (r.word for r in rhymes)
    return (f"The rhymes of {w.word} are {a} and {b}.", f"'{w.word.capitalize()}', '{a}' and '{b}' rhyme.",
            f"'{a.capitalize()}' and '{w.word}' end with the same sound, and so does '{b}'.",
            f"Poets rhyme '{w.word}' with '{a}' or '{b}'.")


def first_phrasing(kb: KnowledgeBase, key: str) -> str:
    """The sentence a NO solution writes for a forward fact key: its first phrasing ("The capital of X is Y.")."""
    entity, name, relation = key.split(":")
    if entity == "creature":
        return creature_phrasings(kb.creature(name), relation)[0]
    if entity == "country":
        return country_phrasings(kb.country(name), relation)[0]
    return word_phrasings(kb.word(name), relation)[0]


def fact_keywords(kb: KnowledgeBase, key: str) -> tuple[str, ...]:
    """Words every sentence stating fact ``key`` contains (entity + value)."""
    entity, name, *relation = key.split(":")
    if entity == "rime":
        return tuple(w.word for w in kb.words if w.rime == name)
    record = {"creature": kb.creature, "country": kb.country, "word": kb.word}[entity](name)
    return (name, strip_article(getattr(record, relation[0])))
