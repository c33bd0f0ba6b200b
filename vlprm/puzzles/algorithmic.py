"""AlgoPuzzleVQA-style families: the answer is computed exactly by an algorithm.

Every family stores the puzzle state in ``metadata`` and its solver re-runs the algorithm
(BFS, backtracking, clock arithmetic) on that state, so the answer can be re-checked without
the image.
"""

from __future__ import annotations

import math
import random
from collections import deque
from itertools import product

from vlprm.puzzles.base import (
    COLORS, INK, Canvas, Puzzle, join_words, number_distractors, plural, register,
)


def _answer_step(answer: str) -> str:
    return f"Therefore, the answer is {answer}."


# --------------------------------------------------------------------------------------------
# clock: read an analog clock and add or subtract a duration
# --------------------------------------------------------------------------------------------

NAMES = ["Alice", "Ben", "Chloe", "Daniel", "Emma", "Farid", "Grace", "Hiro", "Isabel", "Jonas",
         "Kemi", "Liam", "Maya", "Noah", "Olivia", "Priya", "Quinn", "Ravi", "Sara", "Tomas"]


def fmt_time(minutes: int) -> str:
    """Minutes since midnight (mod 12 h) -> 12-hour "h:mm" with 12 instead of 0."""
    minutes %= 720
    h, m = divmod(minutes, 60)
    return f"{h or 12}:{m:02d}"


def fmt_duration(h: int, m: int) -> str:
    parts = ([plural(h, "hour")] if h else []) + ([plural(m, "minute")] if m else [])
    return " ".join(parts)


def solve_clock(meta: dict) -> str:
    now = meta["hour"] % 12 * 60 + meta["minute"]
    delta = meta["delta_hours"] * 60 + meta["delta_minutes"]
    return fmt_time(now + delta if meta["direction"] == "add" else now - delta)


@register("clock", "algorithmic", solve_clock)
def clock(rng: random.Random) -> Puzzle:
    """Read an analog clock and add or subtract a duration."""
    hour, minute = rng.randint(1, 12), rng.randint(0, 59)
    dh, dm = rng.randint(0, 3), rng.randint(1, 59)
    direction = rng.choice(["add", "subtract"])
    name = rng.choice(NAMES)
    now = hour % 12 * 60 + minute
    delta = dh * 60 + dm
    target = now + delta if direction == "add" else now - delta
    answer = fmt_time(target)
    dur = fmt_duration(dh, dm)
    if direction == "add":
        question = (f"{name}'s event is going to start in {dur}. The current time is shown on the "
                    f"clock. The clock is a standard analog clock without the seconds hand. What "
                    f"will be the time when the event starts?")
    else:
        question = (f"{name} came to an event {dur} ago. The current time is shown on the clock. "
                    f"The clock is a standard analog clock without the seconds hand. What was the "
                    f"time when {name} came to the event?")

    cx, cy, R = 200, 200, 180
    cv = Canvas(400, 400)
    cv.circle(cx, cy, R, fill=(252, 250, 240), width=5)
    for t in range(60):
        a = math.radians(t * 6 - 90)
        r0 = R - (20 if t % 5 == 0 else 10)
        cv.line([(cx + r0 * math.cos(a), cy + r0 * math.sin(a)),
                 (cx + (R - 4) * math.cos(a), cy + (R - 4) * math.sin(a))],
                width=3 if t % 5 == 0 else 1)
    for n in range(1, 13):
        a = math.radians(n * 30 - 90)
        cv.text(cx + (R - 42) * math.cos(a), cy + (R - 42) * math.sin(a), n, size=28)
    ha = math.radians((hour % 12 + minute / 60) * 30 - 90)
    ma = math.radians(minute * 6 - 90)
    cv.line([(cx, cy), (cx + 88 * math.cos(ha), cy + 88 * math.sin(ha))], width=9)
    cv.line([(cx, cy), (cx + 140 * math.cos(ma), cy + 140 * math.sin(ma))], width=5)
    cv.circle(cx, cy, 8, fill=INK, outline=None)

    now_s = fmt_time(now)
    nxt = hour % 12 + 1
    hour_fact = (f"The short hour hand points exactly at {hour}." if minute == 0 else
                 f"The short hour hand points between {hour} and {nxt}.")
    mark = minute // 5 or 12
    minute_fact = (f"The long minute hand points exactly at the {mark} (minute {minute})."
                   if minute % 5 == 0 else
                   f"The long minute hand points at minute {minute}, between the {mark} and the "
                   f"{mark % 12 + 1}.")
    facts = ["The image shows an analog clock with an hour hand and a minute hand.",
             hour_fact, minute_fact, f"The clock shows {now_s}."]
    caption = f"An analog clock showing the time {now_s}."
    sign = "+" if direction == "add" else "-"
    steps = [f"The current time is {now_s}."]
    mid = now + dh * 60 if direction == "add" else now - dh * 60
    if dh:
        steps.append(f"{now_s} {sign} {plural(dh, 'hour')} = {fmt_time(mid)}.")
    steps.append(f"{fmt_time(mid)} {sign} {plural(dm, 'minute')} = {answer}.")
    steps.append(_answer_step(answer))
    verb = "start" if direction == "add" else "arrival"
    explanation = (f"The clock shows {now_s}; the {verb} time is {dur} "
                   f"{'later' if direction == 'add' else 'earlier'}.")
    deduction = f"{now_s} {sign} {dur} = {answer}."
    wrong_dir = fmt_time(now - delta if direction == "add" else now + delta)
    plausible = [wrong_dir, fmt_time(target + rng.choice([60, -60])),
                 fmt_time(target + rng.choice([10, -10, 5, -5])),
                 fmt_time(target - 60), fmt_time(target + 60), fmt_time(target + 15)]
    meta = {"hour": hour, "minute": minute, "direction": direction, "delta_hours": dh,
            "delta_minutes": dm}
    return Puzzle(cv.image(), question, answer, plausible, caption, explanation, deduction,
                  facts, steps, meta)


