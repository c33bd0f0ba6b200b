"""Registry, record type, seeding, option building and drawing helpers shared by all families.

A family is a function ``rng -> Puzzle`` registered with `register`, plus a ``solve(metadata)``
that recomputes the answer from the stored puzzle parameters. Every generated item is checked
against its family's solver before it is accepted, so an answer can only be wrong if the
generator and an independent re-derivation agree on the same mistake.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

from PIL import Image, ImageDraw, ImageFont

SOURCE = "vlprm-puzzles"

# Well-separated hues that are easy to name; the names are what questions and options use.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (226, 50, 50),
    "orange": (245, 140, 30),
    "yellow": (240, 205, 30),
    "green": (50, 165, 70),
    "blue": (45, 105, 225),
    "purple": (140, 70, 200),
}
COLOR_NAMES = list(COLORS)

SIZES = ["small", "medium", "large"]

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
MISSING_FILL = (235, 235, 235)
MISSING_INK = (110, 110, 110)

SUPERSAMPLE = 2  # draw at 2x and downsample: anti-aliased, still deterministic


# --------------------------------------------------------------------------------------------
# Records and registry
# --------------------------------------------------------------------------------------------


@dataclass
class Puzzle:
    """One generated puzzle, before options are shuffled and files are written.

    ``distractors`` are ordered most plausible first; the writer keeps as many as the family
    needs (``n_options - 1``). ``metadata`` holds the puzzle parameters a solver needs to
    recompute ``answer`` without looking at the image.
    """

    image: Image.Image
    question: str
    answer: str
    distractors: list[str]
    caption: str
    explanation: str
    deduction: str
    perception_facts: list[str]
    reasoning_steps: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PuzzleFamily:
    """A registered puzzle family. Calling it with a `random.Random` generates one `Puzzle`."""

    name: str
    kind: str  # "abstract" (PuzzleVQA-style) or "algorithmic" (AlgoPuzzleVQA-style)
    n_options: int
    generate: Callable[[random.Random], Puzzle]
    solve: Callable[[dict], str]
    description: str = ""

    def __call__(self, rng: random.Random) -> Puzzle:
        return self.generate(rng)


FAMILIES: dict[str, PuzzleFamily] = {}


def register(name: str, kind: str, solve: Callable[[dict], str], n_options: int = 4):
    """Decorator: register ``fn(rng) -> Puzzle`` as family ``name``."""
    if kind not in ("abstract", "algorithmic"):
        raise ValueError(f"family {name}: kind must be 'abstract' or 'algorithmic', got {kind!r}")

    def deco(fn: Callable[[random.Random], Puzzle]):
        if name in FAMILIES:
            raise ValueError(f"puzzle family {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        FAMILIES[name] = PuzzleFamily(name, kind, n_options, fn, solve, doc[0] if doc else "")
        return fn

    return deco


class PuzzleCheckError(RuntimeError):
    """A generated puzzle failed its self-check (a generator bug, never a user error)."""


def finalize(family: PuzzleFamily, puzzle: Puzzle, rng: random.Random) -> Puzzle:
    """Self-check the puzzle and build its shuffled options (in place; returns it)."""
    solved = family.solve(puzzle.metadata)
    if solved != puzzle.answer:
        raise PuzzleCheckError(
            f"{family.name}: answer {puzzle.answer!r} but the solver recomputes {solved!r} "
            f"from metadata {puzzle.metadata}")
    distractors: list[str] = []
    for d in puzzle.distractors:
        if d != puzzle.answer and d not in distractors:
            distractors.append(d)
    if len(distractors) < family.n_options - 1:
        raise PuzzleCheckError(
            f"{family.name}: only {len(distractors)} distinct distractors for answer "
            f"{puzzle.answer!r}, need {family.n_options - 1}")
    options = [puzzle.answer] + distractors[: family.n_options - 1]
    rng.shuffle(options)
    puzzle.options = options
    if not puzzle.reasoning_steps or puzzle.answer not in puzzle.reasoning_steps[-1]:
        raise PuzzleCheckError(f"{family.name}: the last reasoning step must state the answer")
    return puzzle


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------


def item_rng(seed: int, family: str, index: int, attempt: int = 0) -> random.Random:
    """The RNG for one item: a stable hash of (seed, family, index, attempt), never `hash()`."""
    key = f"{SOURCE}|{seed}|{family}|{index}|{attempt}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


# --------------------------------------------------------------------------------------------
# Options and text helpers
# --------------------------------------------------------------------------------------------


def other_colors(rng: random.Random, exclude, prefer=()) -> list[str]:
    """Color distractors: ``prefer`` (colors seen in the image) first, then the rest shuffled."""
    out = [c for c in prefer if c not in exclude]
    rest = [c for c in COLOR_NAMES if c not in exclude and c not in out]
    rng.shuffle(rest)
    return list(dict.fromkeys(out + rest))


def number_distractors(rng: random.Random, answer: int, plausible=(), lo: int = 0,
                       spread: int = 3, step: int = 1) -> list[str]:
    """Integer distractors: ``plausible`` values first, then nearby values (multiples of step)."""
    out: list[int] = []
    for v in plausible:
        if v != answer and v >= lo and v not in out:
            out.append(v)
    near = [answer + step * k for k in range(-spread, spread + 1) if k]
    near = [v for v in near if v >= lo and v not in out and v != answer]
    rng.shuffle(near)
    out += near
    k = spread + 1
    while len(out) < 3:  # only for tiny answers hemmed in by ``lo``
        v = answer + step * k
        if v not in out:
            out.append(v)
        k += 1
    return [str(v) for v in out]


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def article(phrase: str) -> str:
    """``phrase`` with its indefinite article: "an orange star", "a red star"."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def join_words(items) -> str:
    items = [str(x) for x in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth", "eleventh", "twelfth"]


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in default font at ``size`` px (bitmap fallback on old Pillow)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


class Canvas:
    """A white RGB canvas drawn at SUPERSAMPLE x resolution; coordinates are in output pixels."""

    def __init__(self, width: int, height: int, background=BACKGROUND):
        self.width, self.height = width, height
        self.s = SUPERSAMPLE
        self.img = Image.new("RGB", (width * self.s, height * self.s), background)
        self.draw = ImageDraw.Draw(self.img)

    def _p(self, pts):
        return [(x * self.s, y * self.s) for x, y in pts]

    def circle(self, cx, cy, r, fill=None, outline=INK, width=2):
        s = self.s
        self.draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s],
                          fill=fill, outline=outline, width=max(1, round(width * s)))

    def polygon(self, pts, fill=None, outline=INK, width=2):
        pts = self._p(pts)
        self.draw.polygon(pts, fill=fill)
        if outline is not None and width:
            self.draw.line(pts + [pts[0]], fill=outline, width=max(1, round(width * self.s)),
                           joint="curve")

    def rect(self, x0, y0, x1, y1, fill=None, outline=INK, width=2):
        s = self.s
        self.draw.rectangle([x0 * s, y0 * s, x1 * s, y1 * s], fill=fill,
                            outline=outline, width=max(1, round(width * s)) if outline else 0)

    def line(self, pts, fill=INK, width=2):
        self.draw.line(self._p(pts), fill=fill, width=max(1, round(width * self.s)))

    def dashed_line(self, p0, p1, fill=INK, width=2, dash=8, gap=6):
        (x0, y0), (x1, y1) = p0, p1
        length = math.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        t = 0.0
        while t < length:
            t1 = min(t + dash, length)
            self.line([(x0 + ux * t, y0 + uy * t), (x0 + ux * t1, y0 + uy * t1)], fill, width)
            t += dash + gap

    def text(self, x, y, s, size=20, fill=INK, anchor="mm"):
        self.draw.text((x * self.s, y * self.s), str(s), font=font(size * self.s), fill=fill,
                       anchor=anchor)

    def arrow(self, p0, p1, fill=INK, width=3, head=10):
        (x0, y0), (x1, y1) = p0, p1
        ang = math.atan2(y1 - y0, x1 - x0)
        base = (x1 - head * math.cos(ang), y1 - head * math.sin(ang))
        self.line([p0, base], fill, width)
        left = (base[0] + head * 0.6 * math.sin(ang), base[1] - head * 0.6 * math.cos(ang))
        right = (base[0] - head * 0.6 * math.sin(ang), base[1] + head * 0.6 * math.cos(ang))
        self.polygon([(x1, y1), left, right], fill=fill, outline=None)

    def shape(self, name, cx, cy, r, fill=None, outline=INK, width=2):
        """Draw a named shape (see SHAPES) of radius ``r`` centred at (cx, cy)."""
        if name == "circle":
            self.circle(cx, cy, r * 0.9, fill, outline, width)
        else:
            self.polygon(shape_points(name, cx, cy, r), fill, outline, width)

    def missing(self, kind, cx, cy, r, size=None):
        """A grey placeholder of the given shape with a question mark: the part to find."""
        if kind == "circle":
            self.circle(cx, cy, r, fill=MISSING_FILL, outline=MISSING_INK, width=2)
        else:
            self.shape(kind, cx, cy, r, fill=MISSING_FILL, outline=MISSING_INK)
        self.text(cx, cy, "?", size=size or max(14, int(r * 1.1)), fill=INK)

    def image(self) -> Image.Image:
        return self.img.resize((self.width, self.height), Image.Resampling.LANCZOS)


