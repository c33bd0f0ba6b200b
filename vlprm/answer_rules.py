"""Text rules `vlprm.answers` builds on: LaTeX control-character repair, final sentences and their
clauses, number words, units and left-hand sides, and letters that name a labelled point or step.

Kept free of number parsing and math-verify so the loaders can import `repair_latex_controls`
cheaply and these rules stay testable one by one.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- control characters

# JSON read "\f", "\b", "\a", "\v" in "\frac", "\boxed", "\alpha", "\vec" as escapes. These
# characters never belong in a question or an answer, so before a letter they are always a
# lost backslash.
_ALWAYS_LOST = {"\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f"}
_ALWAYS_LOST_RE = re.compile("[\x07\x08\x0b\x0c](?=[A-Za-z])")
# "\t", "\r", "\n" are also real whitespace: repaired only before a LaTeX command name that
# ends there ("\times" but not a tab before "times of day"). Names that are also English words
# after their first letter ("\tan" -> "an", "\not" -> "ot") need a math character after them,
# and a newline needs a math-like character before it (a line may well start with "nu").
_TAB_CMDS = r"imes|heta|ext|extbf|extit|extrm|anh|au|frac|ilde|riangle|herefore|extstyle|an(?=[\\({^_0-9])"
_CR_CMDS = r"ightarrow|ho|m|angle|ceil|floor|ight(?=[)\]|.\\])|brace"
_NL_CMDS = r"eq|u|abla|eg|otin|leq|geq|mid|parallel|ot(?=\s*[\\={])"
_TAB_RE = re.compile(rf"\t(?=(?:{_TAB_CMDS})(?![A-Za-z]))")
_CR_RE = re.compile(rf"\r(?=(?:{_CR_CMDS})(?![A-Za-z]))")
_NL_RE = re.compile(rf"\n(?=(?:{_NL_CMDS})(?![A-Za-z]))")
_MATHY_BEFORE = set("$({[=+-*/^_,|\\") | set("0123456789")


def _newline_is_latex(s: str, i: int) -> bool:
    """Whether the newline at s[i] follows math ("x \\neq", "$\\nu"), not the end of a line of prose."""
    j = i - 1
    if j >= 0 and s[j] == " ":
        j -= 1
    return j >= 0 and (s[j] in _MATHY_BEFORE or (s[j].isalpha() and s[j + 1:i] == " "))


def repair_latex_controls(s):
    """Undo JSON escapes that ate a LaTeX backslash: "\\x0crac{1}{2}" -> "\\frac{1}{2}",
    "\\x08oxed{3}" -> "\\boxed{3}", a tab before "imes" -> "\\times", and so on.

    Non-strings come back unchanged; a string without control characters is returned as is.
    """
    if not isinstance(s, str) or not re.search("[\x07-\x0d]", s):
        return s
    s = _ALWAYS_LOST_RE.sub(lambda m: _ALWAYS_LOST[m.group(0)], s)
    s = _TAB_RE.sub(r"\\t", s)
    s = _CR_RE.sub(r"\\r", s)
    return _NL_RE.sub(lambda m: "\\n" if _newline_is_latex(m.string, m.start()) else m.group(0), s)


# --------------------------------------------------------------------------- final sentences

# A sentence ends at ". ", "! " or "? " (not inside "3.5") before a capital, a digit, "$" or "\".
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$\\(])")
_LINE_PREFIX_RE = re.compile(r"^(?:[#*\->\s]*(?:step|part)\s*\d+\s*[:.)]|\s*\d+[.)]\s|[#*\->\s]+)\s*", re.I)
_FILLER_LEAD_RE = re.compile(
    r"^(?:so|thus|hence|therefore|then|finally|overall|in\s+conclusion|in\s+summary|as\s+a\s+result|clearly)\b\s*,?\s*",
    re.I,
)


def is_complete(line: str) -> bool:
    """Whether a line ends a sentence ("... is 5.", "... is $5$.", "... 5!"), not a cut-off output."""
    t = line.rstrip().rstrip("*").rstrip()
    return t.endswith((".", "!")) and not t.endswith("..")


def final_sentence(line: str) -> str:
    """The last sentence of a line, without its "Step 3:" prefix, lead filler or end punctuation."""
    body = _LINE_PREFIX_RE.sub("", line.strip())
    parts = [p for p in _SENTENCE_END_RE.split(body) if p.strip()]
    s = parts[-1].strip() if parts else body
    s = re.sub(r"^\*+|\*+$", "", s).strip().rstrip(".!").strip()
    return _FILLER_LEAD_RE.sub("", s).strip()


# A reason that follows the conclusion ("3 because 1 + 2 = 3") is not part of it.
_REASON_RE = re.compile(r"\s+(?:because|since)\b.*$|,\s*(?:because|since|as)\b.*$", re.I | re.S)
# Clause breaks: the conclusion is in the last clause that holds a candidate.
_CLAUSE_RE = re.compile(r",\s+|;\s+|:\s+|\s+(?:but|so|thus|hence|therefore|which\s+(?:is|gives|means))\s+", re.I)


def drop_reason(sentence: str) -> str:
    return _REASON_RE.sub("", sentence).strip()


def clauses(sentence: str) -> list[str]:
    """The sentence's clauses, in order, with a trailing reason dropped. Breaks inside brackets
    or "$...$" ("(1, 1)", "[3, 5]") are not clause breaks."""
    s = drop_reason(sentence)
    out, start = [], 0
    for m in _CLAUSE_RE.finditer(s):
        head = s[start:m.start()]
        if s[:m.start()].count("$") % 2 or _depth(s[:m.start()]) > 0:
            continue
        out.append(head)
        start = m.end()
    out.append(s[start:])
    return [c.strip() for c in out if c.strip()]


# A clause opened by one of these sets the scene ("Since 180 - 60 = 120, ...", "..., when the
# value is about 75"); the conclusion is in another clause when there is one.
_SUBORDINATE_RE = re.compile(
    r"^(?:when|where|while|whereas|although|though|if|unless|since|because|as|before|after|given|assuming)\b", re.I)


def conclusion_order(sentence: str) -> list[str]:
    """The sentence's clauses in the order to look for its conclusion: main clauses from the
    last, then subordinate ones from the last."""
    parts = clauses(sentence)[::-1]
    return [c for c in parts if not _SUBORDINATE_RE.match(c)] + [c for c in parts if _SUBORDINATE_RE.match(c)]


def _depth(s: str) -> int:
    return sum(s.count(o) - s.count(c) for o, c in ("()", "[]", "{}"))


# Words that introduce the value in a conclusion ("is 5", "= 5", "comes to $12").
COPULA_RE = re.compile(
    r"(?:\b(?:is|are|was|were|be|equals?|equal\s+to|comes?\s+to|gives?|totals?|measures?|remains?|"
    r"becomes?|makes?|as)\b|=|≈|\\approx)",
    re.I,
)


def after_last_copula(clause: str) -> str | None:
    """The text after the clause's last copula, or None if it has none."""
    last = None
    for m in COPULA_RE.finditer(clause):
        last = m
    return clause[last.end():].strip() if last else None