# --------------------------------------------------------------------------------------------
# maze: shortest path length and turns (BFS)
# --------------------------------------------------------------------------------------------

MOVES = {(0, 1): "right", (0, -1): "left", (1, 0): "down", (-1, 0): "up"}


def bfs_path(maze, start, goal):
    """Shortest path (list of [r, c]) between two open cells of a 0/1 grid, or None."""
    start, goal = tuple(start), tuple(goal)
    prev = {start: None}
    q = deque([start])
    while q:
        cur = q.popleft()
        if cur == goal:
            break
        r, c = cur
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            if (0 <= nr < len(maze) and 0 <= nc < len(maze[0]) and not maze[nr][nc]
                    and (nr, nc) not in prev):
                prev[(nr, nc)] = cur
                q.append((nr, nc))
    if goal not in prev:
        return None
    path, cur = [], goal
    while cur is not None:
        path.append(list(cur))
        cur = prev[cur]
    return path[::-1]


def count_turns(path):
    """(left, right) turns along a path of grid cells (rows grow downwards)."""
    left = right = 0
    for a, b, c in zip(path, path[1:], path[2:]):
        d1 = (b[0] - a[0], b[1] - a[1])
        d2 = (c[0] - b[0], c[1] - b[1])
        cross = d1[1] * d2[0] - d1[0] * d2[1]  # > 0: clockwise on screen = right turn
        if cross > 0:
            right += 1
        elif cross < 0:
            left += 1
    return left, right


MAZE_QUESTIONS = {
    "path_length": "How many cells do you need to visit in this shortest path, including the "
                   "entrance and exit cells?",
    "left_turns": "How many left turns do you need to make along this path?",
    "right_turns": "How many right turns do you need to make along this path?",
    "total_turns": "What is the combined number of left and right turns along this path?",
}


def _maze_values(meta):
    path = bfs_path(meta["maze"], meta["entrance"], meta["exit"])
    left, right = count_turns(path)
    return path, {"path_length": len(path), "left_turns": left, "right_turns": right,
                  "total_turns": left + right}


def solve_maze(meta: dict) -> str:
    return str(_maze_values(meta)[1][meta["ask"]])


def _carve_maze(rng, h, w):
    """A perfect maze (unique paths) by randomized depth-first search; 1 = wall."""
    H, W = 2 * h + 1, 2 * w + 1
    grid = [[1] * W for _ in range(H)]
    stack = [(0, 0)]
    seen = {(0, 0)}
    grid[1][1] = 0
    while stack:
        r, c = stack[-1]
        nbrs = [(r + dr, c + dc) for dr, dc in MOVES
                if 0 <= r + dr < h and 0 <= c + dc < w and (r + dr, c + dc) not in seen]
        if not nbrs:
            stack.pop()
            continue
        nr, nc = rng.choice(nbrs)
        grid[r + nr + 1][c + nc + 1] = 0  # the wall between the two cells
        grid[2 * nr + 1][2 * nc + 1] = 0
        seen.add((nr, nc))
        stack.append((nr, nc))
    return grid


