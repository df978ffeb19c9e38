"""Scenes: a few flat coloured shapes on a white canvas, their rendering and their caption.

How it works
------------
The canvas is a 3×3 grid of cells numbered in reading order (0 = top left … 8 = bottom right).
A scene places 1–5 objects in distinct cells; each object has a shape (circle, square, triangle),
one of six colours and one of two sizes. Because every object owns a cell:
- "the shape in the top left" always names at most one object;
- left/right compare grid columns and above/below compare grid rows, with no ties in between
  ("left of" means a strictly smaller column);
- objects never overlap, so a small vision tower sees every attribute.

``render_scene(scene, size)`` draws the objects centred in their cells with PIL (no
anti-aliasing, integer coordinates), so the pixels are a pure function of (scene, size).
``png_bytes`` encodes without metadata chunks (no time stamps), so equal images give equal bytes.
At the default 64 px a cell is ~21 px wide, a large shape ~18 px and a small one ~10 px.

``describe_scene`` states every attribute: the number of objects, then each object's size,
colour, shape and cell, in reading order. The base-model builder pretrains the vision tower on
these (image, caption) pairs, and IMG questions ask about exactly these attributes.
"""

from __future__ import annotations

import io
import random
import re
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.45, "large": 0.85}
"""Object diameter as a fraction of the cell width."""
POSITIONS = ("top left", "top middle", "top right", "middle left", "center", "middle right",
             "bottom left", "bottom middle", "bottom right")
"""Cell names in reading order; a phrase is ``in the <name>``."""
GRID = 3
BACKGROUND = (255, 255, 255)
MAX_OBJECTS = 5


@dataclass(frozen=True)
class SceneObject:
    """One shape: what it is and which grid cell (0–8, reading order) it fills."""

    shape: str
    color: str
    size: str
    cell: int

    @property
    def row(self) -> int:
        return self.cell // GRID

    @property
    def col(self) -> int:
        return self.cell % GRID

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]

    def phrase(self) -> str:
        """``large red circle``."""
        return f"{self.size} {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Objects in reading order of their cells."""

    objects: tuple[SceneObject, ...]

    def count(self, shape: str | None = None, color: str | None = None, size: str | None = None) -> int:
        """How many objects match every given attribute."""
        return sum(
            (shape is None or o.shape == shape) and (color is None or o.color == color)
            and (size is None or o.size == size)
            for o in self.objects
        )

    def unique_by_look(self) -> tuple[SceneObject, ...]:
        """Objects whose colour + shape is unique in the scene (nameable as ``the red circle``)."""
        return tuple(o for o in self.objects if self.count(shape=o.shape, color=o.color) == 1)


def sample_scene(rng: random.Random, max_objects: int = MAX_OBJECTS) -> Scene:
    """1–``max_objects`` objects with random attributes in distinct random cells."""
    n = rng.randint(1, max_objects)
    cells = sorted(rng.sample(range(GRID * GRID), n))
    objects = tuple(
        SceneObject(rng.choice(SHAPES), rng.choice(tuple(COLORS)), rng.choice(tuple(SIZES)), cell) for cell in cells
    )
    return Scene(objects)


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, size: int) -> None:
    cell = size / GRID
    cx, cy = round((obj.col + 0.5) * cell), round((obj.row + 0.5) * cell)
    r = max(1, round(SIZES[obj.size] * cell / 2))
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif obj.shape == "square":
        s = max(1, round(r * 0.85))
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    else:
        draw.polygon(((cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)), fill=fill)


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """An RGB ``size``×``size`` picture of the scene."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj, size)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding with no metadata chunks: byte-identical for identical pixels."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def describe_scene(scene: Scene) -> str:
    """Caption naming the count and every object's size, colour, shape and cell."""
    n = len(scene.objects)
    head = f"There {'is' if n == 1 else 'are'} {n} shape{'' if n == 1 else 's'} on a white background."
    body = " ".join(f"A {o.phrase()} is in the {o.position}." for o in scene.objects)
    return f"{head} {body}"


_OBJECT_SENTENCE = re.compile(
    rf"\bA ({'|'.join(SIZES)}) ({'|'.join(COLORS)}) ({'|'.join(SHAPES)}) is in the ({'|'.join(POSITIONS)})\."
)


def parse_caption(caption: str) -> Scene:
    """The objects a caption names in ``describe_scene``'s object sentences (``A small red circle is in the
    center.``); the inverse of ``describe_scene``. Other text is ignored, so a caption in another style gives
    a scene with no objects."""
    return Scene(tuple(SceneObject(shape, color, size, POSITIONS.index(position))
                       for size, color, shape, position in _OBJECT_SENTENCE.findall(caption)))