SHAPES = ["circle", "triangle", "square", "pentagon", "hexagon", "star", "diamond"]
POLYGON_NAMES = {3: "triangle", 4: "square", 5: "pentagon", 6: "hexagon", 7: "heptagon",
                 8: "octagon", 9: "nonagon", 10: "decagon"}


def regular_polygon(cx, cy, r, n, rotation=-math.pi / 2):
    return [(cx + r * math.cos(rotation + 2 * math.pi * k / n),
             cy + r * math.sin(rotation + 2 * math.pi * k / n)) for k in range(n)]


def shape_points(name, cx, cy, r):
    if name == "triangle":
        return regular_polygon(cx, cy + r * 0.15, r * 1.05, 3)
    if name == "square":
        return regular_polygon(cx, cy, r * 1.1, 4, rotation=math.pi / 4)
    if name == "diamond":
        return [(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)]
    if name == "pentagon":
        return regular_polygon(cx, cy + r * 0.05, r, 5)
    if name == "hexagon":
        return regular_polygon(cx, cy, r, 6, rotation=0)
    if name == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + math.pi * k / 5
            pts.append((cx + rr * math.cos(a), cy + r * 0.08 + rr * math.sin(a)))
        return pts
    raise ValueError(f"unknown shape {name!r}")


def png_bytes(img: Image.Image) -> bytes:
    """PNG bytes that depend only on the pixels: no metadata chunks, fixed compression."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()
