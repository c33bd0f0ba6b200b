"""A model-free verifier: premises checked against the description by word matching.

`LexicalVerifier` is a `vlprm.evpv.verify.Verifier`: EVPV's verify stage hands it the
description and the premises directly (no prompt, no model), so the rest of the pipeline
(checklist, reliability, gate) runs without a VLM: for dry runs, for CPU tests of the
ablations, and as a floor a model verifier should beat. Rule per premise
(`check_premise`): supported if its content words appear in order in one fact of the
description; contradicted ("major") if some fact has all its subject words (everything but
numbers, colours, sizes, shapes) but not its words in order; otherwise unverifiable.
"""

from __future__ import annotations

import re
from typing import Sequence

from vlprm.evpv.description import ImageDescription
from vlprm.evpv.verify import Finding

_WORD_RE = re.compile(r"\d+(?:\.\d+)?|[a-z]+")
_STOP = {"the", "a", "an", "is", "are", "of", "in", "on", "at", "and", "to", "with", "has", "have", "its", "it",
         "this", "that", "there", "from", "by", "as", "be", "which", "each", "image", "shows", "contains",
         "so", "we", "can", "see", "for", "one", "both", "also", "marked", "while", "than", "then"}
ATTRIBUTE_WORDS = {
    "red", "orange", "yellow", "green", "blue", "purple", "black", "white", "gray", "grey", "pink", "brown",
    "small", "medium", "large", "tall", "short", "big", "tiny",
    "circle", "circles", "square", "squares", "triangle", "triangles", "star", "stars", "hexagon", "hexagons",
    "pentagon", "pentagons", "diamond", "diamonds", "rectangle", "rectangles", "heptagon", "octagon",
    "above", "below", "inside", "outside", "larger", "smaller", "clockwise", "counterclockwise",
}


def _words(text: str) -> list[str]:
    return [w for w in _WORD_RE.findall(text.lower()) if w not in _STOP]


def _subject(words: list[str]) -> set[str]:
    """Subject words: everything but numbers and ATTRIBUTE_WORDS."""
    return {w for w in words if w not in ATTRIBUTE_WORDS and not w[0].isdigit()}


def _is_subsequence(a: list[str], b: list[str]) -> bool:
    it = iter(b)
    return all(w in it for w in a)


def check_premise(premise: str, facts: Sequence[str]) -> tuple[str, str]:
    """(status, reason) of one premise against the description's facts.

    supported: the premise's words appear, in order, in one fact; contradicted: a fact has all
    the premise's subject words but not its words in order (another number, colour, side...);
    unverifiable: no fact has its subject words.
    """
    p = _words(premise)
    p_subj = _subject(p)
    same_subject = []
    for f in facts:
        fw = _words(f)
        if p and _is_subsequence(p, fw):
            return "supported", f"matches: {f}"
        if p_subj and p_subj <= _subject(fw):
            same_subject.append(f)
    if not same_subject:
        return "unverifiable", "no fact of the description is about this"
    return "contradicted", f"the description says: {same_subject[0]}"


class LexicalVerifier:
    """Checks premises by word matching (see the module docstring); a contradiction is "major"."""

    name = "lexical"
    model = "lexical-verifier-v1"

    def verify(self, description: ImageDescription, premises: Sequence[tuple[int, str]]) -> list[Finding]:
        facts = [t for _, _, t in description.facts()]
        out = []
        for step, premise in premises:
            status, reason = check_premise(premise, facts)
            if status != "supported":
                out.append(Finding(step=step, status=status, premise=premise,
                                   severity="major" if status == "contradicted" else None, reason=reason))
        return out
