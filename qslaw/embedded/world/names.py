"""Invented words: pronounceable names built from syllables.

How it works
------------
A syllable is onset + vowel + coda, drawn from small fixed inventories (``ONSETS``, ``VOWELS``,
``CODAS``). A name is 1–3 syllables. ``NameBook`` hands out names that are unique across one book,
so a creature, a country, a capital and a lexicon word never share a spelling.

Everything is driven by an explicit ``random.Random``: the same generator state always yields
the same names, on every platform (``random.Random`` seeded with a ``str`` hashes it with
SHA-512, so ``PYTHONHASHSEED`` does not matter). ``sub_rng`` derives independent, named streams
from one seed, so adding draws to one stream never shifts another.

The names are deliberately non-English so a language model can only learn facts about them from
the generated corpus, never from prior knowledge.
"""

from __future__ import annotations

import random

ONSETS = ("b", "bl", "br", "d", "dr", "f", "fl", "g", "gl", "gr", "k", "kl", "l", "m", "n", "p",
          "pl", "pr", "r", "s", "sk", "sl", "sn", "st", "t", "tr", "v", "z", "th", "sh")
VOWELS = ("a", "e", "i", "o", "u", "a", "o", "ee", "oo", "y")
CODAS = ("", "", "", "n", "m", "r", "rn", "rp", "sk", "x", "l", "nd", "rk", "th", "v")
"""Syllable inventories; repeated entries make the common ones more likely."""


def sub_rng(seed: int | str, label: str) -> random.Random:
    """An independent random stream named ``label`` under ``seed``."""
    return random.Random(f"qslaw-world:{seed}:{label}")


def syllable(rng: random.Random) -> str:
    """One onset + vowel + coda syllable."""
    return rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)


def invent_word(rng: random.Random, n_syllables: int) -> str:
    """A lower-case word of ``n_syllables`` syllables (3–12 letters)."""
    while True:
        word = "".join(syllable(rng) for _ in range(n_syllables))
        if 3 <= len(word) <= 12:
            return word


class NameBook:
    """Issues invented names that are unique within the book."""

    def __init__(self, rng: random.Random, reserved: tuple[str, ...] = ()) -> None:
        self._rng = rng
        self._used: set[str] = {w.lower() for w in reserved}

    def fresh(self, n_syllables: int = 2, suffix: str = "") -> str:
        """A new lower-case name (``suffix`` appended) not issued before."""
        while True:
            word = invent_word(self._rng, n_syllables) + suffix
            if word not in self._used and len(word) >= 4:
                self._used.add(word)
                return word

    def claim(self, word: str) -> bool:
        """Reserve a fixed word; False when it was already taken."""
        if word in self._used:
            return False
        self._used.add(word)
        return True
