"""Procedural puzzles: CLI output format, determinism, de-duplication, and answers re-solved here.

The algorithmic answers are re-derived with code written independently of the generators
(own BFS, closed-form Tower of Hanoi recursion, datetime arithmetic, direct queen checks).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest
from PIL import Image

from vlprm.puzzles import ABSTRACT, ALGORITHMIC, FAMILIES, generate_puzzles, make_puzzle
from vlprm.puzzles.base import Puzzle, PuzzleCheckError, PuzzleFamily
from vlprm.puzzles.generate import generate_family, main

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_KEYS = ["image", "question", "options", "answer", "caption", "explanation", "deduction"]
OUR_KEYS = ["perception_facts", "reasoning_steps", "family", "id", "source", "kind", "metadata"]
SIZE_FAMILIES = {"size_cycle", "size_grid"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlprm.puzzles", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def read_records(out: Path) -> list[dict]:
    records = []
    for path in sorted(out.glob("*.json")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            assert path.stem == rec["family"], f"{path.name}: record {rec['id']} in the wrong file"
            records.append(rec)
    return records


def all_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("puzzles") / "seed0"
    proc = run_cli("generate", "--out", str(out), "--n", "40", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    return out, proc


# ------------------------------------------------------------------------------------------
# CLI and on-disk format
# ------------------------------------------------------------------------------------------


def test_cli_writes_puzzlevqa_layout(generated):
    out, proc = generated
    records = read_records(out)
    assert len(records) == 40
    assert str(out.resolve()) in proc.stdout and "wrote 40 puzzles" in proc.stdout
    n_families = len(FAMILIES)
    # round-robin: every family gets 40 // n or 40 // n + 1 items
    counts = {}
    for r in records:
        counts[r["family"]] = counts.get(r["family"], 0) + 1
    assert set(counts) == set(FAMILIES)
    assert set(counts.values()) <= {40 // n_families, 40 // n_families + 1}
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for r in records:
        assert list(r)[:7] == OFFICIAL_KEYS and set(OUR_KEYS) <= set(r)
        assert r["source"] == "vlprm-puzzles"
        assert r["kind"] == FAMILIES[r["family"]].kind
        assert r["image"] == f"images/{r['family']}/{r['id']}.png"
        with Image.open(out / r["image"]) as im:
            im.load()
            assert im.format == "PNG" and im.mode == "RGB"
            assert max(im.size) <= 448 and min(im.size) >= 160
        expected = 3 if r["family"] in SIZE_FAMILIES else 4
        assert len(r["options"]) == expected, r["id"]
        assert len(set(r["options"])) == expected, f"{r['id']}: duplicate options {r['options']}"
        assert all(isinstance(o, str) and o for o in r["options"])
        assert r["answer"] in r["options"]
        for key in ("caption", "explanation", "deduction", "question"):
            assert isinstance(r[key], str) and len(r[key]) > 10, (r["id"], key)
        for key in ("perception_facts", "reasoning_steps"):
            assert r[key] and all(isinstance(s, str) and s for s in r[key]), (r["id"], key)
        assert r["answer"] in r["reasoning_steps"][-1]
        assert isinstance(r["metadata"], dict) and r["metadata"]


def test_same_seed_is_byte_identical_and_other_seed_differs(generated, tmp_path):
    out, _ = generated
    again, other = tmp_path / "again", tmp_path / "other"
    assert run_cli("generate", "--out", str(again), "--n", "40", "--seed", "0",
                   "--no-progress").returncode == 0
    assert run_cli("generate", "--out", str(other), "--n", "40", "--seed", "1",
                   "--no-progress").returncode == 0
    first, second, third = all_bytes(out), all_bytes(again), all_bytes(other)
    assert len(first) == 40 + len(FAMILIES)  # 40 images + one JSONL per family
    assert first == second
    assert first.keys() == third.keys()
    assert sum(first[k] != third[k] for k in first) >= 40  # essentially everything changes


def test_types_selection_and_rerun_cleans_stale_images(tmp_path):
    out = tmp_path / "sel"
    records = generate_puzzles(out, 6, seed=3, types=["maze", "clock"])
    assert [r["family"] for r in records] == ["maze", "clock"] * 3
    assert sorted(p.name for p in out.glob("*.json")) == ["clock.json", "maze.json"]
    generate_puzzles(out, 2, seed=3, types=["maze", "clock"])
    assert sorted(p.name for p in (out / "images" / "maze").iterdir()) == ["maze_0000.png"]
    # a smaller run is a prefix of a larger one: item i never depends on n
    assert json.loads((out / "maze.json").read_text().splitlines()[0]) == records[0]


def test_cli_list_help_and_errors(tmp_path, capsys):
    proc = run_cli("list")
    assert proc.returncode == 0
    for name in FAMILIES:
        assert name in proc.stdout
    for argv in (["--help"], ["generate", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    assert "--types" in capsys.readouterr().out
    assert main(["generate", "--out", str(tmp_path / "x"), "--n", "2", "--types", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown puzzle families"):
        generate_puzzles(tmp_path / "y", 2, types=["nope"])


# ------------------------------------------------------------------------------------------
# Registry, per-family generation, de-duplication
# ------------------------------------------------------------------------------------------


def test_registry_has_enough_families():
    assert len(ABSTRACT) >= 10 and len(ALGORITHMIC) >= 4
    assert set(ABSTRACT) | set(ALGORITHMIC) == set(FAMILIES)
    for name, fam in FAMILIES.items():
        assert callable(fam) and fam.name == name
        assert fam.n_options == (3 if name in SIZE_FAMILIES else 4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_generates_distinct_self_consistent_items(family):
    items = list(generate_family(family, 5, seed=11))
    keys = {(r["question"], r["answer"], png) for _, r, png in items}
    assert len(keys) == 5
    fam = FAMILIES[family]
    for _, rec, _ in items:
        meta = json.loads(json.dumps(rec["metadata"]))  # solvers must work on stored JSON
        assert fam.solve(meta) == rec["answer"], rec["id"]
        assert len(set(rec["options"])) == fam.n_options and rec["answer"] in rec["options"]
    # generation is a pure function of (seed, family, index)
    again = make_puzzle(family, 11, 0)
    assert again.answer == items[0][1]["answer"] and again.options == items[0][1]["options"]


def test_duplicates_are_redrawn_and_exhaustion_is_reported(monkeypatch, tmp_path):
    def tiny_space(rng):  # only two distinct puzzles exist
        answer = rng.choice(["x", "y"])
        return Puzzle(Image.new("RGB", (200, 200)), "Pick?", answer, ["p", "q", "r"],
                      "c", "e", "d", ["f"], [f"The answer is {answer}."], {"a": answer})

    fam = PuzzleFamily("tiny_space", "abstract", 4, tiny_space, lambda m: m["a"])
    monkeypatch.setitem(FAMILIES, "tiny_space", fam)
    items = list(generate_family("tiny_space", 2, seed=0))
    assert {r["answer"] for _, r, _ in items} == {"x", "y"}
    with pytest.raises(PuzzleCheckError, match="no new distinct puzzle"):
        list(generate_family("tiny_space", 3, seed=0))
    summary: dict = {}
    records = generate_puzzles(tmp_path, 6, types=["tiny_space", "clock"], summary=summary)
    assert "tiny_space" in summary["failures"] and [r["family"] for r in records] == ["clock"] * 3


def test_self_check_rejects_a_wrong_answer(monkeypatch):
    wrong = PuzzleFamily("clock", "algorithmic", 4, FAMILIES["clock"].generate,
                         lambda meta: "13:99")
    monkeypatch.setitem(FAMILIES, "clock", wrong)
    with pytest.raises(PuzzleCheckError, match="solver recomputes"):
        make_puzzle("clock", 0, 0)


# ------------------------------------------------------------------------------------------
# Algorithmic answers re-solved independently
# ------------------------------------------------------------------------------------------


def _records(family, n=8, seed=5):
    return [r for _, r, _ in generate_family(family, n, seed)]


def test_maze_answers_resolved_independently():
    for r in _records("maze"):
        m = r["metadata"]
        grid, start, goal = m["maze"], tuple(m["entrance"]), tuple(m["exit"])
        # the arrows sit on the border, in open cells
        assert grid[start[0]][start[1]] == 0 and grid[goal[0]][goal[1]] == 0
        assert start[1] == 0 and (goal[1] == len(grid[0]) - 1 or goal[0] == len(grid) - 1)
        dist = {start: 1}
        parent = {start: None}
        q = deque([start])
        while q:
            y, x = q.popleft()
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < len(grid) and 0 <= nx < len(grid[0]) and grid[ny][nx] == 0 \
                        and (ny, nx) not in dist:
                    dist[(ny, nx)] = dist[(y, x)] + 1
                    parent[(ny, nx)] = (y, x)
                    q.append((ny, nx))
        path = [goal]
        while parent[path[-1]]:
            path.append(parent[path[-1]])
        path.reverse()
        headings = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(path, path[1:])]
        # right turn = heading rotated clockwise on screen: (dy, dx) -> (dx, -dy)
        rights = sum(h2 == (h1[1], -h1[0]) for h1, h2 in zip(headings, headings[1:]))
        lefts = sum(h2 == (-h1[1], h1[0]) for h1, h2 in zip(headings, headings[1:]))
        expected = {"path_length": dist[goal], "left_turns": lefts, "right_turns": rights,
                    "total_turns": lefts + rights}[m["ask"]]
        assert r["answer"] == str(expected), r["id"]


def test_water_jugs_answers_resolved_independently():
    for r in _records("water_jugs"):
        m = r["metadata"]
        caps, start, target = m["capacities"], tuple(m["start"]), tuple(m["target"])
        assert sum(start) == sum(target) and all(0 <= v <= c for v, c in zip(start, caps))
        seen, frontier, steps = {start}, [start], 0
        while target not in seen:
            steps += 1
            nxt = []
            for s in frontier:
                for i in range(3):
                    for j in range(3):
                        if i != j:
                            amount = min(s[i], caps[j] - s[j])
                            t = list(s)
                            t[i] -= amount
                            t[j] += amount
                            t = tuple(t)
                            if t not in seen:
                                seen.add(t)
                                nxt.append(t)
            assert nxt, f"{r['id']}: target unreachable"
            frontier = nxt
        assert r["answer"] == str(steps), r["id"]


def test_tower_of_hanoi_answers_match_closed_form():
    def moves_to(disks, peg):
        """Min moves to gather disks[0..k) (disks[i] = peg of disk i+1) onto peg."""
        if not disks:
            return 0
        *smaller, largest = disks
        if largest == peg:
            return moves_to(smaller, peg)
        spare = ({"A", "B", "C"} - {largest, peg}).pop()
        return moves_to(smaller, spare) + 1 + (2 ** len(smaller) - 1)

    for r in _records("tower_of_hanoi"):
        m = r["metadata"]
        assert r["answer"] == str(moves_to(m["disk_pegs"], m["goal_peg"])), r["id"]


def test_clock_answers_match_datetime():
    for r in _records("clock"):
        m = r["metadata"]
        now = dt.datetime(2024, 1, 1, m["hour"] % 12, m["minute"])
        delta = dt.timedelta(hours=m["delta_hours"], minutes=m["delta_minutes"])
        t = now + delta if m["direction"] == "add" else now - delta
        assert r["answer"] == f"{t.hour % 12 or 12}:{t.minute:02d}", r["id"]


def test_n_queens_answer_completes_the_board():
    for r in _records("n_queens"):
        n = r["metadata"]["n"]
        cells = r["metadata"]["queens"] + r["answer"].split(" and ")
        pos = [("abcdefgh".index(c[0]), int(c[1:])) for c in cells]
        assert len(pos) == n
        for i, (c1, r1) in enumerate(pos):
            for c2, r2 in pos[i + 1:]:
                assert c1 != c2 and r1 != r2 and abs(c1 - c2) != abs(r1 - r2), r["id"]
        # no distractor is also a valid completion
        for opt in r["options"]:
            if opt == r["answer"]:
                continue
            extra = [("abcdefgh".index(c[0]), int(c[1:])) for c in opt.split(" and ")]
            full = [("abcdefgh".index(c[0]), int(c[1:])) for c in r["metadata"]["queens"]] + extra
            ok = len({c for c, _ in full}) == n and len({y for _, y in full}) == n and all(
                abs(a[0] - b[0]) != abs(a[1] - b[1]) for i, a in enumerate(full)
                for b in full[i + 1:])
            assert not ok, f"{r['id']}: distractor {opt} is also a solution"
