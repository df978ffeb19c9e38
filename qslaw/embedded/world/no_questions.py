"""NO-context question templates: answerable only from knowledge-base facts stated in the corpus.

How it works
------------
A template picks a fact key from the knowledge base among those assigned to the split being
written (``KnowledgeBase.facts_in``), asks for the fact's value and offers wrong values. Where every entity
has its own value (capital, currency, meaning, the words of a rhyme group) the wrong values belong to entities
of the same split: otherwise a test answer would appear in training questions only as a wrong option, and the
fine-tuned model learned to avoid it (measured: word meanings 11-19 % and rhymes 17 % on 4 options, below
chance). Shared values (kind, food, habitat, export, word class) are right in some questions of every split.
There is no hint and no image: a model answers from what its language
model memorised from the corpus. Because every fact key lives in one split, a test question never asks
about a fact that a training question has shown. ``Draft.keywords`` carries the words of the stated
fact, so tests can check that the corpus states it.

Every question asks forward (entity -> value), the direction in which the corpus states the fact
("The glorp eats moss."): a causal LM that read "A eats B" predicts B from A but not A from B (the
"reversal curse", Berglund et al. 2023), and the 4-layer base measured so: inverse questions ("Which of
these animals is a reptile?", "Which country uses the foorn?") and alphabetical order scored at or below
chance after fine-tuning, and a benchmark at chance cannot tell methods apart. The solution states the
fact in the corpus's first phrasing (``facts``: the value right after "of X is"), which echoes the question
("Which city is the capital of X?" -> "The capital of X is Y."; "Which place is the home of the X?" -> "The
home of the X is Prath Forest."; "What is the meaning of slorp?" -> "The meaning of slorp is small boat."), right
after a lecture that is only
used for that relation, so the fine-tuned model can copy the question's words up to the value it must recall.
"What does X mainly export?" / "X mainly exports Z." scored 0 of 12: the model mistook it for "What does the
X eat?" and wrote the food lecture, or no solution. An animal's food question starts "The X is an animal." so the
solution's "The" finds the name to copy (the compiled copy head matches the token before it): after "What does
the X eat?" the fine-tuned model wrote a training animal's name ("The shamrurk eats small fish.") for 9 of 11
foods, since "The" never occurs in that question; "the" is another token. No
lecture names an answer value ("Some eat seeds, leaves or roots" did): the compiled copy and option heads
would favour the value the lecture named last, and the letter lookup would take its option's letter.

| subject | band  | templates                                                 |
|---------|-------|-----------------------------------------------------------|
| NAT     | G1-6  | a creature's kind or food                                 |
| NAT     | G7-12 | a creature's habitat                                      |
| SOC     | G1-6  | a country's capital or main export                        |
| SOC     | G7-12 | a country's currency                                      |
| LAN     | G1-6  | a word's meaning; the word that rhymes with a word        |
| LAN     | G7-12 | a word's word class (noun, verb or adjective); its meaning |
"""

from __future__ import annotations

import random

from qslaw.embedded.world.facts import (
    FOODS,
    GOODS,
    KINDS,
    MEANINGS,
    KnowledgeBase,
    fact_keywords,
    first_phrasing,
    strip_article,
    word_phrasings,
)
from qslaw.embedded.world.problems import LAN, NAT, SOC, Draft, Template, TemplateContext, pick_distractors

KIND_LECTURE = "Scientists sort animals into groups by the features of their bodies."
HABITAT_LECTURE = "A habitat is the place where an animal lives and finds its food and shelter."
FOOD_LECTURE = "Animals get energy from their food. Some eat parts of plants; others eat other animals."
CAPITAL_LECTURE = "A capital is the city where the government of a country meets."
CURRENCY_LECTURE = "A currency is the kind of money that people use in a country."
EXPORT_LECTURE = "An export is a good that a country sells to other countries."
POS_LECTURE = "Every word belongs to a word class, which tells how the word is used in a sentence."
MEANING_LECTURE = "A dictionary tells what words mean. Knowing what a word means helps you understand a text."
RHYME_LECTURE = "Words rhyme when they end with the same sound, like cat and hat."


def _pick(rng: random.Random, ctx: TemplateContext, entity: str, relation: str = "") -> tuple[str, str]:
    """A fact key of this split and the entity name in it."""
    key = rng.choice(sorted(ctx.kb.facts_in(ctx.split, entity, relation)))
    return key, key.split(":")[1]


def _split_names(ctx: TemplateContext, entity: str, relation: str) -> list[str]:
    """Names of the ``entity`` kind whose ``relation`` fact lives in this split (distractor owners)."""
    return sorted({k.split(":")[1] for k in ctx.kb.facts_in(ctx.split, entity, relation)})


def _draft(kb: KnowledgeBase, key: str, **fields: object) -> Draft:
    return Draft(keywords=fact_keywords(kb, key), **fields)


