"""A model-free verifier: premises checked against the description by word matching.

`LexicalVerifier` is a `Generator` that answers EVPV's verification prompt itself, so the whole
pipeline (prompt, reply parsing, caching, reliability, gate) runs without a VLM: for dry runs,
for CPU tests of the ablations, and as a floor a model verifier should beat. Rule per premise
(`check_premise`): supported if its content words appear in order in one fact of the
description; contradicted ("major") if some fact has all its subject words (everything but
numbers, colours, sizes, shapes) but not its words in order; otherwise unverifiable.
"""

from __future__ import annotations

import json
import re
from typing import Sequence

from vlprm.backends.base import ChatRequest, Completion, GenerationResult, Generator, SamplingConfig
from vlprm.evpv.description import ImageDescription

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


def _parse_prompt(text: str) -> tuple[ImageDescription, list[tuple[int, str]]] | None:
    m = re.search(r"### Image description:\n(.*?)\n\n### Visual premises[^\n]*\n(.*?)(?:\n\n|$)", text, re.S)
    if not m:
        return None
    try:
        desc = ImageDescription.from_dict(json.loads(m.group(1)))
    except json.JSONDecodeError:
        return None
    premises = []
    for line in m.group(2).splitlines():
        pm = re.match(r"Step (\d+): (.*)", line.strip())
        if pm:
            premises.append((int(pm.group(1)), pm.group(2)))
    return desc, premises


class LexicalVerifier(Generator):
    """Answers EVPV verification prompts by word matching (see the module docstring)."""

    name = "lexical"
    model = "lexical-verifier-v1"

    def generate(self, requests: Sequence[ChatRequest], sampling: SamplingConfig, *, progress: bool = True,
                 desc: str | None = None) -> list[GenerationResult]:
        out = []
        for req in requests:
            text = "\n".join(p.get("text", "") for m in req.messages if m["role"] == "user"
                             for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
            got = _parse_prompt(text)
            if got is None:
                out.append(GenerationResult(error="LexicalVerifier only answers EVPV verification prompts",
                                            request_id=req.id))
                continue
            desc_obj, premises = got
            facts = [t for _, _, t in desc_obj.facts()]
            entries = []
            for step, premise in premises:
                status, reason = check_premise(premise, facts)
                entries.append({"step": step, "premise": premise,
                                "status": {"supported": "supported", "contradicted": "contradicted",
                                           "unverifiable": "unverifiable"}[status],
                                "severity": "major" if status == "contradicted" else "none", "reason": reason})
            reply = json.dumps({"premises": entries})
            out.append(GenerationResult(completions=[Completion(text=reply, finish_reason="stop")] * sampling.n,
                                        request_id=req.id))
        return out
