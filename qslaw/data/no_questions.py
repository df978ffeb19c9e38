"""NO-context question templates: answerable only from knowledge-base facts stated in the corpus.

How it works
------------
A template picks a fact key from the knowledge base among those assigned to the split being
written (``KnowledgeBase.facts_in``), asks for the fact's value (forward) or for the entity that
has it (inverse), and offers wrong values drawn from the rest of the knowledge base. There is no
hint and no image: a model answers from what its language model memorised from the corpus.
Because every fact key lives in one split, a test question never asks about a fact that a training
question has shown. ``Draft.keywords`` carries the words of the stated fact, so tests can check
that the corpus states it.

| subject | band  | templates                                                             |
|---------|-------|-----------------------------------------------------------------------|
| NAT     | G1-6  | a creature's kind, habitat or food                                    |
| NAT     | G7-12 | which creature is of a kind / lives in a place                        |
| SOC     | G1-6  | a country's capital or main export                                    |
| SOC     | G7-12 | the country of a capital; a country's currency; the country of one   |
| LAN     | G1-6  | a word's meaning; the word that rhymes with a word                    |
| LAN     | G7-12 | the word that is a noun/verb/adjective; the word for a meaning; the   |
|         |       | word that comes first in alphabetical order                           |
"""

from __future__ import annotations

import random

from qslaw.data.facts import FOODS, GOODS, KIND_PLURAL, KINDS, KnowledgeBase, fact_keywords, with_article
from qslaw.data.problems import LAN, NAT, SOC, Draft, Template, TemplateContext, pick_distractors, strip_article

KIND_LECTURE = ("Scientists sort animals into groups. Fish live in water and breathe with gills. Birds have "
                "feathers. Mammals have fur and feed their young milk. Reptiles have dry, scaly skin. Insects have "
                "six legs. Amphibians live in water when young and on land as adults.")
HABITAT_LECTURE = "A habitat is the place where an animal lives and finds its food and shelter."
FOOD_LECTURE = ("Animals get energy from their food. Some eat parts of plants, such as seeds, leaves or roots; "
                "others eat animals, such as insects, worms or small fish.")
CAPITAL_LECTURE = "A capital is the city where the government of a country meets."
CURRENCY_LECTURE = "A currency is the kind of money that people use in a country."
EXPORT_LECTURE = "An export is a good that a country sells to other countries."
POS_LECTURE = "A noun names a person, place or thing. A verb tells what someone does. An adjective describes a noun."
MEANING_LECTURE = "A dictionary tells what words mean. Knowing what a word means helps you understand a text."
RHYME_LECTURE = "Words rhyme when they end with the same sound, like cat and hat."
ALPHA_LECTURE = ("Alphabetical order is the order of the letters from a to z. Compare the first letters of the "
                 "words; when they are the same, compare the next letters.")


def _pick(rng: random.Random, ctx: TemplateContext, entity: str, relation: str = "") -> tuple[str, str]:
    """A fact key of this split and the entity name in it."""
    key = rng.choice(sorted(ctx.kb.facts_in(ctx.split, entity, relation)))
    return key, key.split(":")[1]


def _draft(kb: KnowledgeBase, key: str, **fields: object) -> Draft:
    return Draft(keywords=fact_keywords(kb, key), **fields)


def creature_attribute(rng: random.Random, ctx: TemplateContext) -> Draft:
    """What kind of animal / where does it live / what does it eat."""
    relation = rng.choice(("kind", "habitat", "food"))
    key, name = _pick(rng, ctx, "creature", relation)
    c = ctx.kb.creature(name)
    question, answer, pool, lecture, solution = {
        "kind": (f"What kind of animal is the {name}?", c.kind, KINDS, KIND_LECTURE,
                 f"The {name} is {with_article(c.kind)}."),
        "habitat": (f"Where does the {name} live?", strip_article(c.habitat),
                    [strip_article(h) for h in ctx.kb.habitats], HABITAT_LECTURE,
                    f"The {name} lives in {c.habitat}."),
        "food": (f"What does the {name} eat?", c.food, FOODS, FOOD_LECTURE, f"The {name} eats {c.food}."),
    }[relation]
    return _draft(ctx.kb, key, question=question, answer=answer, distractors=pick_distractors(rng, pool, answer, 3),
                  subject=NAT, topic="biology", category="Animals of the world", skill=f"Recall an animal's {relation}",
                  lecture=lecture, solution=solution)


