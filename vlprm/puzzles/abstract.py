"""PuzzleVQA-style families: abstract patterns over colors, shapes, sizes and numbers.

Each family hides one part of a pattern behind a grey "?" placeholder and asks for it. The
solvers re-derive the hidden part from the *visible* parts stored in metadata (inferring the
rule, not reading it back), and reject puzzles where more than one rule fits with different
answers.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

from vlprm.puzzles.base import (
    COLOR_NAMES, COLORS, INK, ORDINALS, POLYGON_NAMES, SHAPES, SIZES, Canvas, Puzzle,
    article, join_words, number_distractors, other_colors, register, regular_polygon,
)

QUESTION_COLOR = "What is the color of the missing part denoted with a question mark?"
QUESTION_SIZE = "What is the size of the missing part denoted with a question mark?"
QUESTION_NUMBER = "What is the missing number of the part denoted with a question mark?"
QUESTION_SHAPE = "What is the shape of the missing part denoted with a question mark?"
MISSING = "?"


def _tint(rgb, t=0.55):
    """Blend a color towards white so black text on it stays readable."""
    return tuple(round(c + (255 - c) * t) for c in rgb)


def _answer_step(answer: str) -> str:
    return f"Therefore, the answer is {answer}."


class SolveError(ValueError):
    """Metadata does not determine a unique answer."""


def _unique(values, what):
    values = set(values)
    if len(values) != 1:
        raise SolveError(f"{what}: expected exactly one consistent answer, got {sorted(values)}")
    return values.pop()


# --------------------------------------------------------------------------------------------
# 3x3 grids of circles (color_grid, size_grid): the attribute follows one partition of the grid
# --------------------------------------------------------------------------------------------

GRID_POS = [["top-left", "top-middle", "top-right"],
            ["middle-left", "center", "middle-right"],
            ["bottom-left", "bottom-middle", "bottom-right"]]


def _cec(r, c):
    if (r, c) == (1, 1):
        return "center"
    return "corner" if r != 1 and c != 1 else "edge"


GRID_RULES = {
    "corner-edge-center": _cec,
    "rows": lambda r, c: f"the {ORDINALS[r]} row",
    "columns": lambda r, c: f"the {ORDINALS[c]} column",
}
CLASS_PHRASE = {"corner": "at the corners", "edge": "adjacent to the center",
                "center": "at the center"}


def _find_missing(grid):
    cells = [(r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v == MISSING]
    if len(cells) != 1:
        raise SolveError(f"expected one missing cell, found {len(cells)}")
    return cells[0]


def infer_grid(grid) -> dict[str, str]:
    """For each partition rule consistent with the visible cells, the value it predicts."""
    mr, mc = _find_missing(grid)
    out = {}
    for rule, cls in GRID_RULES.items():
        groups = defaultdict(set)
        for r, row in enumerate(grid):
            for c, v in enumerate(row):
                if v != MISSING:
                    groups[cls(r, c)].add(v)
        if any(len(vals) > 1 for vals in groups.values()):
            continue
        values = {k: next(iter(v)) for k, v in groups.items()}
        if len(set(values.values())) != len(values) or cls(mr, mc) not in values:
            continue
        out[rule] = values[cls(mr, mc)]
    return out


def solve_grid(meta: dict) -> str:
    return _unique(infer_grid(meta["grid"]).values(), "grid")


def _grid_puzzle(rng: random.Random, attr: str, values: list[str]):
    """Sample a rule, a 3x3 grid of attribute values following it, and the missing cell."""
    rule = rng.choices(list(GRID_RULES), weights=[2, 1, 1])[0]
    cls = GRID_RULES[rule]
    if rule == "corner-edge-center":
        keys = ["corner", "edge", "center"]
        cells = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    else:
        keys = [cls(i, i) for i in range(3)]
        cells = [(r, c) for r in range(3) for c in range(3)]
    assign = dict(zip(keys, rng.sample(values, 3)))
    full = [[assign[cls(r, c)] for c in range(3)] for r in range(3)]
    mr, mc = rng.choice(cells)
    grid = [row[:] for row in full]
    grid[mr][mc] = MISSING
    answer = full[mr][mc]
    key = cls(mr, mc)

    noun = "circles"
    rows_text = [", ".join(row) for row in grid]
    caption = (f"There are 9 {noun} arranged in a 3x3 grid. The {attr}s in the first row are "
               f"[{rows_text[0]}], in the second row [{rows_text[1]}], and in the third row "
               f"[{rows_text[2]}]. The {GRID_POS[mr][mc]} circle is missing and marked with a "
               f"question mark.")
    facts = ["The image shows 9 circles arranged in a 3x3 grid."]
    for r in range(3):
        facts.append(f"The {['top', 'middle', 'bottom'][r]} row, from left to right, has "
                     f"{attr}s: {rows_text[r]}.")
    facts.append(f"The {GRID_POS[mr][mc]} circle is missing and marked with a question mark.")

    steps = []
    if rule == "corner-edge-center":
        for k in keys:
            vis = [(r, c) for r in range(3) for c in range(3)
                   if cls(r, c) == k and grid[r][c] != MISSING]
            if k == "center":
                steps.append(f"The center circle is {assign[k]}.")
            else:
                steps.append(f"The {len(vis)} visible circles {CLASS_PHRASE[k]} are all "
                             f"{assign[k]}.")
        pattern = (f"the {attr} of each circle depends on its position: the corner circles are "
                   f"{assign['corner']}, the circles adjacent to the center are "
                   f"{assign['edge']}, and the center circle is {assign['center']}")
        where = "a corner" if key == "corner" else "a position adjacent to the center"
        steps.append(f"So {pattern}.")
        steps.append(f"The missing circle is at the {GRID_POS[mr][mc]}, which is {where}, so it "
                     f"should be {answer}.")
    else:
        line = "row" if rule == "rows" else "column"
        for i, k in enumerate(keys):
            steps.append(f"The visible circles in {k} are all {assign[k]}.")
        pattern = (f"all circles in the same {line} share one {attr}, and each {line} has a "
                   f"different {attr}")
        steps.append(f"So {pattern}.")
        steps.append(f"The missing circle is in {key}, whose other circles are {answer}, so it "
                     f"should be {answer}.")
    steps.append(_answer_step(answer))
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing circle at the "
                 f"{GRID_POS[mr][mc]} should be {answer}.")
    meta = {"grid": grid, "rule": rule, "missing": [mr, mc], "assignment": assign}
    return grid, answer, assign, caption, explanation, deduction, facts, steps, meta


GRID_XY = [80, 200, 320]


@register("color_grid", "abstract", solve_grid)
def color_grid(rng: random.Random) -> Puzzle:
    """3x3 grid of colored circles; colors follow corners/edges/center, rows, or columns."""
    grid, answer, assign, caption, expl, ded, facts, steps, meta = _grid_puzzle(
        rng, "color", COLOR_NAMES)
    cv = Canvas(400, 400)
    for r in range(3):
        for c in range(3):
            x, y = GRID_XY[c], GRID_XY[r]
            if grid[r][c] == MISSING:
                cv.missing("circle", x, y, 44)
            else:
                cv.circle(x, y, 44, fill=COLORS[grid[r][c]])
    prefer = [v for v in assign.values() if v != answer]
    return Puzzle(cv.image(), QUESTION_COLOR, answer, other_colors(rng, {answer}, prefer),
                  caption, expl, ded, facts, steps, meta)


SIZE_RADIUS = {"small": 17, "medium": 28, "large": 42}


@register("size_grid", "abstract", solve_grid, n_options=3)
def size_grid(rng: random.Random) -> Puzzle:
    """3x3 grid of circles of three sizes; sizes follow corners/edges/center, rows, or columns."""
    grid, answer, _, caption, expl, ded, facts, steps, meta = _grid_puzzle(rng, "size", SIZES)
    color = rng.choice(COLOR_NAMES)
    cv = Canvas(400, 400)
    for r in range(3):
        for c in range(3):
            x, y = GRID_XY[c], GRID_XY[r]
            if grid[r][c] == MISSING:
                cv.text(x, y, "?", size=40)  # no placeholder circle: its size would mislead
            else:
                cv.circle(x, y, SIZE_RADIUS[grid[r][c]], fill=COLORS[color])
    meta["color"] = color
    meta["radii"] = SIZE_RADIUS
    caption = caption.replace("9 circles", f"9 {color} circles", 1)
    facts[0] = f"The image shows 9 {color} circles of different sizes arranged in a 3x3 grid."
    return Puzzle(cv.image(), QUESTION_SIZE, answer, [s for s in SIZES if s != answer],
                  caption, expl, ded, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# color_hexagon: opposite triangles of a hexagon share a color
# --------------------------------------------------------------------------------------------

# Triangle k spans vertices k and k+1 of a hexagon whose vertex 0 points right (screen y down).
HEX_NAMES = ["lower-right", "bottom", "lower-left", "upper-left", "top", "upper-right"]
HEX_CLOCKWISE_FROM_TOP = [4, 5, 0, 1, 2, 3]


def solve_color_hexagon(meta: dict) -> str:
    tri = meta["triangles"]
    k = tri.index(MISSING)
    consistent = all(tri[i] == tri[i + 3] for i in range(3) if MISSING not in (tri[i], tri[i + 3]))
    if not consistent:
        raise SolveError("visible opposite triangles do not share colors")
    return tri[(k + 3) % 6]


@register("color_hexagon", "abstract", solve_color_hexagon)
def color_hexagon(rng: random.Random) -> Puzzle:
    """Hexagon split into 6 triangles; opposite triangles share a color."""
    pair_colors = rng.sample(COLOR_NAMES, 3)
    full = [pair_colors[k % 3] for k in range(6)]
    k = rng.randrange(6)
    tri = full[:]
    tri[k] = MISSING
    answer = full[k]
    opp = (k + 3) % 6

    cx, cy, R = 200, 200, 165
    verts = regular_polygon(cx, cy, R, 6, rotation=0)
    cv = Canvas(400, 400)
    for i in range(6):
        pts = [(cx, cy), verts[i], verts[(i + 1) % 6]]
        if tri[i] == MISSING:
            cv.polygon(pts, fill=(235, 235, 235), outline=INK, width=3)
            mx, my = (sum(p[0] for p in pts) / 3, sum(p[1] for p in pts) / 3)
            cv.text(mx, my, "?", size=40)
        else:
            cv.polygon(pts, fill=COLORS[tri[i]], outline=INK, width=3)

    order = HEX_CLOCKWISE_FROM_TOP
    listing = ", ".join(f"{HEX_NAMES[i]}: {tri[i]}" for i in order)
    caption = (f"A hexagon is divided into 6 triangles that meet at its center. Going clockwise "
               f"from the top, the colors are {listing}. The {HEX_NAMES[k]} triangle is missing "
               f"and marked with a question mark.")
    facts = ["The image shows a hexagon divided into 6 triangles meeting at the center."]
    facts += [f"The {HEX_NAMES[i]} triangle is {tri[i]}." for i in order if tri[i] != MISSING]
    facts.append(f"The {HEX_NAMES[k]} triangle is missing and marked with a question mark.")
    steps = []
    for i in range(3):
        a, b = i, i + 3
        if MISSING in (tri[a], tri[b]):
            continue
        steps.append(f"The {HEX_NAMES[a]} and {HEX_NAMES[b]} triangles are opposite each other "
                     f"and both are {tri[a]}.")
    pattern = "triangles on opposite sides of the center always have the same color"
    steps.append(f"So {pattern}.")
    steps.append(f"The missing {HEX_NAMES[k]} triangle is opposite the {HEX_NAMES[opp]} "
                 f"triangle, which is {answer}, so it should be {answer}.")
    steps.append(_answer_step(answer))
    explanation = (f"We observe that {pattern}: the colors come in opposite pairs "
                   f"({join_words(pair_colors)}).")
    deduction = (f"Based on the pattern that {pattern}, the missing {HEX_NAMES[k]} triangle "
                 f"should have the color of the {HEX_NAMES[opp]} triangle, which is {answer}.")
    prefer = [c for c in pair_colors if c != answer]
    meta = {"triangles": tri, "triangle_names": HEX_NAMES, "missing": k}
    return Puzzle(cv.image(), QUESTION_COLOR, answer, other_colors(rng, {answer}, prefer),
                  caption, explanation, deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# size_cycle: arms of circles radiating from the center repeat the same size order
# --------------------------------------------------------------------------------------------

DIRS8 = ["right", "lower-right", "bottom", "lower-left", "left", "upper-left", "top",
         "upper-right"]


def _direction(angle_deg: float) -> str:
    return DIRS8[round((angle_deg % 360) / 45) % 8]


def solve_size_cycle(meta: dict) -> str:
    arms = meta["arms"]
    p = next(arm.index(MISSING) for arm in arms if MISSING in arm)
    for j in range(len(arms[0])):  # every position must agree across the visible arms
        vals = {arm[j] for arm in arms if arm[j] != MISSING}
        if len(vals) != 1:
            raise SolveError(f"position {j} has sizes {sorted(vals)} across arms")
    return next(arm[p] for arm in arms if arm[p] != MISSING)


@register("size_cycle", "abstract", solve_size_cycle, n_options=3)
def size_cycle(rng: random.Random) -> Puzzle:
    """Arms of circles radiating from the center; every arm repeats the same size order."""
    n_arms = rng.choice([3, 4, 5])
    order = rng.sample(SIZES, 3)
    offset = rng.randrange(0, 360, 15)
    angles = [(offset + 360 * i / n_arms) % 360 for i in range(n_arms)]
    arms = [order[:] for _ in range(n_arms)]
    a, p = rng.randrange(n_arms), rng.randrange(3)
    answer = arms[a][p]
    arms[a][p] = MISSING
    color = rng.choice(COLOR_NAMES)
    radii = {"small": 11, "medium": 19, "large": 29}
    dists = [58, 111, 166]

    cv = Canvas(400, 400)
    cv.circle(200, 200, 5, fill=INK, outline=None)
    for i, ang in enumerate(angles):
        t = math.radians(ang)
        for j in range(3):
            x, y = 200 + dists[j] * math.cos(t), 200 + dists[j] * math.sin(t)
            if arms[i][j] == MISSING:
                cv.text(x, y, "?", size=30)
            else:
                cv.circle(x, y, radii[arms[i][j]], fill=COLORS[color])

    names = [_direction(x) for x in angles]
    caption = (f"There are {n_arms} arms of {color} circles radiating from the center, with 3 "
               f"circles in each arm. From the center outward, the sizes are: " +
               "; ".join(f"{names[i]} arm [{', '.join(arms[i])}]" for i in range(n_arms)) +
               f". The {ORDINALS[p]} circle of the {names[a]} arm is missing and marked with a "
               f"question mark.")
    facts = [f"The image shows {n_arms} arms of {color} circles radiating from the center, "
             f"3 circles per arm."]
    for i in range(n_arms):
        facts.append(f"The {names[i]} arm, from the center outward, has circles of sizes "
                     f"{', '.join(arms[i])}.")
    facts.append(f"The {ORDINALS[p]} circle from the center in the {names[a]} arm is missing "
                 f"and marked with a question mark.")
    pattern = (f"every arm has the same sequence of sizes from the center outward: "
               f"{', '.join(order)}")
    steps = [f"The complete arms all read {', '.join(order)} from the center outward.",
             f"So {pattern}.",
             f"The missing circle is the {ORDINALS[p]} from the center in its arm, and the "
             f"{ORDINALS[p]} circle of every other arm is {answer}, so it should be {answer}.",
             _answer_step(answer)]
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing {ORDINALS[p]} circle of the "
                 f"{names[a]} arm should be {answer}.")
    meta = {"arms": arms, "arm_directions": names, "missing": [a, p], "color": color,
            "radii": radii}
    return Puzzle(cv.image(), QUESTION_SIZE, answer, [s for s in SIZES if s != answer],
                  caption, explanation, deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# shape_reflect: shapes mirrored across a dashed line
# --------------------------------------------------------------------------------------------


def solve_shape_reflect(meta: dict) -> str:
    shapes = meta["shapes"]
    n = len(shapes)
    k = shapes.index(MISSING)
    for i in range(n // 2):
        a, b = shapes[i], shapes[n - 1 - i]
        if MISSING not in (a, b) and a != b:
            raise SolveError("visible shapes are not mirror images")
    return shapes[n - 1 - k]


@register("shape_reflect", "abstract", solve_shape_reflect)
def shape_reflect(rng: random.Random) -> Puzzle:
    """A row of shapes mirrored across a dashed vertical line; one shape is hidden."""
    half = rng.choice([3, 3, 4])
    left = rng.sample([s for s in SHAPES], half)
    colors = rng.sample(COLOR_NAMES, half)
    shapes = left + left[::-1]
    cols = colors + colors[::-1]
    n = len(shapes)
    k = rng.randrange(n)
    answer = shapes[k]
    shapes[k] = MISSING
    mirror = n - 1 - k

    W, H = 448, 200
    gap = 52 if half == 4 else 66
    xs = [W / 2 - gap / 2 - gap * (half - 1 - i) for i in range(half)]
    xs = xs + [W - x for x in xs[::-1]]
    r = 22 if half == 4 else 26
    cv = Canvas(W, H)
    cv.dashed_line((W / 2, 18), (W / 2, H - 18), width=2)
    for i in range(n):
        if shapes[i] == MISSING:
            cv.text(xs[i], H / 2, "?", size=36)  # an outline would read as a shape
        else:
            cv.shape(shapes[i], xs[i], H / 2, r, fill=COLORS[cols[i]])

    def desc(i):
        return "?" if shapes[i] == MISSING else f"{cols[i]} {shapes[i]}"

    lt = ", ".join(desc(i) for i in range(half))
    rt = ", ".join(desc(i) for i in range(half, n))
    side = "left" if k < half else "right"
    dist = (half - 1 - k) if k < half else (k - half)  # 0 = next to the line
    caption = (f"There is a row of {n} shapes with a dashed vertical line in the middle. Left of "
               f"the line, from left to right: {lt}. Right of the line, from left to right: {rt}. "
               f"One shape is missing and marked with a question mark.")
    facts = [f"The image shows a row of {n} shapes split in half by a dashed vertical line.",
             f"Left of the line, from left to right: {lt}.",
             f"Right of the line, from left to right: {rt}.",
             f"The {ORDINALS[dist]} shape from the line on the {side} side is missing and marked "
             f"with a question mark."]
    pattern = ("the shapes on the right of the line are a mirror image of the shapes on the "
               "left: each shape matches the one at the same distance on the other side")
    other = "right" if side == "left" else "left"
    steps = ["Comparing shapes at equal distance from the line, the visible pairs match in shape "
             f"and color.",
             f"So {pattern}.",
             f"The missing shape is {ORDINALS[dist]} from the line on the {side}; the "
             f"{ORDINALS[dist]} shape from the line on the {other} is "
             f"{article(cols[mirror])} {answer}.",
             _answer_step(answer)]
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing shape should be the mirror "
                 f"of the {cols[mirror]} {answer}, so it is {article(answer)}.")
    prefer = [s for s in left if s != answer]
    rest = [s for s in SHAPES if s not in prefer and s != answer]
    rng.shuffle(rest)
    meta = {"shapes": shapes, "colors": cols, "missing": k, "axis": "vertical"}
    return Puzzle(cv.image(), QUESTION_SHAPE, answer, prefer + rest, caption, explanation,
                  deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# Polygons: number = f(sides), or color determined by sides
# --------------------------------------------------------------------------------------------

SIDES_RULES = {  # name -> (multiplier, offset, phrase)
    "sides": (1, 0, "equal to its number of sides"),
    "double": (2, 0, "twice its number of sides"),
    "plus_one": (1, 1, "one more than its number of sides"),
}


def solve_polygon_sides_number(meta: dict) -> str:
    sides, nums = meta["sides"], meta["numbers"]
    preds = set()
    for a, b, _ in SIDES_RULES.values():
        if all(n == a * s + b for s, n in zip(sides, nums) if n != MISSING):
            preds.add(str(a * sides[nums.index(MISSING)] + b))
    return _unique(preds, "polygon_sides_number")


@register("polygon_sides_number", "abstract", solve_polygon_sides_number)
def polygon_sides_number(rng: random.Random) -> Puzzle:
    """Four polygons each holding a number computed from its number of sides."""
    rule = rng.choices(list(SIDES_RULES), weights=[3, 1, 1])[0]
    a, b, phrase = SIDES_RULES[rule]
    sides = rng.sample(range(3, 9), 4)
    nums: list = [a * s + b for s in sides]
    k = rng.randrange(4)
    answer = str(nums[k])
    nums[k] = MISSING
    color = rng.choice(COLOR_NAMES)

    cv = Canvas(400, 400)
    centers = [(105, 105), (295, 105), (105, 295), (295, 295)]
    for i, (x, y) in enumerate(centers):
        cv.polygon(regular_polygon(x, y, 78, sides[i]), fill=_tint(COLORS[color]), width=3)
        cv.text(x, y + 4, nums[i], size=34)
    pos = ["top-left", "top-right", "bottom-left", "bottom-right"]
    listing = "; ".join(f"{pos[i]}: {POLYGON_NAMES[sides[i]]} with {nums[i]}" for i in range(4))
    caption = (f"There are 4 {color} polygons in a 2x2 grid, each with a number inside "
               f"({listing}). The number in the {pos[k]} polygon is missing and marked with a "
               f"question mark.")
    facts = ["The image shows 4 polygons in a 2x2 grid, each containing a number."]
    for i in range(4):
        facts.append(f"The {pos[i]} polygon has {sides[i]} sides "
                     f"({article(POLYGON_NAMES[sides[i]])}) "
                     f"and contains {'a question mark' if nums[i] == MISSING else nums[i]}.")
    pattern = f"the number inside each polygon is {phrase}"
    steps = [f"The {POLYGON_NAMES[sides[i]]} has {sides[i]} sides and contains {nums[i]}."
             for i in range(4) if nums[i] != MISSING]
    steps += [f"So {pattern}.",
              f"The {pos[k]} polygon is {article(POLYGON_NAMES[sides[k]])} with {sides[k]} "
              f"sides, so its "
              f"number should be {answer}.",
              _answer_step(answer)]
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing number in the "
                 f"{POLYGON_NAMES[sides[k]]} should be {answer}.")
    plausible = [sides[k]] + [a * (sides[k] + d) + b for d in (-1, 1)]
    plausible += [n for n in nums if n != MISSING]
    meta = {"sides": sides, "numbers": nums, "rule": rule, "missing": k, "color": color}
    return Puzzle(cv.image(), QUESTION_NUMBER, answer,
                  number_distractors(rng, int(answer), plausible, lo=1),
                  caption, explanation, deduction, facts, steps, meta)


def _attribute_pairs_solve(keys, values, what):
    """Shared solver: items with equal ``keys`` share ``values``; return the missing value."""
    k = values.index(MISSING)
    mapping = defaultdict(set)
    for key, v in zip(keys, values):
        if v != MISSING:
            mapping[key].add(v)
    if any(len(v) != 1 for v in mapping.values()):
        raise SolveError(f"{what}: items with the same key have different values")
    flat = [next(iter(v)) for v in mapping.values()]
    if len(set(flat)) != len(flat):
        raise SolveError(f"{what}: different keys share a value")
    if keys[k] not in mapping:
        raise SolveError(f"{what}: no visible item shares the missing item's key")
    return next(iter(mapping[keys[k]]))


def solve_polygon_sides_color(meta: dict) -> str:
    return _attribute_pairs_solve(meta["sides"], meta["colors"], "polygon_sides_color")


@register("polygon_sides_color", "abstract", solve_polygon_sides_color)
def polygon_sides_color(rng: random.Random) -> Puzzle:
    """Six polygons; polygons with the same number of sides have the same color."""
    kinds = rng.sample(range(3, 9), 3)
    palette = dict(zip(kinds, rng.sample(COLOR_NAMES, 3)))
    sides = kinds * 2
    rng.shuffle(sides)
    colors: list = [palette[s] for s in sides]
    k = rng.randrange(6)
    answer = colors[k]
    colors[k] = MISSING
    radii = [rng.randint(44, 56) for _ in range(6)]

    cv = Canvas(420, 300)
    centers = [(75 + 135 * (i % 3), 80 + 140 * (i // 3)) for i in range(6)]
    for i, (x, y) in enumerate(centers):
        if colors[i] == MISSING:
            cv.polygon(regular_polygon(x, y, radii[i], sides[i]), fill=(235, 235, 235), width=3)
            cv.text(x, y + 3, "?", size=34)
        else:
            cv.polygon(regular_polygon(x, y, radii[i], sides[i]), fill=COLORS[colors[i]], width=3)
    pos = [f"{['top', 'bottom'][i // 3]} {['left', 'middle', 'right'][i % 3]}" for i in range(6)]

    def desc(i):
        shape = POLYGON_NAMES[sides[i]]
        return f"{article(shape)} marked with a question mark" if colors[i] == MISSING else \
            f"{article(colors[i])} {shape}"

    caption = ("There are 6 polygons in two rows of three: " +
               "; ".join(f"{pos[i]}: {desc(i)}" for i in range(6)) + ".")
    facts = ["The image shows 6 polygons in two rows of three."]
    facts += [f"The {pos[i]} polygon is {desc(i)} ({sides[i]} sides)." for i in range(6)]
    twin = next(i for i in range(6) if i != k and sides[i] == sides[k])
    steps = []
    for s in kinds:
        idx = [i for i in range(6) if sides[i] == s and colors[i] != MISSING]
        steps.append(f"The visible {POLYGON_NAMES[s]}s ({s} sides) are {palette[s]}."
                     if len(idx) == 2 else
                     f"The visible {POLYGON_NAMES[s]} ({s} sides) is {palette[s]}.")
    pattern = "polygons with the same number of sides have the same color"
    steps += [f"So {pattern}, and each number of sides has its own color.",
              f"The missing polygon is {article(POLYGON_NAMES[sides[k]])}, and the other "
              f"{POLYGON_NAMES[sides[k]]} (at the {pos[twin]}) is {answer}, so it should be "
              f"{answer}.",
              _answer_step(answer)]
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing {POLYGON_NAMES[sides[k]]} "
                 f"should be {answer}.")
    prefer = [c for c in palette.values() if c != answer]
    meta = {"sides": sides, "colors": colors, "missing": k}
    return Puzzle(cv.image(), QUESTION_COLOR, answer, other_colors(rng, {answer}, prefer),
                  caption, explanation, deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# triangle: three groups [a, b, c] where the top number c = a op b
# --------------------------------------------------------------------------------------------

TRIANGLE_OPS = {
    "sum": (lambda a, b: a + b, "the sum of"),
    "product": (lambda a, b: a * b, "the product of"),
    "difference": (lambda a, b: abs(a - b), "the difference between"),
}


def _triangle_solutions(group, op):
    """Values for the '?' in [a, b, c] making c == op(a, b) (search small integers)."""
    f = TRIANGLE_OPS[op][0]
    i = group.index(MISSING)
    out = set()
    for v in range(0, 400):
        g = list(group)
        g[i] = v
        if g[2] == f(g[0], g[1]):
            out.add(v)
    return out


def solve_triangle(meta: dict) -> str:
    groups = meta["groups"]
    complete = [g for g in groups if MISSING not in g]
    partial = next(g for g in groups if MISSING in g)
    preds = set()
    for op, (f, _) in TRIANGLE_OPS.items():
        if all(g[2] == f(g[0], g[1]) for g in complete):
            sols = _triangle_solutions(partial, op)
            if len(sols) != 1:
                raise SolveError(f"triangle: op {op} gives {len(sols)} solutions")
            preds |= sols
    return str(_unique(preds, "triangle"))


@register("triangle", "abstract", solve_triangle)
def triangle(rng: random.Random) -> Puzzle:
    """Three number triangles; the top number is the sum or product of the bottom two."""
    for _ in range(1000):
        op = rng.choice(["sum", "product"])
        f = TRIANGLE_OPS[op][0]
        groups = []
        for _ in range(3):
            if op == "product":
                a, b = rng.randint(2, 9), rng.randint(2, 9)
            else:
                a, b = rng.randint(1, 20), rng.randint(1, 20)
            groups.append([a, b, f(a, b)])
        gi, pi = rng.randrange(3), rng.randrange(3)
        complete = [g for i, g in enumerate(groups) if i != gi]
        # the two complete groups must single out the rule
        fitting = [o for o, (h, _) in TRIANGLE_OPS.items()
                   if all(g[2] == h(g[0], g[1]) for g in complete)]
        if fitting == [op] and len({tuple(g) for g in groups}) == 3:
            break
    answer = groups[gi][pi]
    shown = [g[:] for g in groups]
    shown[gi][pi] = MISSING

    W, H = 448, 200
    cv = Canvas(W, H)
    for i, g in enumerate(shown):
        cx = 78 + 146 * i
        pts = [(cx - 62, 168), (cx + 62, 168), (cx, 40)]
        cv.polygon(pts, fill=(250, 250, 250), outline=INK, width=3)
        cv.text(cx - 32, 150, g[0], size=24)
        cv.text(cx + 32, 150, g[1], size=24)
        cv.text(cx, 95, g[2], size=24)
        for j, p in enumerate([(cx - 32, 150), (cx + 32, 150), (cx, 95)]):
            if g[j] == MISSING:
                cv.circle(p[0], p[1], 15, fill=None, outline=(150, 150, 150), width=2)

    def fmt(g):
        return "[" + ", ".join(str(v) for v in g) + "]"

    word = TRIANGLE_OPS[op][1]
    caption = (f"There are three triangles of numbers from left to right. Each triangle has a "
               f"number at its bottom-left, bottom-right and top. Listed as [bottom-left, "
               f"bottom-right, top], the groups are {fmt(shown[0])}, {fmt(shown[1])} and "
               f"{fmt(shown[2])}.")
    slot = ["bottom-left", "bottom-right", "top"][pi]
    facts = ["The image shows three triangles from left to right, each with three numbers."]
    for i, g in enumerate(shown):
        facts.append(f"The {ORDINALS[i]} triangle has bottom-left {g[0]}, bottom-right {g[1]} "
                     f"and top {g[2]}.")
    facts.append(f"The {slot} number of the {ORDINALS[gi]} triangle is missing and marked with a "
                 f"question mark.")
    steps = [f"In the {ORDINALS[i]} triangle, {g[2]} is {word} {g[0]} and {g[1]}."
             for i, g in enumerate(groups) if i != gi]
    pattern = f"the top number of each triangle is {word} its two bottom numbers"
    steps.append(f"So {pattern}.")
    g = shown[gi]
    if pi == 2:
        steps.append(f"For the {ORDINALS[gi]} triangle, the top number is {word} {g[0]} and "
                     f"{g[1]}, which is {answer}.")
    else:
        known = g[1 - pi]
        inv = "minus" if op == "sum" else "divided by"
        steps.append(f"For the {ORDINALS[gi]} triangle, the missing bottom number is {g[2]} {inv} "
                     f"{known}, which is {answer}.")
    steps.append(_answer_step(str(answer)))
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing number of the group "
                 f"{fmt(shown[gi])} should be {answer}.")
    a, b, c = groups[gi]
    if pi == 2:
        plausible = [h(a, b) for o, (h, _) in TRIANGLE_OPS.items() if o != op]
    else:
        known = g[1 - pi]
        plausible = [c - known, c + known] + ([c // known] if known and op == "product" else [])
    meta = {"groups": shown, "op": op, "missing": [gi, pi]}
    return Puzzle(cv.image(), QUESTION_NUMBER, str(answer),
                  number_distractors(rng, answer, plausible, lo=1),
                  caption, explanation, deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# venn: one circle collects a color, the other a shape; what goes in the overlap?
# --------------------------------------------------------------------------------------------

VENN_SHAPES = [s for s in SHAPES if s != "circle"]  # circles would blur with the Venn circles


def solve_venn(meta: dict) -> str:
    """The overlap item must match the common attribute of each side."""
    sides = []
    for region in (meta["left_only"], meta["right_only"]):
        colors = {c for c, _ in region}
        shapes = {s for _, s in region}
        common = []
        if len(colors) == 1:
            common.append(("color", next(iter(colors))))
        if len(shapes) == 1:
            common.append(("shape", next(iter(shapes))))
        if len(common) != 1:
            raise SolveError(f"venn: region {region} has {len(common)} common attributes")
        sides.append(common[0])
    attrs = dict(sides)
    if len(attrs) != 2:
        raise SolveError("venn: both circles use the same attribute")
    return f"{attrs['color']} {attrs['shape']}"


@register("venn", "abstract", solve_venn)
def venn(rng: random.Random) -> Puzzle:
    """Two overlapping circles grouping shapes by color and by shape; fill in the overlap."""
    color = rng.choice(COLOR_NAMES)
    shape = rng.choice(VENN_SHAPES)
    n_left, n_right = rng.choice([2, 3]), rng.choice([2, 3])
    color_side = [(color, s) for s in rng.sample([s for s in VENN_SHAPES if s != shape], n_left)]
    shape_side = [(c, shape) for c in rng.sample([c for c in COLOR_NAMES if c != color], n_right)]
    color_on_left = rng.random() < 0.5
    left, right = (color_side, shape_side) if color_on_left else (shape_side, color_side)
    answer = f"{color} {shape}"

    W, H = 448, 320
    cv = Canvas(W, H)
    cv.circle(170, 160, 120, fill=None, width=3)
    cv.circle(278, 160, 120, fill=None, width=3)
    slots_l = [(108, 100), (108, 220), (74, 160)]
    slots_r = [(W - x, y) for x, y in slots_l]
    for items, slots in ((left, slots_l), (right, slots_r)):
        for (c, s), (x, y) in zip(items, slots):
            cv.shape(s, x, y, 21, fill=COLORS[c])
    cv.missing("circle", 224, 160, 24, size=28)

    def names(items):
        return join_words(f"{article(c)} {s}" for c, s in items)

    caption = (f"There are two overlapping circles. The part of the left circle outside the "
               f"overlap contains {names(left)}. The part of the right circle outside the overlap "
               f"contains {names(right)}. The overlapping region holds a question mark.")
    facts = ["The image shows two overlapping circles.",
             f"Only in the left circle: {names(left)}.",
             f"Only in the right circle: {names(right)}.",
             "The overlap of the two circles contains a question mark."]
    cside, sside = ("left", "right") if color_on_left else ("right", "left")
    pattern = (f"the {cside} circle holds {color} shapes and the {sside} circle holds "
               f"{shape}s, so the overlap holds shapes that are both")
    steps = [f"Every shape only in the {cside} circle is {color}, while their shapes differ, so "
             f"the {cside} circle collects {color} shapes.",
             f"Every shape only in the {sside} circle is {article(shape)}, while their colors "
             f"differ, so "
             f"the {sside} circle collects {shape}s.",
             f"The overlap belongs to both circles, so the missing shape must be both {color} "
             f"and {article(shape)}.",
             _answer_step(answer)]
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing shape should be "
                 f"{article(answer)}.")
    wrong_shape = rng.choice([s for _, s in color_side])
    wrong_color = rng.choice([c for c, _ in shape_side])
    others = [f"{wrong_color} {wrong_shape}", f"{color} {wrong_shape}", f"{wrong_color} {shape}"]
    rng.shuffle(others)
    meta = {"left_only": left, "right_only": right, "overlap": MISSING}
    return Puzzle(cv.image(), "Which shape belongs in the overlapping region denoted with a "
                  "question mark?", answer, others, caption, explanation, deduction, facts,
                  steps, meta)


# --------------------------------------------------------------------------------------------
# grid_number: every row (or column) of a 3x3 number grid has the same sum
# --------------------------------------------------------------------------------------------


def _line_predictions(grid):
    """{'rows'|'columns': predicted missing value} for each orientation with equal sums."""
    mr, mc = _find_missing(grid)
    out = {}
    for name, lines in (("rows", [list(r) for r in grid]),
                        ("columns", [list(c) for c in zip(*grid)])):
        sums = {sum(line) for line in lines if MISSING not in line}
        if len(sums) != 1:
            continue
        target = sums.pop()
        line = lines[mr] if name == "rows" else lines[mc]
        out[name] = target - sum(v for v in line if v != MISSING)
    return out


def solve_grid_number(meta: dict) -> str:
    return str(_unique(_line_predictions(meta["grid"]).values(), "grid_number"))


@register("grid_number", "abstract", solve_grid_number)
def grid_number(rng: random.Random) -> Puzzle:
    """3x3 number grid where every row (or every column) adds up to the same total."""
    while True:
        total = rng.randint(10, 24)
        lines = []
        for _ in range(3):
            a = rng.randint(1, min(total - 2, 15))
            b = rng.randint(1, min(total - a - 1, 15))
            lines.append([a, b, total - a - b])
        if any(v > 20 for line in lines for v in line):
            continue
        orient = rng.choice(["rows", "columns"])
        full = lines if orient == "rows" else [list(c) for c in zip(*lines)]
        mr, mc = rng.randrange(3), rng.randrange(3)
        grid = [r[:] for r in full]
        grid[mr][mc] = MISSING
        if set(_line_predictions(grid)) == {orient}:
            break
    answer = full[mr][mc]
    cv = Canvas(400, 400)
    x0, cell = 50, 100
    for r in range(3):
        for c in range(3):
            x, y = x0 + c * cell, x0 + r * cell
            miss = grid[r][c] == MISSING
            cv.rect(x, y, x + cell, y + cell, fill=(235, 235, 235) if miss else (255, 255, 255),
                    width=3)
            cv.text(x + cell / 2, y + cell / 2, grid[r][c], size=40)
    line = "row" if orient == "rows" else "column"
    rows_text = ["[" + ", ".join(str(v) for v in row) + "]" for row in grid]
    caption = (f"There is a 3x3 grid of numbers. The first row is {rows_text[0]}, the second row "
               f"is {rows_text[1]}, and the third row is {rows_text[2]}. The {GRID_POS[mr][mc]} "
               f"number is missing and marked with a question mark.")
    facts = ["The image shows a 3x3 grid of numbers."]
    facts += [f"The {['top', 'middle', 'bottom'][r]} row is {rows_text[r]}." for r in range(3)]
    facts.append(f"The {GRID_POS[mr][mc]} number is missing and marked with a question mark.")
    lines_full = full if orient == "rows" else [list(c) for c in zip(*full)]
    miss_line = mr if orient == "rows" else mc
    steps = [f"The {ORDINALS[i]} {line} adds up to {' + '.join(map(str, l))} = {total}."
             for i, l in enumerate(lines_full) if i != miss_line]
    pattern = f"the numbers in each {line} add up to {total}"
    others = [v for v in (grid[mr] if orient == "rows" else [row[mc] for row in grid])
              if v != MISSING]
    steps += [f"So {pattern}.",
              f"The missing number is in the {ORDINALS[miss_line]} {line}, whose other numbers "
              f"are {others[0]} and {others[1]}, so it is {total} - {others[0]} - {others[1]} = "
              f"{answer}.",
              _answer_step(str(answer))]
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing number should be "
                 f"{total} - {others[0]} - {others[1]} = {answer}.")
    cross = [row[mc] for row in grid] if orient == "rows" else grid[mr]
    plausible = [total - sum(v for v in cross if v != MISSING), sum(others)]
    meta = {"grid": grid, "orientation": orient, "total": total, "missing": [mr, mc]}
    return Puzzle(cv.image(), QUESTION_NUMBER, str(answer),
                  number_distractors(rng, answer, plausible, lo=1),
                  caption, explanation, deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# circle_size_number: circles of the same size hold the same number
# --------------------------------------------------------------------------------------------


def solve_circle_size_number(meta: dict) -> str:
    return str(_attribute_pairs_solve(meta["sizes"], meta["numbers"], "circle_size_number"))


@register("circle_size_number", "abstract", solve_circle_size_number)
def circle_size_number(rng: random.Random) -> Puzzle:
    """Six circles of three sizes; circles of the same size hold the same number."""
    values = dict(zip(SIZES, rng.sample(range(1, 30), 3)))
    sizes = SIZES * 2
    rng.shuffle(sizes)
    nums: list = [values[s] for s in sizes]
    k = rng.randrange(6)
    answer = nums[k]
    nums[k] = MISSING
    color = rng.choice(COLOR_NAMES)
    radii = {"small": 24, "medium": 37, "large": 52}

    cv = Canvas(420, 300)
    centers = [(75 + 135 * (i % 3), 80 + 140 * (i // 3)) for i in range(6)]
    for i, (x, y) in enumerate(centers):
        cv.circle(x, y, radii[sizes[i]], fill=_tint(COLORS[color]), width=3)
        cv.text(x, y + 2, nums[i], size=26)
    pos = [f"{['top', 'bottom'][i // 3]} {['left', 'middle', 'right'][i % 3]}" for i in range(6)]
    listing = "; ".join(f"{pos[i]}: {sizes[i]} circle with {nums[i]}" for i in range(6))
    caption = (f"There are 6 {color} circles of three different sizes in two rows of three, each "
               f"with a number inside ({listing}). The number in the {pos[k]} circle is missing "
               f"and marked with a question mark.")
    facts = ["The image shows 6 circles of three sizes in two rows of three, each with a number."]
    facts += [f"The {pos[i]} circle is {sizes[i]} and contains "
              f"{'a question mark' if nums[i] == MISSING else nums[i]}." for i in range(6)]
    twin = next(i for i in range(6) if i != k and sizes[i] == sizes[k])
    steps = []
    for s in SIZES:
        vis = [nums[i] for i in range(6) if sizes[i] == s and nums[i] != MISSING]
        if len(vis) == 2:
            steps.append(f"Both {s} circles contain {vis[0]}.")
        else:
            steps.append(f"The visible {s} circle contains {vis[0]}.")
    pattern = "circles of the same size contain the same number"
    steps += [f"So {pattern}.",
              f"The missing circle is {sizes[k]}, and the other {sizes[k]} circle (at the "
              f"{pos[twin]}) contains {answer}, so it should be {answer}.",
              _answer_step(str(answer))]
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the number in the missing {sizes[k]} "
                 f"circle should be {answer}.")
    plausible = [values[s] for s in SIZES if s != sizes[k]]
    meta = {"sizes": sizes, "numbers": nums, "missing": k, "color": color, "radii": radii}
    return Puzzle(cv.image(), QUESTION_NUMBER, str(answer),
                  number_distractors(rng, answer, plausible, lo=1),
                  caption, explanation, deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# rectangle_height_color: bars of the same height have the same color
# --------------------------------------------------------------------------------------------

HEIGHT_NAMES = {1: "short", 2: "medium", 3: "tall"}


def solve_rectangle_height_color(meta: dict) -> str:
    return _attribute_pairs_solve(meta["heights"], meta["colors"], "rectangle_height_color")


@register("rectangle_height_color", "abstract", solve_rectangle_height_color)
def rectangle_height_color(rng: random.Random) -> Puzzle:
    """A row of bars of three heights; bars of the same height share a color."""
    n = rng.choice([6, 7])
    heights = [1, 2, 3] * 2 + ([rng.randint(1, 3)] if n == 7 else [])
    rng.shuffle(heights)
    palette = dict(zip([1, 2, 3], rng.sample(COLOR_NAMES, 3)))
    colors: list = [palette[h] for h in heights]
    k = rng.randrange(n)
    answer = colors[k]
    colors[k] = MISSING
    unit = 80

    W, H = 448, 320
    cv = Canvas(W, H)
    base = H - 30
    bw = 44
    gap = (W - 40 - n * bw) / (n - 1)
    cv.line([(12, base), (W - 12, base)], width=3)
    for i in range(n):
        x0 = 20 + i * (bw + gap)
        top = base - unit * heights[i]
        if colors[i] == MISSING:
            cv.rect(x0, top, x0 + bw, base, fill=(235, 235, 235), width=2)
            cv.text(x0 + bw / 2, (top + base) / 2, "?", size=30)
        else:
            cv.rect(x0, top, x0 + bw, base, fill=COLORS[colors[i]], width=2)

    def desc(i):
        return f"{HEIGHT_NAMES[heights[i]]} {'?' if colors[i] == MISSING else colors[i]}"

    caption = (f"There are {n} rectangles of three different heights standing in a row. From left "
               f"to right (height and color): {', '.join(desc(i) for i in range(n))}. The "
               f"{ORDINALS[k]} rectangle is missing its color and marked with a question mark.")
    facts = [f"The image shows {n} rectangles of three heights (short, medium, tall) in a row."]
    facts += [f"The {ORDINALS[i]} rectangle from the left is {HEIGHT_NAMES[heights[i]]} and "
              f"{'marked with a question mark' if colors[i] == MISSING else colors[i]}."
              for i in range(n)]
    steps = []
    for h in (1, 2, 3):
        vis = {colors[i] for i in range(n) if heights[i] == h and colors[i] != MISSING}
        steps.append(f"The visible {HEIGHT_NAMES[h]} rectangles are all {palette[h]}."
                     if len([i for i in range(n) if heights[i] == h and colors[i] != MISSING]) > 1
                     else f"The visible {HEIGHT_NAMES[h]} rectangle is {next(iter(vis))}.")
    pattern = "rectangles of the same height have the same color"
    steps += [f"So {pattern}, and each height has its own color.",
              f"The missing rectangle is {HEIGHT_NAMES[heights[k]]}, so it should be {answer}.",
              _answer_step(answer)]
    explanation = f"We observe that {pattern}."
    deduction = (f"Based on the pattern that {pattern}, the missing {HEIGHT_NAMES[heights[k]]} "
                 f"rectangle should be {answer}.")
    prefer = [c for c in palette.values() if c != answer]
    meta = {"heights": heights, "colors": colors, "missing": k, "height_unit_px": unit}
    return Puzzle(cv.image(), QUESTION_COLOR, answer, other_colors(rng, {answer}, prefer),
                  caption, explanation, deduction, facts, steps, meta)