def _runs(path):
    """Compress a path into [(direction, n_cells)] straight runs."""
    runs = []
    for a, b in zip(path, path[1:]):
        d = MOVES[(b[0] - a[0], b[1] - a[1])]
        if runs and runs[-1][0] == d:
            runs[-1][1] += 1
        else:
            runs.append([d, 1])
    return runs


@register("maze", "algorithmic", solve_maze)
def maze(rng: random.Random) -> Puzzle:
    """Grid maze: length of / turns along the shortest path from entrance to exit (BFS)."""
    h, w = rng.randint(4, 6), rng.randint(4, 6)
    grid = _carve_maze(rng, h, w)
    H, W = len(grid), len(grid[0])
    entrance = [1, 0]
    if rng.random() < 0.5:
        exit_ = [2 * rng.randrange(h) + 1, W - 1]
        exit_side = "right"
    else:
        exit_ = [H - 1, 2 * rng.randrange(w) + 1]
        exit_side = "bottom"
    grid[entrance[0]][entrance[1]] = 0
    grid[exit_[0]][exit_[1]] = 0
    ask = rng.choice(list(MAZE_QUESTIONS))
    meta = {"maze": grid, "entrance": entrance, "exit": exit_, "ask": ask}
    path, values = _maze_values(meta)
    answer = values[ask]
    left, right = values["left_turns"], values["right_turns"]
    meta.update({"optimal_path": path, "path_length": len(path), "left_turns": left,
                 "right_turns": right, "total_turns": left + right})

    cell, margin = 28, 36
    cv = Canvas(W * cell + 2 * margin, H * cell + 2 * margin)
    for r in range(H):
        for c in range(W):
            x, y = margin + c * cell, margin + r * cell
            cv.rect(x, y, x + cell, y + cell, fill=INK if grid[r][c] else (255, 255, 255),
                    outline=(200, 200, 200), width=0.5)
    ey = margin + entrance[0] * cell + cell / 2
    cv.arrow((4, ey), (margin + cell * 0.8, ey), fill=COLORS["green"], width=5, head=14)
    if exit_side == "right":
        xy = margin + exit_[0] * cell + cell / 2
        cv.arrow((margin + (W - 1) * cell + cell * 0.2, xy), (W * cell + 2 * margin - 4, xy),
                 fill=COLORS["blue"], width=5, head=14)
    else:
        xx = margin + exit_[1] * cell + cell / 2
        cv.arrow((xx, margin + (H - 1) * cell + cell * 0.2), (xx, H * cell + 2 * margin - 4),
                 fill=COLORS["blue"], width=5, head=14)

    question = (f"This is a maze of {H} * {W} cells ({H} rows and {W} columns). The empty cells "
                f"are white and the obstacle cells are black. From an empty cell you can only move "
                f"up, down, left or right to an adjacent empty cell; you cannot move diagonally or "
                f"step into an obstacle. The entrance cell is marked with the green arrow and the "
                f"exit cell with the blue arrow. Consider the shortest path from the entrance to "
                f"the exit. " + MAZE_QUESTIONS[ask])

    def rc(p):
        return f"row {p[0] + 1}, column {p[1] + 1}"

    caption = (f"A {H} x {W} grid maze with black walls and white corridors. A green arrow on the "
               f"left side points into the entrance at {rc(entrance)}; a blue arrow on the "
               f"{exit_side} side marks the exit at {rc(exit_)}.")
    facts = [f"The maze has {H} rows and {W} columns of cells.",
             f"The entrance (green arrow) is on the left edge at {rc(entrance)}.",
             f"The exit (blue arrow) is on the {exit_side} edge at {rc(exit_)}."]
    runs = _runs(path)
    steps = []
    pos = list(entrance)
    heading = None
    for d, n in runs:
        dr, dc = next(k for k, v in MOVES.items() if v == d)
        pos = [pos[0] + dr * n, pos[1] + dc * n]
        if heading is None:
            steps.append(f"From the entrance, go {d} {plural(n, 'cell')} to {rc(pos)}.")
        else:
            hr, hc = next(k for k, v in MOVES.items() if v == heading)
            turn = "right" if hc * dr - hr * dc > 0 else "left"
            steps.append(f"Turn {turn} and go {d} {plural(n, 'cell')} to {rc(pos)}.")
        heading = d
    steps.append(f"This reaches the exit. The maze has no loops, so this is the only and hence the "
                 f"shortest path: {len(path)} cells with {left} left and {right} right turns.")
    steps.append(_answer_step(str(answer)))
    explanation = (f"Breadth-first search from the entrance finds the shortest path of {len(path)} "
                   f"cells; along it there are {left} left turns and {right} right turns.")
    what = {"path_length": "number of cells", "left_turns": "number of left turns",
            "right_turns": "number of right turns", "total_turns": "total number of turns"}[ask]
    deduction = f"The {what} along the shortest path is {answer}."
    if ask == "path_length":
        # On a grid the parity of a path's length is fixed, so +-2 are the plausible misses.
        distractors = number_distractors(rng, answer, [answer + 2, answer - 2],
                                         lo=2, spread=3, step=2)
    else:
        plausible = [v for k, v in values.items() if k != ask and k != "path_length"]
        distractors = number_distractors(rng, answer, plausible, lo=0, spread=2)
    return Puzzle(cv.image(), question, str(answer), distractors, caption, explanation, deduction,
                  facts, steps, meta)