# --------------------------------------------------------------------------- number words

NUMBER_WORDS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split())
}
NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
                     "ninety": 90, "hundred": 100})
NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.I)


# --------------------------------------------------------------------------- units and left-hand sides

_UNIT_NAMES = (
    "m|cm|mm|km|nm|um|μm|µm|ft|in|inch|inches|yd|mi|mile|miles|kg|g|mg|lb|lbs|oz|t|s|sec|ms|min|mins|h|hr|hrs|"
    "N|kN|J|kJ|W|kW|V|mV|A|mA|Hz|kHz|MHz|Pa|kPa|MPa|atm|mol|L|mL|K|C|F|cal|kcal|eV|dB|rad|deg|degree|degrees|"
    "meter|meters|metre|metres|second|seconds|minute|minutes|hour|hours|day|days|year|years|unit|units|"
    "dollar|dollars|cent|cents|percent|Ω|ohm|ohms|\\\\Omega|\\\\mu\\s*m"
)
_UNIT_TOKEN = rf"(?:{_UNIT_NAMES})(?:\s*\^\s*\{{?-?\d\}}?|[²³])?"
_UNIT_PRODUCT = rf"{_UNIT_TOKEN}(?:\s*(?:/|\\cdot|\\,|\s)\s*{_UNIT_TOKEN})*"
# "\mathrm{~m}^{3}", "\text{ cm}^2", "\ \text{m/s}", or a bare "m^3" / "km/h" after a value.
_LATEX_UNIT_RE = re.compile(
    rf"(?:\\[ ,;!]|~|\s)*\\(?:mathrm|text|textrm|mbox|operatorname|rm)\s*\{{\s*~?\s*{_UNIT_PRODUCT}\s*\}}"
    rf"(?:\s*\^\s*\{{?-?\d\}}?|[²³])?\s*$"
)
_BARE_UNIT_RE = re.compile(rf"(?<=[\d}}\s])(?:\\[ ,;]|~|\s)*(?<![\\A-Za-z]){_UNIT_PRODUCT}\s*$")
_LHS_WORDS_RE = re.compile(r"^\s*\\?[A-Za-z][\w\\{}() ]{0,30}?\s*(?:=|≈|\\approx)(?!=)\s*")


