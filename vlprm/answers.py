"""Extract and check final answers in VLM outputs.

Two steps, kept apart so voting and checking agree on what "the answer" is:

* `extract_answer(text, options, answer_type)` finds the model's final answer in a free-form
  solution: the last ``\\boxed{}``, else an "answer is ..." phrase, else the final line: a bare
  answer, or the value / option its concluding sentence states ("so the cost comes to $12.").
  Option letters, texts and values (units and LaTeX aside) are mapped to a letter.
* `is_correct(pred, gold, answer_type, ...)` compares an extracted answer with the reference:
  multiple choice by letter, numbers with tolerance (and MathVista's ``precision`` rounding),
  expressions with math-verify, text case-insensitively; prefixes and units ("Volume $=27\\pi$
  m^3") are dropped when the plain comparison fails, a single-letter gold matches the one label a
  sentence names ("Point B is where ..."), a list gold matches a list written another way.

`check_answer(text, problem)` chains both for a `vlprm.data.schema.Problem` (or a dict with the
same fields) and accepts any of MMMU's ``metadata["accepted_answers"]``; `normalize_answer`
gives the key majority / weighted voting group by. Control characters that JSON left in LaTeX
("\\x0crac" for "\\frac") are repaired on every input (`vlprm.answer_rules`).
`python -m vlprm.answers --check FILE.jsonl` measures agreement with known verdicts
(`vlprm.answer_check`).

math-verify (and sympy behind it) is imported lazily: importing this module stays cheap.
"""

from __future__ import annotations

import functools
import math
import re
import string
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from vlprm.answer_rules import (
    CHOICE_LABEL_RE,
    COPULA_RE,
    NUMBER_WORD_RE,
    NUMBER_WORDS,
    after_last_copula,
    conclusion_order,
    core_value,
    final_sentence,
    is_complete,
    named_letters,
    repair_latex_controls,
)

OPTION_LETTERS = string.ascii_uppercase
NUMERIC_TYPES = ("integer", "float")

# Inputs longer than this never reach math-verify: long junk is where sympy hangs, and a real
# final answer is never this long.
MATH_VERIFY_MAX_CHARS = 500


# --------------------------------------------------------------------------- option letters


def option_letter(i: int) -> str:
    """The letter of the i-th option (0 -> "A"). Raises ValueError outside A-Z."""
    if not 0 <= i < len(OPTION_LETTERS):
        raise ValueError(f"option index {i} is outside A-Z (0..{len(OPTION_LETTERS) - 1})")
    return OPTION_LETTERS[i]


def letter_to_index(letter: str) -> int:
    """The index of an option letter ("B" or "b" -> 1). Raises ValueError for anything else."""
    s = letter.strip() if isinstance(letter, str) else ""
    if len(s) != 1 or s.upper() not in OPTION_LETTERS:
        raise ValueError(f"not an option letter: {letter!r}")
    return OPTION_LETTERS.index(s.upper())


# --------------------------------------------------------------------------- boxed


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")


