"""Stand-in inputs for the embedded-base builder: an invented, repetitive English corpus and shape pictures.

The corpus states a fixed set of facts about invented creatures several times in varied phrasings
(train and validation paragraphs restate the same facts); the pictures are 1–4 flat coloured shapes
in the cells of a 3×3 grid with a caption that names count, size, colour, shape and cell.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 20),
          "purple": (140, 60, 180), "orange": (245, 130, 30)}
SHAPES = ("circle", "square", "triangle")
CELLS = ("top left", "top middle", "top right", "middle left", "center", "middle right",
         "bottom left", "bottom middle", "bottom right")
NUMBERS = ("zero", "one", "two", "three", "four")
SYLLABLES = ("zor", "bel", "min", "tak", "lu", "ven", "dra", "kol", "pim", "sar", "tu", "gla", "rin", "fo", "nex")
HOMES = ("the Velmor hills", "the Drask marsh", "the Oona coast", "the Pell forest", "the Kiri desert")
FOODS = ("moss", "berries", "small fish", "roots", "seeds", "beetles")
TEMPLATES = (
    "The {name} is a {color} creature that lives in {home}.",
    "A {name} eats {food} and has {legs} legs.",
    "Most people know that the {name} is {color}.",
    "In {home} you can find the {name}, which feeds on {food}.",
    "The {name} walks on {legs} legs and its fur is {color}.",
    "If you ask what the {name} eats, the answer is {food}.",
    "Travellers in {home} often meet the {name}.",
)


def invented_facts(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` invented creatures with a colour, home, food and leg count each."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))))
    return [{"name": name, "color": rng.choice(list(COLORS)), "home": rng.choice(HOMES),
             "food": rng.choice(FOODS), "legs": NUMBERS[rng.randrange(2, 5)]} for name in sorted(names)]


def paragraph(rng: random.Random, facts: list[dict[str, str]], sentences: int) -> str:
    return " ".join(rng.choice(TEMPLATES).format(**rng.choice(facts)) for _ in range(sentences))


def standin_corpus(n_words: int, n_facts: int = 60, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, validation) paragraphs of about `n_words` and `n_words / 20` words about the same facts."""
    facts, rng = invented_facts(n_facts, seed), random.Random(seed + 1)
    train, val, words = [], [], 0
    while words < n_words:
        train.append(paragraph(rng, facts, rng.randint(3, 8)))
        words += len(train[-1].split())
    while sum(len(p.split()) for p in val) < n_words // 20:
        val.append(paragraph(rng, facts, rng.randint(3, 8)))
    return train, val


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def scene_pair(rng: random.Random, size: int = 64) -> tuple[Image.Image, str]:
    """One picture of 1–4 shapes in distinct grid cells and its caption."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw, cell = ImageDraw.Draw(image), size / 3
    n = rng.randint(1, 4)
    parts = [f"There {'is' if n == 1 else 'are'} {NUMBERS[n]} {'shape' if n == 1 else 'shapes'}."]
    for c in sorted(rng.sample(range(9), n)):
        shape, color, big = rng.choice(SHAPES), rng.choice(list(COLORS)), rng.random() < 0.5
        half = cell * (0.42 if big else 0.24)
        cx, cy = (c % 3 + 0.5) * cell, (c // 3 + 0.5) * cell
        draw_shape(draw, shape, (round(cx - half), round(cy - half), round(cx + half), round(cy + half)), COLORS[color])
        parts.append(f"A {'large' if big else 'small'} {color} {shape} is in the {CELLS[c]}.")
    return image, " ".join(parts)


def standin_pairs(n: int, size: int = 64, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """`n` (image, caption) pairs."""
    rng = random.Random(seed)
    return [scene_pair(rng, size) for _ in range(n)]


def standin_instructions(n: int, size: int = 64, seed: int = 1) -> list[tuple[Image.Image, list[tuple[str, str]]]]:
    """`n` (image, [(question, answer), ...]) records: how many shapes, and the colour in a cell that holds one."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        image, caption = scene_pair(rng, size)
        count = caption.split()[2]
        objects = [s.split(" is in the ") for s in caption.split(". ")[1:]]
        phrase, cell = rng.choice(objects)
        turns = [("How many shapes are there?", count), (f"What colour is the shape in the {cell.rstrip('.')}?",
                                                         phrase.split()[2])]
        out.append((image, turns))
    return out