def strip_units(s: str) -> str:
    """A value without a trailing unit: "27\\pi\\ \\text{m}^{3}" -> "27\\pi", "6 \\mathrm{~m}" -> "6"."""
    prev = None
    s = s.strip()
    while prev != s and s:
        prev = s
        s = _LATEX_UNIT_RE.sub("", s).strip()
        s = _BARE_UNIT_RE.sub("", s).strip()
        s = re.sub(r"(?:\\[ ,;!]|~)+$", "", s).strip()
    return s or prev or ""


def strip_lhs(s: str) -> str:
    """A value without a "Volume =" / "x =" / "\\theta =" in front of it."""
    out = _LHS_WORDS_RE.sub("", s, count=1)
    return out if out.strip() else s


def core_value(s: str) -> str:
    """The bare value of an answer written with a prefix, math delimiters or a unit:
    "Volume $=27 \\pi \\mathrm{m}^{3}$" -> "27 \\pi"."""
    t = repair_latex_controls(s).replace("$", " ").replace("\\(", " ").replace("\\)", " ")
    t = re.sub(r"\\(?:displaystyle|left|right)\b", "", t).strip().rstrip(".").strip()
    return strip_units(strip_lhs(t))


# --------------------------------------------------------------------------- labelled letters

_LABEL_WORDS = (
    r"step|point|region|area|part|label|letter|position|curve|line|graph|figure|structure|option|choice|"
    r"stage|phase|panel|layer|zone|location|arrow|site|section|segment|vertex|corner|node|box|image|picture|"
    r"diagram|plot|cell|spot|feature|peak|answer|labell?ed|marked|called|named|denoted"
)
_LABEL_RE = re.compile(rf"\b(?:{_LABEL_WORDS})(?:\s+\(?([A-Za-z])\)?|\s*\(([A-Za-z])\))(?![\w'’])", re.I)
_BRACKET_LETTER_RE = re.compile(r"[\(\[]([A-Za-z])[\)\]]")
# Words that name a multiple-choice option by its letter: "picture D", "option (B)".
CHOICE_LABEL_RE = re.compile(
    r"\b(?i:option|choice|answer|picture|figure|image|graph|diagram|panel)\s+\(?([A-Z])\)?(?![\w'’])")


def named_letters(s: str) -> set[str]:
    """Upper-cased letters a text names as labels: "Step c", "point B is where ...", "(D)",
    "... is E". Empty if it names none."""
    found = {(m.group(1) or m.group(2)).upper() for m in _LABEL_RE.finditer(s)}
    found |= {m.group(1).upper() for m in _BRACKET_LETTER_RE.finditer(s)}
    tail = after_last_copula(s)
    if tail is not None:
        m = re.fullmatch(r"(?:the\s+)?(?:letter\s+)?\(?([A-Z])\)?", tail.strip().rstrip(".").strip())
        if m:
            found.add(m.group(1))
    m = re.match(r"^([A-Z])\s+(?:is|marks|shows|represents|indicates|has|was)\b", s.strip())
    if m and m.group(1) != "A":  # sentence-initial "A" is an article
        found.add(m.group(1))
    return found
