"""The WikiText-style corpus: every knowledge-base fact, several times, plus filler prose.

How it works
------------
Train holds, in a seeded random order:
- one article per creature, country and lexicon word, and overview articles (animals of each
  habitat, countries of each region, word lists by word class, rhyming words). Together they state
  every fact in at least three different paragraphs, each time in a different phrasing:
  a creature's kind is in its lead, its "Description" section and its habitat overview;
- lesson articles: every lecture the task problems use, stated three times (its own lesson article, the
  study guide of its subject, and a teaching-notes article), the way a real LLM has read textbooks before
  it is fine-tuned on ScienceQA's lectures; the lesson article and the teaching notes follow an IMG or TXT
  lecture with worked examples, the solutions of training problems that use it, so the LM has read which
  kind of sentence comes after it (training problems only: no test answer is given away; NO lectures get
  none, see ``world.WORKED_EXAMPLES``);
- filler articles (``filler.FILLERS``) until the train split reaches ``words`` words; filler
  restates random facts too.
Validation and test hold only filler articles drawn from their own random streams (``words // 10``
words each, like WikiText-2's ~10%), so they mention the same world and facts in other contexts.

Lines follow the wikitext-2-raw-v1 parquet layout, one row per line in column ``text``:
``""``, ``" = Title = \\n"``, ``""``, then paragraphs as ``" text \\n"``; a section heading is
``" = = Heading = = \\n"`` with a blank row on each side. Unlike WikiText we keep normal punctuation
(no ``" , "`` / ``" @-@ "`` tokenisation), so corpus sentences read like the task questions.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from qslaw.embedded.world.facts import (
    KIND_PLURAL,
    Country,
    Creature,
    KnowledgeBase,
    Word,
    country_phrasings,
    creature_phrasings,
    with_article,
    word_phrasings,
)
from qslaw.embedded.world.filler import FILLERS, Article
from qslaw.embedded.world.names import sub_rng

REGIONS = ("north", "south", "east", "west")
EXAMPLES = {"noun": "For example: 'She put the {w} by the door.'", "verb": "For example: 'We {w} every evening.'",
            "adjective": "For example: 'The room was {w} that day.'"}
POS_ROLES = {"noun": "names a thing", "verb": "tells what someone does", "adjective": "describes a noun"}


def region_of(index: int) -> str:
    """The region of the ``index``-th country (filler geography, never asked)."""
    return REGIONS[index % len(REGIONS)]


def creature_article(kb: KnowledgeBase, c: Creature) -> Article:
    kind, home, food = (creature_phrasings(c, r) for r in ("kind", "habitat", "food"))
    others = [o.name for o in kb.creatures if o.habitat == c.habitat and o.name != c.name][:2]
    neighbours = f"It shares its home with the {' and the '.join(others)}." if others else ""
    return Article(c.name.capitalize(), (
        ("", (f"{kind[0]} {home[0]} {food[0]}",)),
        ("Description", (f"{kind[1]} Like other {KIND_PLURAL[c.kind]}, it is easy to recognise.",)),
        ("Habitat", (f"{home[1]} {neighbours}".strip(),)),
        ("Diet", (f"{food[1]} It spends much of the day looking for food.",)),
    ))


def country_article(c: Country, region: str) -> Article:
    capital, money, export = (country_phrasings(c, r) for r in ("capital", "currency", "export"))
    return Article(c.name, (
        ("", (f"{c.name} is a country in the {region}. {capital[0]} {money[0]} {export[0]}",)),
        ("Government", (f"{capital[1]} The laws of the country are written there.",)),
        ("Geography", (f"{capital[2]} Roads lead from the capital to every town.",)),
        ("Economy", (f"{money[1]} {export[1]} {money[2]}",)),
    ))


def word_article(kb: KnowledgeBase, w: Word) -> Article:
    pos, meaning, rhyme = word_phrasings(w, "pos"), word_phrasings(w, "meaning"), word_phrasings(
        w, "rhyme", kb.rhymes_of(w))
    example = EXAMPLES[w.pos].format(w=w.word)
    return Article(w.word.capitalize(), (
        ("", (f"{pos[0]} {meaning[0]} As {with_article(w.pos)}, it {POS_ROLES[w.pos]}.",)),
        ("Usage", (f"{meaning[1]} {example} {pos[1]}",)),
        ("Rhymes", (f"{rhyme[0]} {rhyme[1 + len(w.word) % 3]}",)),
    ))


def overview_articles(kb: KnowledgeBase) -> list[Article]:
    """Habitat, region, word-class and rhyme overviews: a third statement of every fact."""
    articles = [Article(f"Animals of {h.removeprefix('the ')}", (("", tuple(
        f"{creature_phrasings(c, 'habitat')[3]} {creature_phrasings(c, 'kind')[3]} {creature_phrasings(c, 'food')[3]}"
        for c in kb.creatures if c.habitat == h)),)) for h in kb.habitats]
    for region in REGIONS:
        countries = [c for i, c in enumerate(kb.countries) if region_of(i) == region]
        articles.append(Article(f"Countries of the {region}", (("", tuple(
            f"{c.name} lies in the {region}. " + " ".join(country_phrasings(c, r)[3] for r in ("capital", "currency",
                                                                                                 "export"))
            for c in countries)),)))
    for pos in POS_ROLES:
        articles.append(Article(f"List of {pos}s", (("", tuple(
            f"{word_phrasings(w, 'pos')[2]} {word_phrasings(w, 'meaning')[2]}" for w in kb.words if w.pos == pos)),)))
    return articles


def fact_articles(kb: KnowledgeBase) -> list[Article]:
    """Every article whose job is to state knowledge-base facts."""
    return ([creature_article(kb, c) for c in kb.creatures]
            + [country_article(c, region_of(i)) for i, c in enumerate(kb.countries)]
            + [word_article(kb, w) for w in kb.words] + overview_articles(kb))


def lesson_articles(lessons: Sequence[tuple[str, str, str]],
                    examples: Mapping[str, Sequence[str]] | None = None) -> list[Article]:
    """Three statements of each distinct lecture; ``lessons`` holds ``(subject, category, lecture)`` triples.

    ``examples`` maps a lecture to worked solutions (from training problems): the lesson article lists them
    and the teaching notes follow the lecture with the first, as a textbook follows a rule with an example.
    """
    examples = examples or {}
    firsts: dict[str, tuple[str, str]] = {}
    for subject, category, lecture in lessons:
        firsts.setdefault(lecture, (subject, category))
    articles = [Article(f"Lesson on {category.lower()}", (("", (lecture,)), ("Practice", (
        f"In {subject} classes, students practise this with questions about {category.lower()}.",)))
        + ((("Examples", tuple(examples[lecture])),) if examples.get(lecture) else ()))
        for lecture, (subject, category) in firsts.items()]
    for subject in sorted({subject for subject, _ in firsts.values()}):
        articles.append(Article(f"Study guide in {subject}", (("", tuple(
            lecture for lecture, (s, _) in firsts.items() if s == subject)),)))
    articles.append(Article("Teaching notes", (("", tuple(
        f"When a class studies {category.lower()}, the teacher often says: {lecture} "
        f"{' '.join(f'For example: {e}' for e in examples.get(lecture, ())[:1])}".rstrip()
        for lecture, (_, category) in firsts.items())),)))
    return articles


def filler_articles(rng: random.Random, kb: KnowledgeBase, words: int) -> list[Article]:
    """Random filler articles until they hold at least ``words`` words."""
    articles: list[Article] = []
    total = 0
    while total < words:
        articles.append(rng.choice(FILLERS)(rng, kb))
        total += articles[-1].words()
    return articles


def article_lines(article: Article) -> list[str]:
    """Wikitext rows: blank, heading, blank, paragraphs; sections likewise."""
    rows = ["", f" = {article.title} = \n", ""]
    for heading, paragraphs in article.sections:
        if heading:
            rows += ["", f" = = {heading} = = \n", ""]
        rows += [f" {p} \n" for p in paragraphs if p]
    return rows


def build_corpus(kb: KnowledgeBase, seed: int, words: int, lessons: Sequence[tuple[str, str, str]] = (),
                 examples: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Lines of the train / validation / test corpus (train: ``words`` words at least)."""
    facts = fact_articles(kb) + lesson_articles(lessons, examples)
    train_rng = sub_rng(seed, "corpus:train")
    train = facts + filler_articles(train_rng, kb, words - sum(a.words() for a in facts))
    train_rng.shuffle(train)
    splits = {"train": train}
    for split in ("validation", "test"):
        splits[split] = filler_articles(sub_rng(seed, f"corpus:{split}"), kb, max(1, words // 10))
    return {split: [row for a in articles for row in article_lines(a)] for split, articles in splits.items()}


def word_count(lines: list[str]) -> int:
    """Whitespace-separated tokens, as WikiText counts words (headings included)."""
    return sum(len(line.split()) for line in lines)
