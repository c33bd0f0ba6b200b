"""Split a policy solution into steps (perception vs reasoning) and write steps back as text.

Two output formats, defined in `vlprm.prompts`:

- structured: a "### Perception" section then a "### Reasoning" section, steps marked
  "Step k:" (numbered across both sections) and separated by a blank line. Step boundaries
  are the markers, so one step may span several paragraphs (a trailing "The answer is ..."
  paragraph belongs to the last step). Markers are not part of `Step.text`.
- plain: steps are the blank-line separated paragraphs, kept verbatim.

`join_steps` is the inverse of `split_steps`: `split_steps(join_steps(steps, s), s)` gives the
same texts and kinds. `step_prefix` is the text of the first k steps exactly as the policy
writes them, ready for Monte Carlo continuation.
"""

from __future__ import annotations

import re

from vlprm.data.schema import Step
from vlprm.prompts import (PERCEPTION_HEADER, REASONING_HEADER, STEP_MARKER,
                           STEP_SEPARATOR)

STYLES = ("structured", "plain", "auto")

# Header lines the policy (or a messy imitation of it) may write, by section kind.
_HEADER_NAMES = {
    "perception": {"perception", "visual perception", "perception steps", "visual elements",
                   "visual observations", "observations", "observation", "image description",
                   "visual facts", "visual description"},
    "reasoning": {"reasoning", "reasoning steps", "step-by-step reasoning", "solution", "analysis"},
    "answer": {"answer", "final answer", "conclusion"},
}

# "Step 3:", "**Step 3:**", "**Step 3**:", "### Step 3", "Step 3." at a line start. Closing
# bold is only eaten when the marker opened with bold, so step text starting with "**" survives.
_STEP_RE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]+)?(?P<bold>\*\*|__)?[ \t]*step[ \t]*(?P<num>\d+)[ \t]*"
    r"(?(bold)(?:\*\*|__)?[ \t]*[:.)\-\u2013\u2014]?[ \t]*(?:\*\*|__)?"
    r"|(?:[:.)\-\u2013\u2014]|(?=\n)|\Z))[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_ITEM_RE = re.compile(r"^[ \t]*(?:[-*\u2022]|\d{1,2}[.)])[ \t]+")
_BLANK_RE = re.compile(r"\n[ \t]*\n")


def _header_kind(line: str) -> str | None:
    """The section kind of a header-only line ("### Perception", "**Reasoning:**"), else None."""
    s = line.strip()
    if not s or len(s) > 60:
        return None
    s = s.lstrip("#").strip().strip("*_").strip().rstrip(":").strip().strip("*_").strip().rstrip(":").lower()
    for kind, names in _HEADER_NAMES.items():
        if s in names:
            return kind
    return None


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _BLANK_RE.split(text) if p.strip()]


def _list_items(text: str) -> list[str]:
    """Bullet / numbered-list items of one paragraph, markers removed (preamble kept as an item)."""
    items: list[str] = []
    current: list[str] | None = None
    pre: list[str] = []
    for line in text.split("\n"):
        m = _ITEM_RE.match(line)
        if m:
            if current is not None:
                items.append("\n".join(current).strip())
            current = [line[m.end():]]
        elif current is not None:
            current.append(line)
        else:
            pre.append(line)
    if current is not None:
        items.append("\n".join(current).strip())
    head = "\n".join(pre).strip()
    return ([head] if head else []) + [i for i in items if i]


def _split_section(text: str) -> list[str]:
    """Steps of one section: "Step k:" markers if any, else paragraphs, else list items."""
    text = text.strip()
    if not text:
        return []
    marks = list(_STEP_RE.finditer(text))
    if marks:
        pieces = [text[: marks[0].start()]]
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            pieces.append(text[m.end(): end])
        return [p.strip() for p in pieces if p.strip()]  # an empty "Step 5:" is dropped
    paras = _paragraphs(text)
    if len(paras) == 1:
        items = _list_items(paras[0])
        if len(items) >= 2:
            return items
    return paras


def _sections(text: str) -> list[tuple[str | None, str]]:
    """(kind or None before the first header, text) for each header-delimited section."""
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in text.split("\n"):
        kind = _header_kind(line)
        if kind:
            out.append((kind, []))
        else:
            out[-1][1].append(line)
    return [(k, "\n".join(lines)) for k, lines in out]


