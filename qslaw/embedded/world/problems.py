"""Problems: one multiple-choice question, from a template's draft to a ScienceQA row.

How it works
------------
A question template returns a ``Draft``: the question, the correct answer text, the wrong
answers, the context (a ``Scene`` for IMG, a hint for TXT, neither for NO), ScienceQA metadata and
a templated lecture and solution (the solution always names the answer). ``finalize`` turns it into
a ``Problem``:
- the correct answer goes to a slot drawn from an ``AnswerDeck``: for each number of choices the
  deck holds every slot once, shuffled, and is refilled when empty, so answer positions are
  balanced to within one deck per choice count while their order stays random;
- the wrong answers fill the other slots in a random order;
- the scene is rendered and PNG-encoded; the grade is drawn inside the template's grade band.

``Problem.key()`` identifies a problem for de-duplication across splits: the question, the set of
choices and the context (hint and image bytes). Two IMG problems may share a question text such as
"How many circles are in the picture?" over different pictures, as in ScienceQA; they never
share question, choices and picture.

``Problem.row()`` gives the 13 ScienceQA columns; the image is the ``{"bytes", "path"}`` dict that
the ``datasets`` ``Image()`` feature stores in parquet.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from qslaw.data.schema import CONTEXTS, LAN, NAT, SOC, SUBJECTS  # noqa: F401  (re-exported for the templates)
from qslaw.embedded.world.facts import KnowledgeBase
from qslaw.embedded.world.scenes import Scene, png_bytes, render_scene

BANDS: dict[str, tuple[int, int]] = {"G1-6": (1, 6), "G7-12": (7, 12)}


@dataclass(frozen=True)
class TemplateContext:
    """What a template may read: the knowledge base and the split it writes for."""

    kb: KnowledgeBase
    split: str


@dataclass(frozen=True)
class Draft:
    """A question before its choices are ordered; ``keywords`` name the corpus fact a NO question needs."""

    question: str
    answer: str
    distractors: tuple[str, ...]
    subject: str
    topic: str
    category: str
    skill: str
    lecture: str
    solution: str
    task: str = "closed choice"
    hint: str = ""
    scene: Scene | None = None
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        choices = (self.answer, *self.distractors)
        if not all(isinstance(c, str) for c in choices):
            raise TypeError(f"choices must be strings, got {choices}")
        if not 2 <= len(choices) <= 5 or len(set(choices)) != len(choices):
            raise ValueError(f"draft needs 2-5 distinct choices, got {choices}")
        if self.answer not in self.solution:
            raise ValueError(f"solution must name the answer {self.answer!r}: {self.solution!r}")


@dataclass(frozen=True)
class Problem:
    """One finished ScienceQA-style problem (``context`` is IMG, TXT or NO)."""

    question: str
    choices: tuple[str, ...]
    answer: int
    hint: str
    image: bytes | None
    task: str
    grade: str
    subject: str
    topic: str
    category: str
    skill: str
    lecture: str
    solution: str
    context: str
    keywords: tuple[str, ...] = field(default=(), compare=False)

    def key(self) -> tuple[str, str, str, tuple[str, ...]]:
        """Identity for de-duplication: question, context and the set of choices."""
        image_hash = hashlib.sha256(self.image).hexdigest() if self.image is not None else ""
        return (self.question, self.hint, image_hash, tuple(sorted(self.choices)))

    def row(self) -> dict[str, object]:
        """The ScienceQA columns, in ScienceQA's order."""
        image = None if self.image is None else {"bytes": self.image, "path": None}
        return {"image": image, "question": self.question, "choices": list(self.choices), "answer": self.answer,
                "hint": self.hint, "task": self.task, "grade": self.grade, "subject": self.subject,
                "topic": self.topic, "category": self.category, "skill": self.skill, "lecture": self.lecture,
                "solution": self.solution}


Template = Callable[[random.Random, TemplateContext], Draft | None]
"""A question template; returns None when its random draw does not fit (the caller retries)."""


class AnswerDeck:
    """Balanced random answer slots: each slot once per deck, one deck per choice count."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._decks: dict[int, list[int]] = {}

    def draw(self, n_choices: int) -> int:
        deck = self._decks.setdefault(n_choices, [])
        if not deck:
            deck.extend(range(n_choices))
            self._rng.shuffle(deck)
        return deck.pop()


def order_choices(draft: Draft, slot: int, rng: random.Random) -> tuple[str, ...]:
    """The answer at ``slot``, the distractors shuffled around it."""
    others = list(draft.distractors)
    rng.shuffle(others)
    others.insert(slot, draft.answer)
    return tuple(others)


def finalize(draft: Draft, band: str, context: str, deck: AnswerDeck, rng: random.Random,
             image_size: int) -> Problem:
    """Order the choices, draw a grade in ``band`` and render the scene."""
    slot = deck.draw(1 + len(draft.distractors))
    low, high = BANDS[band]
    image = None if draft.scene is None else png_bytes(render_scene(draft.scene, image_size))
    return Problem(
        question=draft.question, choices=order_choices(draft, slot, rng), answer=slot, hint=draft.hint, image=image,
        task=draft.task, grade=f"grade{rng.randint(low, high)}", subject=draft.subject, topic=draft.topic,
        category=draft.category, skill=draft.skill, lecture=draft.lecture, solution=draft.solution, context=context,
        keywords=draft.keywords,
    )


def option_head(choice: str) -> str:
    """What tells a choice apart when read from its start: the first word, at most its first three letters."""
    return choice.split(" ", 1)[0][:3].lower()


def written_option(output: str, choices: list[str]) -> int | None:
    """The option the output names last before "The answer is", by first word (`option_head`), or None.

    This is how the base's compiled lookup reads a solution (``qslaw.embedded.base.circuits``), so comparing it with the
    answer tells "wrote the wrong value" from "wrote the right value, then named another letter"
    (``benchmarks.benchmark_check`` per skill); every world solution must name its answer last."""
    heads = [option_head(c) for c in choices]
    named = [heads.index(option_head(w)) for w in re.findall(r"[\w']+", output.split("The answer is")[0])
             if option_head(w) in heads]
    return named[-1] if named else None


def pick_distractors(rng: random.Random, pool: list[str] | tuple[str, ...], answer: str, k: int) -> tuple[str, ...]:
    """``k`` distinct wrong answers from ``pool`` (fewer when the pool is small).

    Choices whose `option_head` differs from the answer's and from each other's come first, so a reader that
    names an option by how it starts ("(B) Mondays …") is never left with two candidates; only a pool with
    too few distinct heads tops up with the rest. Among those, choices whose head is none of the answer's later
    words come first: a solution that ends "... means blow out a candle." names the option "candle lamp" last."""
    wrong = sorted({p for p in pool if p != answer})
    rng.shuffle(wrong)
    heads, picked = {option_head(answer)}, []
    later = {option_head(w) for w in answer.split()[1:]}
    for clean in (True, False):
        for p in wrong:
            if len(picked) < k and option_head(p) not in heads and not (clean and option_head(p) in later):
                picked.append(p)
                heads.add(option_head(p))
    picked += [p for p in wrong if p not in picked][: k - len(picked)]
    return tuple(picked)