def _creature(rng: random.Random, ctx: TemplateContext, relation: str) -> Draft:
    key, name = _pick(rng, ctx, "creature", relation)
    c = ctx.kb.creature(name)
    question, answer, pool, lecture = {
        "kind": (f"What is the animal class of the {name}?", c.kind, KINDS, KIND_LECTURE),
        "habitat": (f"Which place is the home of the {name}?", strip_article(c.habitat),
                    [strip_article(h) for h in ctx.kb.habitats], HABITAT_LECTURE),
        "food": (f"The {name} is an animal. What does it eat?", c.food, FOODS, FOOD_LECTURE),
    }[relation]
    return _draft(ctx.kb, key, question=question, answer=answer, distractors=pick_distractors(rng, pool, answer, 3),
                  subject=NAT, topic="biology", category="Animals of the world", skill=f"Recall an animal's {relation}",
                  lecture=lecture, solution=first_phrasing(ctx.kb, key))


def creature_kind_or_food(rng: random.Random, ctx: TemplateContext) -> Draft:
    """What kind of animal is it / what does it eat."""
    return _creature(rng, ctx, rng.choice(("kind", "food")))


def creature_habitat(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Where does it live."""
    return _creature(rng, ctx, "habitat")


def country_attribute(rng: random.Random, ctx: TemplateContext) -> Draft:
    """The capital or the main export of a country."""
    relation = rng.choice(("capital", "export"))
    key, name = _pick(rng, ctx, "country", relation)
    c = ctx.kb.country(name)
    if relation == "capital":
        pool = [ctx.kb.country(x).capital for x in _split_names(ctx, "country", "capital")]
        question = f"Which city is the capital of {name}?"
        lecture, answer = CAPITAL_LECTURE, c.capital
    else:
        pool, question = list(GOODS), f"What is the main export of {name}?"
        lecture, answer = EXPORT_LECTURE, c.export
    return _draft(ctx.kb, key, question=question, answer=answer, distractors=pick_distractors(rng, pool, answer, 3),
                  subject=SOC, topic="geography", category="Countries of the world",
                  skill=f"Recall a country's {relation}", lecture=lecture, solution=first_phrasing(ctx.kb, key))


def country_currency(rng: random.Random, ctx: TemplateContext) -> Draft:
    """A country's currency."""
    key, name = _pick(rng, ctx, "country", "currency")
    c = ctx.kb.country(name)
    return _draft(ctx.kb, key, question=f"What is the currency of {name}?", answer=c.currency,
                  distractors=pick_distractors(
                      rng, [ctx.kb.country(x).currency for x in _split_names(ctx, "country", "currency")], c.currency,
                      3),
                  subject=SOC, topic="geography", category="Countries of the world",
                  skill="Recall a country's currency", lecture=CURRENCY_LECTURE,
                  solution=first_phrasing(ctx.kb, key))


def word_meaning(rng: random.Random, ctx: TemplateContext) -> Draft:
    """What a lexicon word means."""
    key, name = _pick(rng, ctx, "word", "meaning")
    w, pool = ctx.kb.word(name), [strip_article(ctx.kb.word(x).meaning) for x in _split_names(ctx, "word", "meaning")]
    meaning = strip_article(w.meaning)
    return _draft(ctx.kb, key, question=f"What is the meaning of {name}?", answer=meaning,
                  distractors=pick_distractors(rng, pool, meaning, 3), subject=LAN, topic="vocabulary",
                  category="Word meanings", skill="Recall what a word means", lecture=MEANING_LECTURE,
                  solution=first_phrasing(ctx.kb, key))


def rhyme(rng: random.Random, ctx: TemplateContext) -> Draft:
    """The one choice that rhymes with a word."""
    key, rime = _pick(rng, ctx, "rime")
    group = sorted(w.word for w in ctx.kb.words if w.rime == rime)
    asked, answer = rng.sample(group, 2)
    rimes = {k.split(":")[1] for k in ctx.kb.facts_in(ctx.split, "rime")}
    others = [w.word for w in ctx.kb.words if w.rime != rime and w.rime in rimes]
    return Draft(question=f"Which word is one of the rhymes of {asked}?", answer=answer,
                 distractors=pick_distractors(rng, others, answer, 3), subject=LAN, topic="phonological-awareness",
                 category="Rhyming", skill="Find the word that rhymes", lecture=RHYME_LECTURE,
                 solution=word_phrasings(ctx.kb.word(asked), "rhyme", ctx.kb.rhymes_of(ctx.kb.word(asked)))[0],
                 keywords=(asked, answer))


def word_class(rng: random.Random, ctx: TemplateContext) -> Draft:
    """Whether a lexicon word is a noun, a verb or an adjective."""
    key, name = _pick(rng, ctx, "word", "pos")
    w = ctx.kb.word(name)
    return _draft(ctx.kb, key, question=f"What is the word class of {name}?", answer=w.pos,
                  distractors=tuple(p for p in MEANINGS if p != w.pos), subject=LAN, topic="grammar",
                  category="Word classes", skill="Recall a word's word class", lecture=POS_LECTURE,
                  solution=first_phrasing(ctx.kb, key))


TEMPLATES: dict[tuple[str, str], tuple[Template, ...]] = {
    (NAT, "G1-6"): (creature_kind_or_food,),
    (NAT, "G7-12"): (creature_habitat,),
    (SOC, "G1-6"): (country_attribute,),
    (SOC, "G7-12"): (country_currency,),
    (LAN, "G1-6"): (word_meaning, rhyme),
    (LAN, "G7-12"): (word_class, word_meaning),
}
"""NO-context templates per (subject, grade band)."""