def _split_structured(text: str) -> list[Step]:
    secs = _sections(text)
    if len(secs) == 1:  # no headers: one reasoning section (markers, else paragraphs)
        return [Step(text=t, kind="reasoning") for t in _split_section(secs[0][1])]
    # Text before the first header belongs with the section that follows it.
    first = next((k for k, _ in secs[1:] if k in ("perception", "reasoning")), "reasoning")
    steps: list[Step] = []
    for kind, body in secs:
        kind = kind or first
        pieces = _split_section(body)
        if kind == "answer":
            # A "Final answer" section completes the last step rather than being a step.
            if pieces and steps:
                steps[-1].text = steps[-1].text + STEP_SEPARATOR + STEP_SEPARATOR.join(pieces)
                continue
            kind = "reasoning"
        steps.extend(Step(text=p, kind=kind) for p in pieces)
    return steps


def detect_style(text: str) -> str:
    """"structured" if the text has section headers or "Step k:" markers, else "plain"."""
    if any(_header_kind(line) in ("perception", "reasoning") for line in text.split("\n")):
        return "structured"
    return "structured" if _STEP_RE.search(text) else "plain"


def merge_steps(steps: list[Step], max_steps: int | None) -> list[Step]:
    """Merge adjacent steps into at most max_steps groups of near-equal size, keeping order.

    Earlier groups take the remainder (20 steps, cap 8 -> sizes 3,3,3,3,2,2,2,2). A group is
    perception only if all its members are; member texts are joined with a blank line.
    """
    n = len(steps)
    if max_steps is None or n <= max_steps:
        return list(steps)
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    q, r = divmod(n, max_steps)
    sizes = [q + 1] * r + [q] * (max_steps - r)
    out, i = [], 0
    for size in sizes:
        group = steps[i: i + size]
        i += size
        kind = "perception" if all(s.kind == "perception" for s in group) else "reasoning"
        out.append(Step(text=STEP_SEPARATOR.join(s.text for s in group), kind=kind))
    return out


def split_steps(text: str, style: str = "structured", max_steps: int | None = None) -> list[Step]:
    """Split a solution into `Step`s with kind "perception" or "reasoning".

    structured: steps under the perception header are perception, under the reasoning header
    reasoning; "Step k:" markers (plain or bold) delimit steps and are removed; without markers a
    section splits on blank lines, and a single paragraph that is a bullet/numbered list splits
    into its items. No headers at all: everything is reasoning. plain: blank-line paragraphs,
    verbatim, all reasoning (unless the text has section headers; then it is parsed as
    structured). auto: structured if `detect_style` says so, else plain.
    max_steps caps the count by merging adjacent steps (`merge_steps`).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return []
    if style == "auto":
        style = detect_style(text)
    if style == "plain" and not any(_header_kind(line) in ("perception", "reasoning") for line in text.split("\n")):
        steps = [Step(text=p, kind="reasoning") for p in _paragraphs(text)]
    else:
        steps = _split_structured(text)
    return merge_steps(steps, max_steps)


def join_steps(steps: list[Step], style: str = "structured") -> str:
    """Write steps as the policy would: the inverse of `split_steps` for the same style.

    structured: a section header wherever the kind changes (so "### Perception" then
    "### Reasoning" for a normal solution), each step prefixed "Step i: " (numbered from 1
    across sections), steps separated by a blank line. plain: texts separated by a blank line
    (kinds are not written).
    """
    if style == "plain":
        return STEP_SEPARATOR.join(s.text.strip() for s in steps)
    if style != "structured":
        raise ValueError(f"join_steps style must be 'structured' or 'plain', got {style!r}")
    parts, prev = [], None
    for i, s in enumerate(steps, 1):
        kind = "perception" if s.kind == "perception" else "reasoning"
        piece = STEP_MARKER.format(index=i) + s.text.strip()
        if kind != prev:
            piece = (PERCEPTION_HEADER if kind == "perception" else REASONING_HEADER) + "\n" + piece
        parts.append(piece)
        prev = kind
    return STEP_SEPARATOR.join(parts)


def step_prefix(steps: list[Step], k: int, style: str = "structured") -> str:
    """Text of the first k steps, ending with the step separator so a model continues with step k+1.

    k = 0 gives "" (generate from scratch). The structured prefix does not write the next
    "Step k+1:" marker, so the model may still open the reasoning section first.
    """
    if not 0 <= k <= len(steps):
        raise ValueError(f"k must be in 0..{len(steps)}, got {k}")
    if k == 0:
        return ""
    return join_steps(steps[:k], style) + STEP_SEPARATOR