def creature_with_attribute(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Which of these animals is a reptile / lives in the Mirel Forest."""
    relation = rng.choice(("kind", "habitat"))
    key, name = _pick(rng, ctx, "creature", relation)
    value = getattr(ctx.kb.creature(name), relation)
    others = [c.name for c in ctx.kb.creatures if getattr(c, relation) != value]
    if relation == "kind":
        question, lecture, solution = (f"Which of these animals is {with_article(value)}?", KIND_LECTURE,
                                       f"The {name} is {with_article(value)}. The others are not {KIND_PLURAL[value]}.")
    else:
        question, lecture, solution = (f"Which of these animals lives in {value}?", HABITAT_LECTURE,
                                       f"The {name} lives in {value}. The others live in other places.")
    return _draft(ctx.kb, key, question=question, answer=name, distractors=pick_distractors(rng, others, name, 3),
                  subject=NAT, topic="biology", category="Animals of the world",
                  skill=f"Find the animal with a given {relation}", lecture=lecture, solution=solution)


def country_attribute(rng: random.Random, ctx: TemplateContext) -> Draft:
    """The capital or the main export of a country."""
    relation = rng.choice(("capital", "export"))
    key, name = _pick(rng, ctx, "country", relation)
    c = ctx.kb.country(name)
    if relation == "capital":
        pool, question = [x.capital for x in ctx.kb.countries], f"What is the capital of {name}?"
        lecture, solution, answer = CAPITAL_LECTURE, f"The capital of {name} is {c.capital}.", c.capital
    else:
        pool, question = list(GOODS), f"What does {name} mainly export?"
        lecture, solution, answer = EXPORT_LECTURE, f"{name} mainly exports {c.export}.", c.export
    return _draft(ctx.kb, key, question=question, answer=answer, distractors=pick_distractors(rng, pool, answer, 3),
                  subject=SOC, topic="geography", category="Countries of the world",
                  skill=f"Recall a country's {relation}", lecture=lecture, solution=solution)


def country_lookup(rng: random.Random, ctx: TemplateContext) -> Draft:
    """The country of a capital, a country's currency, or the country of a currency."""
    form = rng.choice(("capital->country", "country->currency", "currency->country"))
    key, name = _pick(rng, ctx, "country", "capital" if form == "capital->country" else "currency")
    c, countries = ctx.kb.country(name), [x.name for x in ctx.kb.countries]
    if form == "capital->country":
        question, answer, pool = f"{c.capital} is the capital of which country?", name, countries
        lecture, solution = CAPITAL_LECTURE, f"The capital of {name} is {c.capital}."
    elif form == "country->currency":
        question, answer = f"What is the currency of {name}?", c.currency
        pool = [x.currency for x in ctx.kb.countries]
        lecture, solution = CURRENCY_LECTURE, f"{name} uses the {c.currency} as its money."
    else:
        question, answer, pool = f"Which country uses the {c.currency} as its money?", name, countries
        lecture, solution = CURRENCY_LECTURE, f"The {c.currency} is the currency of {name}."
    return _draft(ctx.kb, key, question=question, answer=answer, distractors=pick_distractors(rng, pool, answer, 3),
                  subject=SOC, topic="geography", category="Countries of the world",
                  skill="Match countries with capitals and currencies", lecture=lecture, solution=solution)


def word_meaning(rng: random.Random, ctx: TemplateContext) -> Draft:
    """What a lexicon word means."""
    key, name = _pick(rng, ctx, "word", "meaning")
    w, pool = ctx.kb.word(name), [strip_article(x.meaning) for x in ctx.kb.words]
    meaning = strip_article(w.meaning)
    return _draft(ctx.kb, key, question=f"What does the word '{name}' mean?", answer=meaning,
                  distractors=pick_distractors(rng, pool, meaning, 3), subject=LAN, topic="vocabulary",
                  category="Word meanings", skill="Recall what a word means", lecture=MEANING_LECTURE,
                  solution=f"The word '{name}' means {w.meaning}.")


def rhyme(rng: random.Random, ctx: TemplateContext) -> Draft:
    """The one choice that rhymes with a word."""
    key, rime = _pick(rng, ctx, "rime")
    group = sorted(w.word for w in ctx.kb.words if w.rime == rime)
    asked, answer = rng.sample(group, 2)
    others = [w.word for w in ctx.kb.words if w.rime != rime]
    return Draft(question=f"Which word rhymes with '{asked}'?", answer=answer,
                 distractors=pick_distractors(rng, others, answer, 3), subject=LAN, topic="phonological-awareness",
                 category="Rhyming", skill="Find the word that rhymes", lecture=RHYME_LECTURE,
                 solution=f"'{asked}' and '{answer}' both end with the sound -{rime}, so they rhyme.",
                 keywords=(asked, answer))


def word_with_property(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Which word is a noun / verb / adjective, or which word means something."""
    relation = rng.choice(("pos", "meaning"))
    key, name = _pick(rng, ctx, "word", relation)
    w = ctx.kb.word(name)
    if relation == "pos":
        others = [x.word for x in ctx.kb.words if x.pos != w.pos]
        question, lecture = f"Which word is {with_article(w.pos)}?", POS_LECTURE
        solution = f"The word '{name}' is {with_article(w.pos)}. The other words are not."
    else:
        others = [x.word for x in ctx.kb.words if x.word != name]
        question, lecture = f"Which word means {w.meaning}?", MEANING_LECTURE
        solution = f"The word '{name}' means {w.meaning}."
    return _draft(ctx.kb, key, question=question, answer=name, distractors=pick_distractors(rng, others, name, 3),
                  subject=LAN, topic="vocabulary", category="Word meanings and classes",
                  skill=f"Find the word with a given {'word class' if relation == 'pos' else 'meaning'}",
                  lecture=lecture, solution=solution)


def alphabetical_first(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Which of 3–4 lexicon words comes first in alphabetical order."""
    keys = sorted(ctx.kb.facts_in(ctx.split, "word", "pos"))
    words = sorted(k.split(":")[1] for k in rng.sample(keys, rng.randint(3, 4)))
    return Draft(question="Which word comes first in alphabetical order?", answer=words[0],
                 distractors=tuple(words[1:]), subject=LAN, topic="reference-skills", category="Alphabetical order",
                 skill="Put words in alphabetical order", lecture=ALPHA_LECTURE,
                 solution=f"In alphabetical order the words are {', '.join(words)}. The first one is {words[0]}.",
                 keywords=(words[0],))


TEMPLATES: dict[tuple[str, str], tuple[Template, ...]] = {
    (NAT, "G1-6"): (creature_attribute,),
    (NAT, "G7-12"): (creature_with_attribute,),
    (SOC, "G1-6"): (country_attribute,),
    (SOC, "G7-12"): (country_lookup,),
    (LAN, "G1-6"): (word_meaning, rhyme),
    (LAN, "G7-12"): (word_with_property, alphabetical_first),
}
"""NO-context templates per (subject, grade band)."""