# --------------------------------------------------------------------------------------------
# water_jugs: minimum number of pours (BFS over jug states)
# --------------------------------------------------------------------------------------------


def pour_moves(state, caps):
    """All (i, j, next_state) pours: pour jug i into jug j until i is empty or j is full."""
    out = []
    for i, j in product(range(len(caps)), repeat=2):
        if i == j or state[i] == 0 or state[j] == caps[j]:
            continue
        amt = min(state[i], caps[j] - state[j])
        nxt = list(state)
        nxt[i] -= amt
        nxt[j] += amt
        out.append((i, j, tuple(nxt)))
    return out


def jug_distances(start, caps):
    """BFS from start: {state: (distance, parent_state, (i, j))}."""
    start = tuple(start)
    info = {start: (0, None, None)}
    q = deque([start])
    while q:
        s = q.popleft()
        for i, j, t in pour_moves(s, caps):
            if t not in info:
                info[t] = (info[s][0] + 1, s, (i, j))
                q.append(t)
    return info


def solve_water_jugs(meta: dict) -> str:
    info = jug_distances(meta["start"], meta["capacities"])
    return str(info[tuple(meta["target"])][0])


JUG_NAMES = "ABC"


@register("water_jugs", "algorithmic", solve_water_jugs)
def water_jugs(rng: random.Random) -> Puzzle:
    """Three jugs: minimum number of pours to reach target amounts (BFS)."""
    want = rng.randint(1, 5)  # choose the answer first so answers are not dominated by 1 and 2
    while True:
        caps = sorted(rng.sample(range(2, 11), 3), reverse=True)
        total = rng.randint(max(2, caps[0] // 2), sum(caps) - 2)
        # a uniformly random split of `total` litres that fits the capacities
        start = None
        for _ in range(200):
            a = rng.randint(0, min(caps[0], total))
            b = rng.randint(0, min(caps[1], total - a))
            c = total - a - b
            if 0 <= c <= caps[2]:
                start = (a, b, c)
                break
        if start is None:
            continue
        info = jug_distances(start, caps)
        by_dist = {}
        for s, (d, _, _) in info.items():
            by_dist.setdefault(d, []).append(s)
        if want not in by_dist:
            continue
        d = want
        target = rng.choice(sorted(by_dist[d]))
        break
    seq, s = [], target
    while info[s][1] is not None:
        seq.append((info[s][2], s))
        s = info[s][1]
    seq.reverse()
    answer = d

    unit = 22
    W, H = 420, 330
    cv = Canvas(W, H)
    base = H - 50
    xs = [80, 210, 340]
    jw = 80
    for k in range(3):
        x0, x1 = xs[k] - jw / 2, xs[k] + jw / 2
        top = base - caps[k] * unit
        if start[k]:
            cv.rect(x0, base - start[k] * unit, x1, base, fill=(120, 180, 240), outline=None)
        for t in range(1, caps[k]):
            y = base - t * unit
            cv.line([(x0, y), (x0 + 12, y)], width=1.5)
        cv.line([(x0, top), (x0, base), (x1, base), (x1, top)], width=4)
        cv.text(xs[k], top - 26, JUG_NAMES[k], size=24)
        cv.text(xs[k], base + 24, f"{caps[k]} L", size=20)

    names = [f"jug {JUG_NAMES[k]}" for k in range(3)]
    question = (f"You are given 3 jugs A, B and C (left to right) with capacities {caps[0]}, "
                f"{caps[1]} and {caps[2]} litres. The amount of water each jug holds initially is "
                f"shown in the image; the marks on each jug are 1 litre apart. A single step pours "
                f"water from a non-empty jug into another non-full jug until the first one is "
                f"empty or the second one is full; no water is spilled or added. The objective is "
                f"to reach {target[0]}, {target[1]} and {target[2]} litres in jugs A, B and C "
                f"respectively. What is the minimum number of pouring steps needed to achieve the "
                f"objective?")
    caption = (f"Three jugs A, B and C with capacities {caps[0]}, {caps[1]} and {caps[2]} litres "
               f"holding {start[0]}, {start[1]} and {start[2]} litres of water.")
    facts = [f"Jug {JUG_NAMES[k]} (capacity {caps[k]} litres) contains "
             f"{plural(start[k], 'litre')} of water." for k in range(3)]
    steps = [f"The starting state is ({start[0]}, {start[1]}, {start[2]}) and the target is "
             f"({target[0]}, {target[1]}, {target[2]})."]
    for (i, j), s in seq:
        steps.append(f"Pour {names[i]} into {names[j]}: the jugs now hold "
                     f"({s[0]}, {s[1]}, {s[2]}).")
    steps.append(f"A breadth-first search over all reachable states confirms no shorter sequence "
                 f"exists, so the minimum is {plural(d, 'pour')}.")
    steps.append(_answer_step(str(answer)))
    explanation = (f"Breadth-first search over jug states from ({start[0]}, {start[1]}, "
                   f"{start[2]}) reaches ({target[0]}, {target[1]}, {target[2]}) after {d} pours "
                   f"at the earliest.")
    deduction = f"The minimum number of pouring steps is {answer}."
    meta = {"capacities": caps, "start": list(start), "target": list(target),
            "optimal_states": [list(start)] + [list(s) for _, s in seq], "min_steps": d}
    return Puzzle(cv.image(), question, str(answer),
                  number_distractors(rng, answer, [], lo=1, spread=2),
                  caption, explanation, deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# tower_of_hanoi: minimum moves from an arbitrary legal state (BFS over 3^n states)
# --------------------------------------------------------------------------------------------

PEGS = "ABC"


def hanoi_moves(state):
    """Legal moves from a state: state[d] is the peg of disk d (0 = smallest)."""
    tops = {}
    for d in range(len(state) - 1, -1, -1):  # smallest disk on a peg ends up on top
        tops[state[d]] = d
    out = []
    for src, d in tops.items():
        for dst in range(3):
            if dst != src and (dst not in tops or tops[dst] > d):
                nxt = list(state)
                nxt[d] = dst
                out.append((d, src, dst, tuple(nxt)))
    return out


def hanoi_bfs(state, goal_peg):
    """Shortest move list [(disk, src, dst)] from state to all disks on goal_peg."""
    start, goal = tuple(state), tuple([goal_peg] * len(state))
    prev = {start: None}
    q = deque([start])
    while q:
        s = q.popleft()
        if s == goal:
            break
        for d, a, b, t in hanoi_moves(s):
            if t not in prev:
                prev[t] = (s, (d, a, b))
                q.append(t)
    moves, s = [], goal
    while prev[s] is not None:
        s, mv = prev[s]
        moves.append(mv)
    return moves[::-1]


def solve_tower_of_hanoi(meta: dict) -> str:
    state = [PEGS.index(p) for p in meta["disk_pegs"]]
    return str(len(hanoi_bfs(state, PEGS.index(meta["goal_peg"]))))


DISK_COLORS = ["red", "orange", "yellow", "green", "blue", "purple"]


@register("tower_of_hanoi", "algorithmic", solve_tower_of_hanoi)
def tower_of_hanoi(rng: random.Random) -> Puzzle:
    """Tower of Hanoi from an arbitrary state: minimum moves to gather all disks (BFS)."""
    while True:
        n = rng.randint(3, 5)
        state = [rng.randrange(3) for _ in range(n)]
        goal = rng.randrange(3)
        moves = hanoi_bfs(state, goal)
        if 1 <= len(moves) <= 15:
            break
    answer = len(moves)

    W, H = 448, 260
    cv = Canvas(W, H)
    base = H - 40
    px = [80, 224, 368]
    cv.rect(16, base, W - 16, base + 12, fill=(150, 110, 70), outline=None)
    for p in range(3):
        cv.rect(px[p] - 5, base - 150, px[p] + 5, base, fill=(150, 110, 70), outline=None)
        cv.text(px[p], base + 28, PEGS[p], size=22)
    dh = 24
    for p in range(3):
        disks = sorted((d for d in range(n) if state[d] == p), reverse=True)
        for level, d in enumerate(disks):
            half = 22 + 11 * d
            y1 = base - level * dh
            cv.rect(px[p] - half, y1 - dh + 2, px[p] + half, y1, fill=COLORS[DISK_COLORS[d]],
                    width=1.5)

    def peg_desc(p):
        disks = sorted((d for d in range(n) if state[d] == p), reverse=True)
        if not disks:
            return f"Peg {PEGS[p]} is empty."
        return (f"Peg {PEGS[p]} holds {plural(len(disks), 'disk')}, bottom to top: " +
                ", ".join(f"disk {d + 1} ({DISK_COLORS[d]})" for d in disks) + ".")

    question = (f"The image shows a Tower of Hanoi with 3 pegs A, B and C and {n} disks of "
                f"different sizes, numbered 1 (smallest) to {n} (largest). A move takes the top "
                f"disk of one peg and places it on another peg; a disk may never be placed on top "
                f"of a smaller disk. What is the minimum number of moves needed to stack all {n} "
                f"disks on peg {PEGS[goal]}?")
    caption = f"A Tower of Hanoi with {n} disks. " + " ".join(peg_desc(p) for p in range(3))
    facts = [f"There are 3 pegs labelled A, B and C and {n} disks; larger disks are wider."]
    facts += [peg_desc(p) for p in range(3)]
    steps = [f"Move disk {d + 1} from peg {PEGS[a]} to peg {PEGS[b]}." for d, a, b in moves]
    steps.append(f"All disks are now on peg {PEGS[goal]} after {plural(answer, 'move')}; a "
                 f"breadth-first search over all states confirms no shorter sequence exists.")
    steps.append(_answer_step(str(answer)))
    explanation = (f"Place the largest disk not yet on peg {PEGS[goal]} there, after clearing the "
                   f"smaller disks onto the third peg; repeat for each smaller disk. This takes "
                   f"{answer} moves at minimum.")
    deduction = f"The minimum number of moves to gather all disks on peg {PEGS[goal]} is {answer}."
    meta = {"n_disks": n, "disk_pegs": [PEGS[p] for p in state], "goal_peg": PEGS[goal],
            "optimal_moves": [[d + 1, PEGS[a], PEGS[b]] for d, a, b in moves]}
    return Puzzle(cv.image(), question, str(answer),
                  number_distractors(rng, answer, [2 ** n - 1, answer + 2], lo=1, spread=2),
                  caption, explanation, deduction, facts, steps, meta)


# --------------------------------------------------------------------------------------------
# n_queens: place the remaining queens (backtracking)
# --------------------------------------------------------------------------------------------


def queens_completions(n, placed):
    """All full N-queens solutions extending ``placed`` ({row: col}, rows/cols 0-based)."""
    out = []
    cols = [placed.get(r) for r in range(n)]

    def ok(r, c, assign):
        return all(c != c2 and abs(c - c2) != abs(r - r2)
                   for r2, c2 in enumerate(assign) if c2 is not None and r2 != r)

    def rec(r, assign):
        if r == n:
            out.append(list(assign))
            return
        if assign[r] is not None:
            if ok(r, assign[r], assign):
                rec(r + 1, assign)
            return
        for c in range(n):
            if ok(r, c, assign):
                assign[r] = c
                rec(r + 1, assign)
                assign[r] = None

    if all(ok(r, c, cols) for r, c in placed.items()):
        rec(0, cols)
    return out


def cell_name(r, c, n):
    """Chess-style name: columns a.. from the left, rows 1..n from the bottom (r 0 = top)."""
    return f"{'abcdefgh'[c]}{n - r}"


def cells_text(cells, n):
    names = sorted(cell_name(r, c, n) for r, c in cells)
    return join_words(names)


def solve_n_queens(meta: dict) -> str:
    n = meta["n"]
    placed = {}
    for name in meta["queens"]:
        c, r = "abcdefgh".index(name[0]), n - int(name[1:])
        placed[r] = c
    sols = queens_completions(n, placed)
    if len(sols) != 1:
        raise ValueError(f"n_queens: {len(sols)} completions")
    sol = sols[0]
    return cells_text([(r, sol[r]) for r in range(n) if r not in placed], n)


def _attacker(r, c, placed, n):
    for r2, c2 in placed.items():
        if c2 == c or abs(c2 - c) == abs(r2 - r):
            return cell_name(r2, c2, n)
    return None


@register("n_queens", "algorithmic", solve_n_queens)
def n_queens(rng: random.Random) -> Puzzle:
    """N-queens with 2 queens left to place; the completion is unique (backtracking)."""
    while True:
        n = rng.randint(5, 8)
        sols = queens_completions(n, {})
        sol = rng.choice(sols)
        free_rows = sorted(rng.sample(range(n), 2))
        placed = {r: sol[r] for r in range(n) if r not in free_rows}
        if len(queens_completions(n, placed)) == 1:
            break
    missing = [(r, sol[r]) for r in free_rows]
    answer = cells_text(missing, n)
    (r1, c1), (r2, c2) = missing
    swapped = [(r1, c2), (r2, c1)]

    cell, margin = 44, 30
    size = n * cell + 2 * margin
    cv = Canvas(size, size)
    for r in range(n):
        for c in range(n):
            x, y = margin + c * cell, margin + r * cell
            cv.rect(x, y, x + cell, y + cell,
                    fill=(240, 217, 181) if (r + c) % 2 == 0 else (181, 136, 99), outline=None)
            if placed.get(r) == c:
                qx, qy = x + cell / 2, y + cell / 2
                crown = [(qx - 14, qy + 10), (qx - 16, qy - 10), (qx - 7, qy - 1), (qx, qy - 15),
                         (qx + 7, qy - 1), (qx + 16, qy - 10), (qx + 14, qy + 10)]
                cv.polygon(crown, fill=INK, outline=(250, 250, 250), width=1.5)
                cv.rect(qx - 15, qy + 10, qx + 15, qy + 15, fill=INK, outline=None)
    cv.rect(margin, margin, margin + n * cell, margin + n * cell, fill=None, width=2)
    for i in range(n):
        cv.text(margin + i * cell + cell / 2, margin + n * cell + 15, "abcdefgh"[i], size=18)
        cv.text(margin / 2, margin + i * cell + cell / 2, n - i, size=18)

    queens = sorted(cell_name(r, c, n) for r, c in placed.items())
    question = (f"The goal is to place {n} queens on a {n} x {n} chessboard so that no two queens "
                f"attack each other, i.e. no two share a row, a column or a diagonal. The image "
                f"shows {n - 2} queens already placed; columns are labelled a to "
                f"{'abcdefgh'[n - 1]} from left to right and rows 1 to {n} from bottom to top. "
                f"Where must the remaining 2 queens be placed?")
    caption = (f"A {n} x {n} chessboard with {n - 2} queens at {join_words(queens)}.")
    facts = [f"The board has {n} columns (a to {'abcdefgh'[n - 1]}) and {n} rows (1 to {n})."]
    facts += [f"A queen is at {q}." for q in queens]
    empty_rows = sorted(n - r for r in free_rows)
    empty_cols = sorted("abcdefgh"[c] for c in (c1, c2))
    sw = [cell_name(r, c, n) for r, c in swapped]
    # The other pairing must clash with a placed queen: a clash between the two new queens
    # would be a shared diagonal, which the answer's pairing would then share as well.
    bad = next((cell_name(r, c, n), _attacker(r, c, placed, n)) for r, c in swapped
               if _attacker(r, c, placed, n))
    steps = [f"Rows {empty_rows[0]} and {empty_rows[1]} have no queen yet.",
             f"Columns {empty_cols[0]} and {empty_cols[1]} have no queen yet.",
             f"Each remaining queen needs its own empty row and column, so the candidates are "
             f"{answer}, or {join_words(sorted(sw))}.",
             f"{bad[0]} is attacked by the queen at {bad[1]}, so {join_words(sorted(sw))} fails.",
             f"{answer} share no row, column or diagonal with any queen or with each other.",
             _answer_step(answer)]
    explanation = (f"The two remaining queens must go in the empty rows {empty_rows[0]} and "
                   f"{empty_rows[1]} and the empty columns {empty_cols[0]} and {empty_cols[1]}; "
                   f"only one of the two pairings avoids all diagonals.")
    deduction = f"The remaining queens must be placed at {answer}."
    # Distractors: the other pairing, then near misses that move one queen by a row or column.
    distractors = [join_words(sorted(sw))]
    occupied = {(r, c) for r, c in placed.items()}
    near = []
    for (ra, ca), (rb, cb) in ((missing[0], missing[1]), (missing[1], missing[0])):
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            r, c = ra + dr, ca + dc
            if 0 <= r < n and 0 <= c < n and (r, c) not in occupied and (r, c) != (rb, cb):
                near.append(cells_text([(r, c), (rb, cb)], n))
    rng.shuffle(near)
    distractors += near
    meta = {"n": n, "queens": queens, "solution": [cell_name(r, sol[r], n) for r in range(n)]}
    return Puzzle(cv.image(), question, answer, distractors, caption, explanation, deduction,
                  facts, steps, meta)


# --------------------------------------------------------------------------------------------
# number_slide: 8-puzzle, minimum moves to the goal (BFS)
# --------------------------------------------------------------------------------------------

SLIDE_GOAL = (1, 2, 3, 4, 5, 6, 7, 8, 0)


def slide_neighbors(state):
    """(tile moved, direction the tile moves, next state) for each legal slide (0 = blank)."""
    b = state.index(0)
    r, c = divmod(b, 3)
    out = []
    for dr, dc, d in ((-1, 0, "down"), (1, 0, "up"), (0, -1, "right"), (0, 1, "left")):
        nr, nc = r + dr, c + dc  # the tile at (nr, nc) slides into the blank
        if 0 <= nr < 3 and 0 <= nc < 3:
            t = nr * 3 + nc
            nxt = list(state)
            nxt[b], nxt[t] = nxt[t], 0
            out.append((state[t], d, tuple(nxt)))
    return out


def slide_solve(start):
    """Shortest list of (tile, direction) slides from start to SLIDE_GOAL (BFS)."""
    start = tuple(start)
    prev = {start: None}
    q = deque([start])
    while q:
        s = q.popleft()
        if s == SLIDE_GOAL:
            break
        for tile, d, t in slide_neighbors(s):
            if t not in prev:
                prev[t] = (s, (tile, d))
                q.append(t)
    moves, s = [], SLIDE_GOAL
    while prev[s] is not None:
        s, mv = prev[s]
        moves.append(mv)
    return moves[::-1]


def solve_number_slide(meta: dict) -> str:
    return str(len(slide_solve([v for row in meta["board"] for v in row])))


@register("number_slide", "algorithmic", solve_number_slide)
def number_slide(rng: random.Random) -> Puzzle:
    """3x3 sliding tile puzzle: minimum number of slides to the goal (BFS)."""
    while True:
        state, last = SLIDE_GOAL, None
        for _ in range(rng.randint(3, 11)):
            options = [t for t in slide_neighbors(state) if t[2] != last]
            last = state
            state = rng.choice(options)[2]
        moves = slide_solve(state)
        if len(moves) >= 2:
            break
    answer = len(moves)
    board = [list(state[i:i + 3]) for i in (0, 3, 6)]

    cv = Canvas(360, 360)
    x0, cell = 30, 100
    for r in range(3):
        for c in range(3):
            v = board[r][c]
            x, y = x0 + c * cell, x0 + r * cell
            if v:
                cv.rect(x + 4, y + 4, x + cell - 4, y + cell - 4, fill=(245, 222, 170), width=3)
                cv.text(x + cell / 2, y + cell / 2, v, size=44)
            else:
                cv.rect(x + 4, y + 4, x + cell - 4, y + cell - 4, fill=(90, 90, 90), outline=None)
    cv.rect(x0, x0, x0 + 3 * cell, x0 + 3 * cell, fill=None, width=4)

    def row_text(row):
        return ", ".join("empty" if v == 0 else str(v) for v in row)

    question = ("The image shows a 3x3 sliding puzzle with 8 numbered tiles and one empty space. "
                "A move slides one tile that is next to the empty space (up, down, left or right) "
                "into it. What is the minimum number of moves needed to reach the goal: 1, 2, 3 in "
                "the top row, 4, 5, 6 in the middle row, and 7, 8 followed by the empty space in "
                "the bottom row?")
    caption = ("A 3x3 sliding puzzle. " +
               " ".join(f"The {w} row is {row_text(board[i])}."
                        for i, w in enumerate(["top", "middle", "bottom"])))
    facts = [f"The {w} row, left to right, is {row_text(board[i])}."
             for i, w in enumerate(["top", "middle", "bottom"])]
    steps = [f"Slide tile {t} {d} into the empty space." for t, d in moves]
    steps.append(f"The tiles are now in the goal order after {plural(answer, 'move')}; a "
                 f"breadth-first search confirms no shorter sequence exists.")
    steps.append(_answer_step(str(answer)))
    explanation = (f"Breadth-first search over board states finds that the goal is first reached "
                   f"after {answer} moves.")
    deduction = f"The minimum number of moves is {answer}."
    # A blank's position fixes the parity of any solution length, so +-2 are the plausible misses.
    distractors = number_distractors(rng, answer, [answer + 2, answer - 2, answer + 4],
                                     lo=1, spread=3, step=2)
    meta = {"board": board, "goal": [list(SLIDE_GOAL[i:i + 3]) for i in (0, 3, 6)],
            "optimal_moves": [[t, d] for t, d in moves]}
    return Puzzle(cv.image(), question, str(answer), distractors, caption, explanation,
                  deduction, facts, steps, meta)