def _balanced_group(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at text[start] == "{", and the index after it.

    Escaped braces (\\{ and \\}) are content, not structure. None if it never closes.
    """
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character, whatever it is
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def extract_boxed(text: str | None) -> str | None:
    """Content of the LAST ``\\boxed{...}`` (or ``\\fbox{...}``) in text, nested braces kept.

    ``\\boxed {x}`` (space before the brace) and ``\\boxed 5`` (a single token) are accepted.
    If the last box never closes (a truncated output) the result is None: an earlier box is
    not the final answer.
    """
    if not text:
        return None
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    i = m.end()
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        group = _balanced_group(text, i)
        return None if group is None else group[0].strip()
    if i > m.end():  # "\boxed 5": LaTeX takes the next token as the argument
        tok = re.match(r"[^\s$]+", text[i:])
        return tok.group(0) if tok else None
    return None


# --------------------------------------------------------------------------- cleaning helpers

_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
_WHOLE_TEXT_WRAP_RE = re.compile(r"^\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}$")


def _strip_text_wrappers(s: str) -> str:
    """Replace \\text{x}, \\mathrm{x}, ... by x (repeatedly, for nested wrappers)."""
    prev = None
    while prev != s:
        prev, s = s, _TEXT_WRAP_RE.sub(r"\1", s)
    return s


def _strip_math_delims(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s


def _clean_answer(s: str) -> str:
    """Light cleanup of an extracted span: math delimiters, markdown bold, trailing period.

    Deliberately keeps LaTeX (\\frac, \\sqrt, units) so math-verify sees the expression.
    """
    s = s.strip()
    s = re.sub(r"^\*+|\*+$", "", s).strip()  # **B** / **Answer:** leftovers
    s = s.rstrip(" .;,:")
    s = _strip_math_delims(s)
    m = _WHOLE_TEXT_WRAP_RE.match(s)
    if m:  # \text{red} as the whole answer is just "red"
        s = m.group(1).strip()
    return s.rstrip(" .;,").strip()


def normalize_text(s: str | None) -> str:
    """Lower-case, LaTeX text wrappers removed, punctuation dropped, whitespace collapsed,
    a leading article ("a", "an", "the") dropped. Used for text answers and option texts."""
    if s is None:
        return ""
    s = _strip_text_wrappers(_strip_math_delims(str(s)))
    s = s.replace("\\%", "%").replace("\\", " ").lower()
    # Keep letters, digits, %, '.' between digits (3.5), '-' (signs, hyphenated words).
    s = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", s)
    s = re.sub(r"[^\w\s%.\-]", " ", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"^(?:a|an|the)\s+", "", s)
    return s


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class _Number:
    value: float
    percent: bool


_NUM_BODY = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
_NUM_FULL_RE = re.compile(rf"^(?P<sign>[-+]?)\s*(?P<num>{_NUM_BODY})$")
_FRAC_RE = re.compile(r"^(?P<sign>[-+]?)\s*\\[dt]?frac\s*\{\s*(?P<a>[-+]?" + _NUM_BODY + r")\s*\}\s*\{\s*(?P<b>[-+]?" + _NUM_BODY + r")\s*\}$")
_FRAC_SHORT_RE = re.compile(r"^(?P<sign>[-+]?)\s*\\[dt]?frac(?P<a>\d)(?P<b>\d)$")
_SLASH_RE = re.compile(rf"^(?P<sign>[-+]?)\s*(?P<a>{_NUM_BODY})\s*/\s*(?P<b>{_NUM_BODY})$")
# A trailing unit: up to four words, each optionally with a power (cm^2, m²), or a per-unit
# (m/s, km/h). Possessive letter runs keep this linear on long prose (no backtracking).
_UNIT_WORD = r"[a-zA-Zµμ°Ω]++\.?(?:\s*+(?:\^\s*\{?\d\}?|[²³]))?"
_UNIT_RE = re.compile(rf"\s*{_UNIT_WORD}(?:\s*/\s*{_UNIT_WORD})?(?:\s+{_UNIT_WORD}){{0,3}}\s*$")
_LHS_RE = re.compile(r"^\\?[a-zA-Z][\w{}\\]{0,12}\s*(?:=|≈|\\approx)\s*")


def _to_float(tok: str) -> float:
    return float(tok.replace(",", ""))


def _parse_number(s: Any) -> _Number | None:
    """A number written the ways models write numbers, or None if s is not one number."""
    if s is None:
        return None
    if isinstance(s, bool):
        return None
    if isinstance(s, (int, float)):
        return None if math.isnan(s) else _Number(float(s), False)
    t = str(s).strip()
    if not t or len(t) > 100:
        return None
    boxed = extract_boxed(t)
    if boxed is not None and re.fullmatch(r"\s*\$?\s*\\(?:boxed|fbox)\s*\{.*\}\s*\$?\s*\.?", t, re.S):
        t = boxed
    t = _strip_math_delims(t)
    t = t.replace("−", "-").replace("–", "-").replace("\\!", "").replace("{,}", ",")
    t = t.replace("\\,", "").replace("\\;", " ").replace("\\ ", " ").replace("~", " ")
    t = _strip_text_wrappers(t)
    t = _LHS_RE.sub("", t)  # "x = 5" -> "5"
    t = t.strip().rstrip(".").strip()
    # Degrees and currency carry no value.
    t = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\\circ\b|\\degree\b", "", t)
    t = re.sub(r"^(?:\\\$|\$|USD|US\$|€|£|¥)\s*", "", t)
    t = re.sub(r"^([-+])\s*(?:\\\$|\$|€|£)\s*", r"\1", t)  # -$12
    percent = False
    t = t.strip()
    if t.endswith("\\%") or t.endswith("%"):
        percent = True
        t = t[:-2] if t.endswith("\\%") else t[:-1]
    elif re.search(r"\s(?:percent|per cent)$", t, re.I):
        percent = True
        t = re.sub(r"\s(?:percent|per cent)$", "", t, flags=re.I)
    t = t.strip()

    def signed(sign: str, v: float) -> float:
        return -v if sign == "-" else v

    for candidate in (t, _UNIT_RE.sub("", t).strip() if not percent else t):
        if not candidate:
            continue
        m = _NUM_FULL_RE.match(candidate)
        if m:
            return _Number(signed(m["sign"], _to_float(m["num"])), percent)
        m = _FRAC_RE.match(candidate) or _FRAC_SHORT_RE.match(candidate) or _SLASH_RE.match(candidate)
        if m:
            b = _to_float(m["b"])
            if b == 0:
                return None
            return _Number(signed(m["sign"], _to_float(m["a"]) / b), percent)
    return None


def normalize_number(s: Any) -> float | None:
    """The value of s if it is a single number, else None.

    Accepts thousands separators ("1,234"), signs (also the Unicode minus), currency ("$12"),
    units ("3.5 cm", "12 m^2"), degrees ("45^\\circ"), percent ("45%" -> 45.0: the number as
    written; `is_correct` also accepts 0.45 for it), simple fractions ("3/4", "\\frac{3}{4}"),
    "x = 5", and math delimiters. Anything more is left to math-verify.
    """
    n = _parse_number(s)
    return None if n is None else n.value


# Numbers inside running text: not part of a word, an exponent or a decimal.
_NUM_IN_TEXT_RE = re.compile(
    rf"(?<![\w.^_])(?:-|−)?(?:\\?\$\s*)?{_NUM_BODY}(?:\s*(?:\\?%|percent\b))?"
)


def _numbers_in(text: str) -> list[str]:
    return [m.group(0).strip() for m in _NUM_IN_TEXT_RE.finditer(text)]


# --------------------------------------------------------------------------- options


_LETTER_ONLY_RE = re.compile(
    r"^\s*(?:(?:option|choice)\s*)?[\(\[]?\s*(?P<l>[A-Za-z])\s*[\)\]]?\s*[.:]?\s*$", re.I
)
_LETTER_LEAD_RE = re.compile(
    r"^\s*(?:(?:option|choice)\s*)?(?:[\(\[]\s*(?P<l1>[A-Za-z])\s*[\)\]]|(?P<l2>[A-Za-z])\s*[.:)])\s*(?P<rest>.*)$",
    re.I | re.S,
)


def _letter_in_range(letter: str, options: Sequence[str] | None) -> bool:
    return options is None or letter_to_index(letter) < len(options)


def _as_letter(s: str, options: Sequence[str] | None, mc: bool, strict: bool = False) -> str | None:
    """The option letter s is written as ("B", "(b)", "**B**", "B. red", ...), else None.

    Lower-case letters and "letter + text" forms count only in a multiple-choice context
    (options known or answer_type multiple_choice), so "a triangle" never becomes option A.
    strict (used on a bare last line, where a CoT may just be listing options) accepts
    "B. text" only when text is that option's text.
    """
    s = _strip_text_wrappers(_clean_answer(s)) if s else s
    if not s:
        return None
    m = _LETTER_ONLY_RE.match(s)
    if m:
        letter = m["l"]
        return letter.upper() if (letter.isupper() or mc) else None
    if not mc:
        return None
    m = _LETTER_LEAD_RE.match(s)
    if not m:
        return None
    letter = (m["l1"] or m["l2"]).upper()
    rest = m["rest"].strip()
    if not strict or not rest:
        # A letter followed by text is the model's choice of letter, even when the text does
        # not match that option: the letter is what it committed to.
        return letter
    if options is not None and letter_to_index(letter) < len(options):
        if normalize_text(rest) == normalize_text(options[letter_to_index(letter)]):
            return letter
    return None


def _match_option_text(s: str, options: Sequence[str] | None) -> str | None:
    """The letter of the option whose text s is (normalized text, then numeric value)."""
    if not options:
        return None
    key = normalize_text(s)
    if not key:
        return None
    hits = [i for i, o in enumerate(options) if normalize_text(o) == key]
    if len(hits) == 1:
        return option_letter(hits[0])
    if hits:  # duplicate option texts: ambiguous
        return None
    v = _parse_number(s)
    if v is not None:
        hits = [i for i, o in enumerate(options) if (ov := _parse_number(o)) is not None and _close(ov.value, v.value)]
        if len(hits) == 1:
            return option_letter(hits[0])
    return _match_option_value(s, options)


@functools.lru_cache(maxsize=4096)
def _value_of(s: str) -> float | None:
    """The numeric value of an answer or option written with LaTeX, a prefix or a unit
    ("$4 \\sqrt{3} \\mathrm{~m}$" -> 6.928...), or None if it has none."""
    core = core_value(s)
    if not core or len(core) > 80:
        return None
    n = _parse_number(core)
    if n is not None:
        return None if n.percent else n.value
    if not re.search(r"\\[a-zA-Z]|[\d)]\s*/|\^", core) or re.search(r"[a-zA-Z]{2,}(?<!\\[a-zA-Z]{2})\s+[a-zA-Z]{2,}", core):
        return None  # not a math value: plain words would become symbols
    return _sympy_number(core)


def _match_option_value(s: str, options: Sequence[str]) -> str | None:
    """The letter of the one option whose value (units, "$", "x =" dropped; LaTeX evaluated)
    equals s's value: "4\\sqrt{3}" for "$4 \\sqrt{3} \\mathrm{~m}$", "\\pi/3" for "$\\frac{\\pi}{3}$"."""
    v = _value_of(s)
    if v is None:
        return None
    hits = [i for i, o in enumerate(options) if (ov := _value_of(str(o))) is not None and _close(ov, v)]
    return option_letter(hits[0]) if len(hits) == 1 else None


def _find_option_in(span: str, options: Sequence[str] | None) -> str | None:
    """A single option letter "(C)" or a single option text inside a longer answer span
    ("45 degrees (C)", "red, as the legend shows")."""
    letters = {l for l in re.findall(r"[\(\[]([A-Z])[\)\]]", span) if _letter_in_range(l, options)}
    if len(letters) == 1:
        return letters.pop()
    if options:
        key = f" {normalize_text(span)} "
        texts = [normalize_text(o) for o in options]
        hits = [i for i, t in enumerate(texts) if len(t) >= 2 and f" {t} " in key]
        # An option text inside a longer hit ("red" inside "dark red") is not a separate hit.
        hits = [i for i in hits if not any(j != i and texts[i] in texts[j] for j in hits)]
        if len(hits) == 1:
            return option_letter(hits[0])
    return None


def _resolve_choice(span: str, options: Sequence[str] | None, mc: bool, strict: bool = False) -> str | None:
    """Map an answer span to an option letter: letter forms first, then exact option text."""
    letter = _as_letter(span, options, mc, strict)
    if letter is not None:
        return letter
    return _match_option_text(span, options)


# --------------------------------------------------------------------------- extraction


# A phrase that introduces a final answer. The connector ("is", ":", "=") is required so
# "the answer choices are" or "to answer this" never match; the span is a lookahead so a
# later phrase on the same line is still found.
_ANSWER_PHRASE_RE = re.compile(
    r"(?:final\s+answer|correct\s+(?:answer|option|choice)|answer)\s*(?:\*\*)?\s*"
    r"(?:(?:is|would\s+be|should\s+be|will\s+be|=)\s*:?|:)\s*(?:\*\*)?\s*(?=(?P<span>[^\n]*))",
    re.I,
)
_OPTION_IS_CORRECT_RE = re.compile(
    r"(?:option|choice)\s*\(?(?P<l>[A-Z])\)?\s+is\s+(?:the\s+)?(?:correct|right)\b", re.I
)
_FILLER_RE = re.compile(r"^(?:therefore|thus|so|clearly|indeed|then|hence)\b\s*,?\s*", re.I)
_ANSWER_HEADER_RE = re.compile(r"[#*\s]*(?:final\s+answer|answer)[*:\s]*", re.I)


def _looks_latex(s: str) -> bool:
    """A short LaTeX math value ("2\\sqrt{3}", "\\pi/2"), not prose with a number in it."""
    return len(s) <= 60 and bool(re.search(r"\\[a-zA-Z]+", s)) and not re.search(r"[a-zA-Z]{3,}\s+[a-zA-Z]{3,}", _strip_text_wrappers(s))


def _cut_sentence(span: str) -> str:
    """The first sentence of a span: stop at ". ", "; " or a ", because ..." continuation."""
    m = re.match(
        r"(.*?)(?:\.(?:\s|$)|;\s|,\s*(?:because|since|as|which|so)\b|\s+(?:because|since)\b)",
        span + " ",
        re.I | re.S,
    )
    return (m.group(1) if m else span).strip()


def _from_span(span: str, options: Sequence[str] | None, answer_type: str | None, mc: bool) -> tuple[str | None, bool]:
    """(answer, fits): the answer a phrase span gives, and whether it has the expected kind
    (a letter for multiple choice, a number for numeric types)."""
    span = _FILLER_RE.sub("", span.strip())
    boxed = extract_boxed(span)
    if boxed is not None:
        span = boxed
    sentence = _clean_answer(_cut_sentence(span))
    if not sentence:
        return None, False
    if mc:
        letter = (_resolve_choice(sentence, options, mc) or _find_option_in(span, options)
                  or _choice_in_sentence(sentence, options))
        if letter is not None:
            return letter, True
        return sentence, False
    if answer_type in NUMERIC_TYPES:
        if _parse_number(sentence) is not None or _looks_latex(sentence):
            return sentence, True  # a LaTeX value ("2\sqrt{3}") is evaluated when checked
        nums = _numbers_in(sentence)
        if nums:
            return _clean_answer(nums[0]), True
        return sentence, False
    if options is None:
        # An unknown answer type still gets upper-case letters: "The answer is (B)."
        letter = _as_letter(sentence, None, False)
        if letter is not None:
            return letter, True
    return sentence, True


def extract_answer(text: str | None, options: Sequence[str] | None = None, answer_type: str | None = None) -> str | None:
    """The final answer in a model output, or None if it gives none.

    Order: the last ``\\boxed{}``; else the last "answer is ..." / "Answer: ..." /
    "final answer: ..." / "Option C is correct" phrase (going back to an earlier phrase if
    the last one does not hold an answer of the expected kind); else the last line: a bare
    answer (an option letter or text, a number), or, if it ends a sentence, what its last
    clause concludes (the value after "is" / "=", "a 5-metre rope" -> "5", the one option it
    names, not counting negated ones: "not a triangle but a circle"); else the whole text, if
    it is one short line. Text answers get the concluding sentence, compared by `is_correct`.

    With options (or answer_type "multiple_choice") the result is an option letter when the
    answer is written as one ("(B)", "B.", "B)", "**B**", "b") or as an option's text
    ("\\boxed{red}", "\\boxed{B. red}"); a letter beyond the options is returned as written, so
    it is checked (and fails) rather than silently dropped. For numeric types the number is
    returned with its unit / percent sign ("3.5 cm"); LaTeX is kept for math-verify.
    """
    if text is None:
        return None
    text = repair_latex_controls(str(text))
    options = _repaired(options)
    mc = options is not None or answer_type == "multiple_choice"

    boxed = extract_boxed(text)
    if boxed is None and _BOX_RE.search(text):
        return None  # the final box never closes: a truncated output has no answer
    if boxed is not None:
        cleaned = _clean_answer(boxed)
        if not cleaned:
            return None
        letter = _resolve_choice(cleaned, options, mc) if (mc or options is None) else None
        return letter if letter is not None else cleaned

    # Answer phrases, latest first; the first whose span fits the expected kind wins.
    found: list[tuple[int, str | None, bool]] = []
    for m in _ANSWER_PHRASE_RE.finditer(text):
        ans, fits = _from_span(m["span"], options, answer_type, mc)
        if ans is not None:
            found.append((m.start(), ans, fits))
    for m in _OPTION_IS_CORRECT_RE.finditer(text):
        letter = m["l"].upper()
        if mc or m["l"].isupper():
            found.append((m.start(), letter, True))
    if found:
        found.sort(key=lambda f: f[0])
        fitting = [f for f in found if f[2]]
        # A multiple-choice answer that is no option is still the model's answer (and wrong);
        # a numeric phrase without a number ("the answer is unclear") is no answer.
        if fitting or mc:
            return (fitting or found)[-1][1]

    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    if len(lines) >= 2 and _ANSWER_HEADER_RE.fullmatch(lines[-2]):
        # "**Final Answer**" alone on a line, the answer on the next one.
        ans, _ = _from_span(lines[-1], options, answer_type, mc)
        return ans
    return _from_last_line(lines, options, answer_type, mc)


def _from_last_line(lines: list[str], options: Sequence[str] | None, answer_type: str | None, mc: bool) -> str | None:
    """The answer a final line states without a box or an answer phrase: a bare answer, or the
    value / option a concluding sentence names ("So the missing colour is purple.")."""
    last = _clean_answer(lines[-1])
    complete = is_complete(lines[-1])
    if mc:
        letter = _resolve_choice(last, options, mc, strict=True)
        if letter is None and complete and not _LETTER_LEAD_RE.match(last):
            letter = _choice_in_sentence(final_sentence(lines[-1]), options)  # not "(B) red - maybe"
        return letter
    if options is None and _LETTER_ONLY_RE.match(last) and _as_letter(last, None, False):
        return _as_letter(last, None, False)
    if answer_type in NUMERIC_TYPES and _parse_number(last) is not None:
        return last
    if answer_type in NUMERIC_TYPES or answer_type == "expression":
        # An incomplete line ("so 3 + 4 = 7 and then") is an unfinished derivation: only a
        # single value on it counts.
        value = _value_in_sentence(final_sentence(lines[-1]), answer_type, single_only=not complete)
        if value is not None or answer_type in NUMERIC_TYPES:
            return value
    if len(lines) == 1 and len(last) <= 64:
        return last or None
    if complete and answer_type in ("text", None):
        sentence = final_sentence(lines[-1])
        return sentence if 0 < len(sentence) <= 200 else None  # compared in full by is_correct
    return None


# ---------------------------------------------------------------------- values in a sentence

_MATH_SEG_RE = re.compile(r"\$([^$]+)\$|\\\((.+?)\\\)")
_TEXT_FRAC_RE = re.compile(rf"(?<![\w.^_/\\])-?{_NUM_BODY}\s*/\s*{_NUM_BODY}(?![\w/])|\\[dt]?frac\s*\{{[^{{}}]*\}}\s*\{{[^{{}}]*\}}")


def _value_candidates(text: str, number_words: bool) -> list[tuple[int, str]]:
    """(position, value) of each value written in a piece of a sentence, in order: "$...$" math
    (its "x =" dropped), fractions, numbers with "$" / "%", and, if asked and there is no digit,
    number words ("four")."""
    found: list[tuple[int, str]] = []
    masked = list(text)

    def take(m: re.Match, value: str) -> None:
        found.append((m.start(), value))
        masked[m.start():m.end()] = " " * (m.end() - m.start())

    for m in _MATH_SEG_RE.finditer(text):
        # "$\\angle BOC = 2 \\times 40^\\circ = 80^\\circ$": a chain concludes after its last "=".
        inner = re.split(r"(?<![<>!\\])=", (m.group(1) or m.group(2)))[-1].strip()
        if inner and (_parse_number(inner) is not None or _looks_latex(inner)):
            take(m, inner)
    rest = "".join(masked)
    for m in _TEXT_FRAC_RE.finditer(rest):
        take(m, m.group(0).strip())
    rest = "".join(masked)
    for m in _NUM_IN_TEXT_RE.finditer(rest):
        found.append((m.start(), _clean_answer(m.group(0))))
    if number_words and not found:
        found = [(m.start(), str(NUMBER_WORDS[m.group(1).lower()])) for m in NUMBER_WORD_RE.finditer(text)]
    return sorted(found)


def _pick_after_copula(clause: str, candidates: list[tuple[int, str]]) -> list[str]:
    """The candidates the clause's conclusion names: the first after the last copula that has
    any after it ("4 * 6 = 24" -> 24, "the perimeter is 18 and the area is 20" -> 20); all of
    them when no copula is followed by a value."""
    for m in reversed(list(COPULA_RE.finditer(_MATH_SEG_RE.sub(lambda g: " " * len(g.group(0)), clause)))):
        after = [v for pos, v in candidates if pos >= m.end()]
        if after:
            return after[:1]
    return [v for _, v in candidates]


def _value_in_sentence(sentence: str, answer_type: str | None, single_only: bool = False) -> str | None:
    """The value a concluding sentence states: from its last clause that holds one ("Each side is
    4 cm, so we need a 4-cm square" -> "4"), preferring what follows "is" / "=". None when it is
    ambiguous (several values and nothing singles one out) or there is none."""
    if single_only:
        cands = _value_candidates(sentence, number_words=False)
        return cands[0][1] if len(cands) == 1 else None
    words = answer_type in NUMERIC_TYPES
    for clause in conclusion_order(sentence):
        cands = _value_candidates(clause, number_words=words)
        if not cands:
            continue
        picked = _pick_after_copula(clause, cands)
        if len({normalize_answer(v, answer_type) for v in picked}) == 1:
            return picked[0]
        return None
    return None


_OPTION_LABEL_RE = re.compile(r"(?:^|[\s(\[])([A-Z])(?:[)\]]|[.:](?=\s))")
_NEGATED_RE = re.compile(r"\b(?:not|no|never|rather\s+than|instead\s+of|except)\s+(?:(?:a|an|the)\s+)?$", re.I)


def _mentioned_options(text: str, options: Sequence[str]) -> list[tuple[int, str]]:
    """(position, letter) of each option a piece of a sentence names: "(B)", an option's text as
    whole words ("purple", "it decreases"), or an option's value ("$12", "60 degrees",
    "$4\\sqrt{3}$ m"). Negated mentions ("not a triangle") do not count."""
    found: list[tuple[int, str]] = []
    for m in (*re.finditer(r"[\(\[]([A-Z])[\)\]]", text), *CHOICE_LABEL_RE.finditer(text)):
        if _letter_in_range(m.group(1), options):
            found.append((m.start(), m.group(1)))
    low = text.lower()
    texts = [normalize_text(o) for o in options]
    for i, t in enumerate(texts):
        if len(t) < 2 or _parse_number(options[i]) is not None:
            continue  # numeric options are matched by value below
        if any(j != i and t in texts[j] and re.search(rf"(?<!\w){re.escape(texts[j])}(?!\w)", normalize_text(text))
               for j in range(len(texts))):
            continue  # "red" inside a named "dark red"
        pattern = r"(?<![\w-])" + r"[\W_]+".join(re.escape(w) for w in t.split()) + r"(?![\w-])"
        for m in re.finditer(pattern, low):
            if not _NEGATED_RE.search(low[:m.start()]):
                found.append((m.start(), option_letter(i)))
    for pos, value in _value_candidates(text, number_words=False):
        letter = _match_option_text(value, options)
        if letter is not None and not _NEGATED_RE.search(low[:pos]):
            found.append((pos, letter))
    return sorted(found)


def _choice_in_sentence(sentence: str, options: Sequence[str] | None) -> str | None:
    """The option a concluding sentence names, from its last clause that names any ("Each ticket
    costs $4, so the cost comes to $12." -> the option "$12"), preferring what follows "is";
    None if that still names two different options ("It could be red or green.")."""
    if not options or len(set(_OPTION_LABEL_RE.findall(sentence))) >= 2:
        return None  # "The options are A) 2, B) 4, C) 6." lists options, it chooses none
    for clause in conclusion_order(sentence):
        found = _mentioned_options(clause, options)
        if not found:
            continue
        tail = after_last_copula(clause)
        if tail:
            in_tail = _mentioned_options(tail, options)
            found = in_tail or found
        letters = {letter for _, letter in found}
        return letters.pop() if len(letters) == 1 else None
    return None


# --------------------------------------------------------------------------- checking


def _close(a: float, b: float, rel_tol: float = 1e-4, abs_tol: float = 1e-8) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


def _number_candidates(n: _Number) -> list[float]:
    # "45%" may mean 45 (gold written without %) or 0.45 (gold written as a fraction).
    return [n.value, n.value / 100.0] if n.percent else [n.value]


def _sympy_number(s: str) -> float | None:
    """Numeric value of a LaTeX expression via math-verify ("2\\sqrt{3}" -> 3.464...)."""
    parsed = _mv_parse(s)
    for p in parsed or []:
        try:
            if getattr(p, "is_number", False):
                v = complex(p.evalf())
                if abs(v.imag) < 1e-12:
                    return float(v.real)
        except (Exception, ArithmeticError):
            continue
    return None


def _mv_timeout(timeout: int | None) -> int | None:
    # math-verify's timeout is signal.alarm based: allowed only in the main thread; elsewhere
    # it raises, so run without it there (inputs are length-capped instead).
    return timeout if threading.current_thread() is threading.main_thread() else None


def _mv_parse(s: str, timeout: int | None = 5):
    """math_verify.parse with the guards it needs; [] on any failure."""
    if not s or len(s) > MATH_VERIFY_MAX_CHARS:
        return []
    try:
        from math_verify import parse
        from math_verify.errors import TimeoutException
    except ImportError:  # pragma: no cover - math-verify is a hard requirement of the stack
        return []
    t = _mv_timeout(timeout)
    s = s.strip()
    # Bare LaTeX ("\frac{1}{2}") is only found inside math delimiters.
    attempts = [s] if ("$" in s or "\\boxed" in s or "\\(" in s or "\\[" in s) else [f"${s}$", s]
    for a in attempts:
        try:
            out = parse(a, parsing_timeout=t)
        except (Exception, TimeoutException):  # TimeoutException derives from BaseException
            out = []
        if out:
            return out
    return []


def math_equal(pred: str, gold: str, timeout: int | None = 5) -> bool:
    """Whether pred and gold are the same mathematical object according to math-verify.

    Never raises: parse failures, sympy errors and timeouts count as "not equal".
    """
    if pred is None or gold is None:
        return False
    try:
        from math_verify import verify
        from math_verify.errors import TimeoutException
    except ImportError:  # pragma: no cover
        return False
    g = _mv_parse(str(gold), timeout)
    p = _mv_parse(str(pred), timeout)
    if not g or not p:
        return False
    try:
        return bool(verify(g, p, timeout_seconds=_mv_timeout(timeout)))
    except (Exception, TimeoutException):
        return False


def _numeric_equal(pred: Any, gold: Any, answer_type: str | None, precision: int | None,
                   tolerance: float, abs_tol: float) -> bool | None:
    """True/False if both sides are numbers; None if either is not (caller falls back)."""
    p, g = _parse_number(pred), _parse_number(gold)
    if p is None and answer_type in NUMERIC_TYPES and isinstance(pred, str):
        v = _sympy_number(pred)  # "2\sqrt{3}" against 3.46
        p = None if v is None else _Number(v, False)
    if p is None or g is None:
        return None
    for pv in _number_candidates(p):
        for gv in _number_candidates(g):
            if answer_type == "integer":
                # An integer answer must be an integer: 4.6 is not 5 (MathVista's int()).
                if abs(pv - round(pv)) < 1e-6 and round(pv) == round(gv):
                    return True
            elif precision is not None:
                # MathVista: round the prediction to the gold's stated decimals.
                digits = int(precision)
                if _close(round(pv, digits), round(gv, digits), 0.0, 0.5 * 10 ** (-digits - 2)):
                    return True
            elif _close(pv, gv, tolerance, abs_tol):
                return True
    return False


def is_correct(
    pred: Any,
    gold: Any,
    answer_type: str | None = None,
    options: Sequence[str] | None = None,
    precision: int | None = None,
    tolerance: float = 1e-4,
    abs_tol: float = 1e-8,
    unit: str | None = None,
) -> bool:
    """Whether an extracted answer matches the reference answer.

    * multiple_choice: both sides are turned into option letters (a letter, a letter form
      like "(B)", or an option's text) and compared; a letter beyond the options is wrong.
    * integer: the prediction must be an integer equal to the gold.
    * float: with `precision` (MathVista), both rounded to that many decimals and compared;
      otherwise relative `tolerance` / `abs_tol`. "45%" matches 45 and 0.45.
    * expression: numbers compared as above, else math-verify (\\frac{1}{2} == 0.5).
    * text: case / whitespace / punctuation-insensitive equality, then numbers, then
      math-verify for LaTeX-looking answers.
    A None or empty prediction is never correct. `unit` (from metadata) is stripped from
    the prediction before text comparison.
    """
    if pred is None or gold is None:
        return False
    pred_s = repair_latex_controls(str(pred)).strip()
    gold_s = repair_latex_controls(str(gold)).strip()
    options = _repaired(options)
    if not pred_s:
        return False
    if precision is not None:
        try:
            precision = int(precision)
        except (TypeError, ValueError):
            precision = None

    if answer_type == "multiple_choice" or (options and answer_type is None):
        gold_letter = _resolve_choice(gold_s, options, True)
        pred_letter = _resolve_choice(pred_s, options, True)
        if gold_letter is None and options is None:
            return normalize_text(pred_s) == normalize_text(gold_s)
        if pred_letter is None or gold_letter is None:
            return False
        if not _letter_in_range(pred_letter, options):
            return False
        return pred_letter == gold_letter

    if unit:
        pred_s = re.sub(rf"\s*(?:\\text\{{\s*)?{re.escape(unit)}\s*\}}?\s*$", "", pred_s).strip() or pred_s

    numeric = _numeric_equal(pred_s, gold_s, answer_type, precision, tolerance, abs_tol)
    if numeric is not None:
        return numeric
    if _same_value(pred_s, gold_s, answer_type):
        return True
    # Either side may carry a prefix or a unit the other lacks: "Volume $=27 \\pi \\mathrm{m}^{3}$"
    # against "27\\pi\\ \\text{m}^{3}". Compare what is left without them.
    pred_core, gold_core = core_value(pred_s), core_value(gold_s)
    if pred_core and gold_core and (pred_core, gold_core) != (pred_s, gold_s):
        numeric = _numeric_equal(pred_core, gold_core, answer_type, precision, tolerance, abs_tol)
        if numeric is not None:
            return numeric
        if _same_value(pred_core, gold_core, answer_type):
            return True
    return answer_type not in NUMERIC_TYPES and _sentence_states(pred_s, gold_s)


def _same_value(pred_s: str, gold_s: str, answer_type: str | None) -> bool:
    """Text equality (for text and expressions), then math-verify where it can be trusted."""
    if answer_type in NUMERIC_TYPES:
        # A numeric gold with a non-numeric prediction: only a symbolic identity can save it.
        return _parse_number(gold_s) is None and math_equal(pred_s, gold_s)
    if normalize_text(pred_s) == normalize_text(gold_s):
        return True
    if answer_type in ("text", None) and not re.search(r"[\\^_{}=/]|\d", gold_s + pred_s):
        # Plain words: math-verify would read "red" as r*e*d and call "der" equal.
        return False
    return math_equal(pred_s, gold_s)


_SINGLE_LETTER_RE = re.compile(r"^\$?\s*\(?([A-Za-z])\)?\s*\$?$")
_LIST_RE = re.compile(r"[\[(]\s*-?\d[^\[\]()]*[\])]")


def _sentence_states(pred: str, gold: str) -> bool:
    """Whether a sentence-like prediction states the gold: a single-letter gold as the one letter
    it names ("Point B is where ...", "Step c"), a list gold as its last list ("[3,5]" for
    "[3, 5]"), any other gold as what follows its last "is" ("the missing shape is purple")."""
    letter = _SINGLE_LETTER_RE.match(gold)
    if letter:
        return named_letters(pred) == {letter.group(1).upper()}
    parts = conclusion_order(final_sentence(pred))
    tail = after_last_copula(parts[0]) if parts else None
    if _LIST_RE.fullmatch(gold):
        # The last bracketed list, else a bare run of numbers after "is"/"are": "3 and 5".
        bare = [t for t in (after_last_copula(final_sentence(pred)), pred)
                 if t and re.fullmatch(r"[-\d\s,.;]+(?:and\s+-?[\d.]+)?", t)]
        lists = _LIST_RE.findall(pred) or bare
        return bool(lists) and _numbers(lists[-1]) == _numbers(gold)
    return bool(tail) and normalize_text(tail) == normalize_text(gold)


def _numbers(s: str) -> list[float]:
    return [_to_float(x) for x in re.findall(rf"-?{_NUM_BODY}", s)]


def _repaired(options: Sequence[str] | None) -> list[str] | None:
    return None if options is None else [repair_latex_controls(str(o)) for o in options]


def _field(problem: Any, name: str, default: Any = None) -> Any:
    if isinstance(problem, dict):
        return problem.get(name, default)
    return getattr(problem, name, default)


def check_answer(pred: str | None, problem: Any, *, extract: bool = True) -> bool:
    """Check a model output (or an already extracted answer) against a problem.

    problem is a `Problem` or a dict with answer, answer_type, options and metadata (which
    may hold "precision" and "unit"). With extract=True (default) the answer is first
    extracted from pred; extraction is idempotent on bare answers ("B", "0.5", "red").
    """
    options = _field(problem, "options")
    answer_type = _field(problem, "answer_type")
    metadata = _field(problem, "metadata") or {}
    if pred is None:
        return False
    ans = extract_answer(pred, options=options, answer_type=answer_type) if extract else pred
    gold = _field(problem, "answer")
    # MMMU lists several accepted answers for some open questions; any of them is right.
    golds = [gold] + [a for a in metadata.get("accepted_answers") or [] if a != gold]
    return any(
        is_correct(ans, g, answer_type, options=options, precision=metadata.get("precision"),
                   unit=metadata.get("unit"))
        for g in golds
    )


def normalize_answer(ans: str | None, answer_type: str | None = None, options: Sequence[str] | None = None) -> str | None:
    """A canonical key for an extracted answer, for majority / weighted voting.

    Option letters for multiple choice, a plain number for numeric answers ("1,234 cm" and
    "1234" vote together), normalized text otherwise. None stays None.
    """
    if ans is None:
        return None
    s = repair_latex_controls(str(ans)).strip()
    options = _repaired(options)
    if not s:
        return None
    if answer_type == "multiple_choice" or options:
        letter = _resolve_choice(s, options, True)
        if letter is not None:
            return letter
    n = _parse_number(s)
    if n is not None:
        v = n.value
        if answer_type == "integer" and abs(v - round(v)) < 1e-6:
            return str(int(round(v)))
        return f"{v:.10g}" + ("%" if n.percent else "")
    if answer_type in ("expression", None) and re.search(r"[\\^_{}=/]", s):
        return re.sub(r"\s+", "", _strip_math_delims(s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac"))
    return normalize_text(s)


if __name__ == "__main__":  # python -m vlprm.answers --check FILE.jsonl
    import sys

    from vlprm.answer_check import main

    sys.exit(main())
