"""Robust parsing of JSON that a model wrote in its reply.

Models wrap JSON in code fences, write prose before and after it, use single quotes, Python
literals (True/None), trailing commas, unquoted keys and comments, and get cut off by the token
limit. `parse_json_reply` reads all of that with a small lenient parser (never `eval`) and says
what it had to repair, so callers can count repairs and fall back to a declared default when
nothing can be read.

Truncation rule: the reply is read up to where it stops; an element that was still being
written is dropped from the list holding it (a half-written record is never returned as if it
were whole), a half-written scalar is dropped from its object, and the open containers are
closed. The result is marked ``truncated``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None,
             "NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}
_MAX_STARTS = 32  # candidate start positions tried per reply (bounds the work on long prose)


@dataclass
class JSONParse:
    """The outcome of parsing a reply.

    ok: a value of the expected type was read. value: it (or None). repairs: what had to be
    fixed ("code_fence", "surrounding_text", "single_quotes", "python_literals",
    "trailing_comma", "missing_comma", "comments", "unquoted_keys", "truncated"). error: why nothing was read.
    """

    value: Any = None
    ok: bool = False
    error: str | None = None
    repairs: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return "truncated" in self.repairs


class _Truncated(Exception):
    """The input ended inside a value. partial: what was complete (for containers)."""

    def __init__(self, partial: Any = None, container: bool = False):
        super().__init__("truncated")
        self.partial = partial
        self.container = container


class _Bad(Exception):
    pass


class _Reader:
    """A lenient recursive-descent JSON reader over text[pos:]."""

    def __init__(self, text: str, pos: int):
        self.s = text
        self.i = pos
        self.repairs: set[str] = set()

    # -- helpers
    def _ws(self) -> None:
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in " \t\r\n\ufeff":
                self.i += 1
            elif s.startswith("//", self.i):
                j = s.find("\n", self.i)
                self.i = n if j < 0 else j + 1
                self.repairs.add("comments")
            elif s.startswith("/*", self.i):
                j = s.find("*/", self.i + 2)
                self.i = n if j < 0 else j + 2
                self.repairs.add("comments")
            else:
                break

    def _eof(self) -> bool:
        return self.i >= len(self.s)

    # -- values
    def value(self) -> Any:
        self._ws()
        if self._eof():
            raise _Truncated()
        c = self.s[self.i]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c in "\"'\u201c":
            return self.string()
        m = _NUMBER_RE.match(self.s, self.i)
        if m:
            end = m.end()
            if end >= len(self.s):  # a number at the very end may be cut short
                raise _Truncated()
            self.i = end
            txt = m.group(0)
            try:
                return int(txt)
            except ValueError:
                return float(txt)
        m = _IDENT_RE.match(self.s, self.i) or (re.compile(r"-Infinity").match(self.s, self.i))
        if m:
            word = m.group(0)
            if word in _LITERALS:
                if m.end() >= len(self.s):
                    raise _Truncated()
                if word in ("True", "False", "None"):
                    self.repairs.add("python_literals")
                self.i = m.end()
                return _LITERALS[word]
            if m.end() >= len(self.s) and any(lit.startswith(word) for lit in _LITERALS):
                raise _Truncated()
        raise _Bad(f"unexpected {self.s[self.i:self.i + 12]!r} at offset {self.i}")

    def string(self) -> str:
        s = self.s
        q = s[self.i]
        close = "\u201d" if q == "\u201c" else q
        if q != '"':
            self.repairs.add("single_quotes")
        self.i += 1
        out = []
        n = len(s)
        while self.i < n:
            c = s[self.i]
            if c == "\\":
                if self.i + 1 >= n:
                    break
                e = s[self.i + 1]
                if e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[self.i + 2:self.i + 6] or ""):
                    out.append(chr(int(s[self.i + 2:self.i + 6], 16)))
                    self.i += 6
                    continue
                out.append(_ESCAPES.get(e, e))
                self.i += 2
                continue
            if c == close:
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        raise _Truncated()

    def key(self) -> str:
        self._ws()
        if self._eof():
            raise _Truncated()
        c = self.s[self.i]
        if c in "\"'\u201c":
            return self.string()
        m = _IDENT_RE.match(self.s, self.i) or _NUMBER_RE.match(self.s, self.i)
        if m:
            if m.end() >= len(self.s):
                raise _Truncated()
            self.repairs.add("unquoted_keys")
            self.i = m.end()
            return m.group(0)
        raise _Bad(f"expected a key at offset {self.i}, got {self.s[self.i:self.i + 12]!r}")

    def obj(self) -> dict:
        self.i += 1  # "{"
        out: dict = {}
        while True:
            self._ws()
            if self._eof():
                raise _Truncated(out, container=True)
            if self.s[self.i] == "}":
                self.i += 1
                return out
            k = None
            try:
                k = self.key()
                self._ws()
                if self._eof():
                    raise _Truncated()
                if self.s[self.i] not in ":=":
                    raise _Bad(f"expected ':' at offset {self.i}")
                self.i += 1
                v = self.value()
            except _Truncated as t:
                if t.container and k is not None:  # keep what a nested container had finished
                    out[k] = t.partial
                raise _Truncated(out, container=True) from None
            out[k] = v
            self._ws()
            if self._eof():
                raise _Truncated(out, container=True)
            c = self.s[self.i]
            if c == ",":
                self.i += 1
                self._ws()
                if not self._eof() and self.s[self.i] == "}":
                    self.repairs.add("trailing_comma")
            elif c != "}":
                # A missing comma between members: accept if a key follows.
                if c in "\"'" or _IDENT_RE.match(self.s, self.i):
                    self.repairs.add("missing_comma")
                    continue
                raise _Bad(f"expected ',' or '}}' at offset {self.i}")

    def arr(self) -> list:
        self.i += 1  # "["
        out: list = []
        while True:
            self._ws()
            if self._eof():
                raise _Truncated(out, container=True)
            if self.s[self.i] == "]":
                self.i += 1
                return out
            try:
                v = self.value()
            except _Truncated:
                # The element being written is dropped, whatever it is.
                raise _Truncated(out, container=True) from None
            out.append(v)
            self._ws()
            if self._eof():
                raise _Truncated(out, container=True)
            c = self.s[self.i]
            if c == ",":
                self.i += 1
                self._ws()
                if not self._eof() and self.s[self.i] == "]":
                    self.repairs.add("trailing_comma")
            elif c != "]":
                raise _Bad(f"expected ',' or ']' at offset {self.i}")


def _type_ok(value: Any, expect: type | tuple | None) -> bool:
    return expect is None or isinstance(value, expect)


def _parse_at(text: str, start: int) -> tuple[Any, int, set[str], bool]:
    """Parse one container starting at text[start]. Returns (value, end, repairs, truncated)."""
    r = _Reader(text, start)
    try:
        v = r.value()
        return v, r.i, r.repairs, False
    except _Truncated as t:
        if not t.container:
            raise _Bad("the reply ends inside a value") from None
        return t.partial, len(text), r.repairs | {"truncated"}, True


def parse_json_reply(text: str | None, expect: type | tuple | None = None) -> JSONParse:
    """Read the JSON value (object or array) a model wrote in `text`.

    expect: the type(s) wanted (dict, list, (dict, list)); a value of another type is not
    accepted. Among several candidate values the longest well-formed one wins; a truncated one
    is used only if no complete one exists. Never raises.
    """
    if text is None or not str(text).strip():
        return JSONParse(error="empty reply")
    text = str(text)
    repairs: list[str] = []
    body = text
    fences = [m.group(2) for m in _FENCE_RE.finditer(text)]
    if fences:
        # Prefer a fenced block that holds a bracket; the rest of the reply is prose.
        inner = next((f for f in fences if "{" in f or "[" in f), None)
        if inner is not None:
            body = inner
            repairs.append("code_fence")
    stripped = body.strip()
    try:
        v = json.loads(stripped)
        if _type_ok(v, expect) and isinstance(v, (dict, list)):
            return JSONParse(value=v, ok=True, repairs=repairs)
    except (json.JSONDecodeError, ValueError, RecursionError):
        pass

    wanted = "{[" if expect is None else "".join(c for t, c in ((dict, "{"), (list, "[")) if _accepts(expect, t))
    best: tuple | None = None  # (truncated, -span, start, value, repairs)
    tried = 0
    i = 0
    errors: list[str] = []
    while i < len(body) and tried < _MAX_STARTS:
        if body[i] not in wanted:
            i += 1
            continue
        tried += 1
        try:
            v, end, reps, trunc = _parse_at(body, i)
        except (_Bad, RecursionError) as e:
            errors.append(str(e))
            i += 1
            continue
        if _type_ok(v, expect) and not (trunc and v in ({}, [])):
            cand = (trunc, -(end - i), i, v, reps)
            if best is None or cand[:2] < best[:2]:
                best = cand
            i = end  # nested starts inside a parsed value are never better
        else:
            i += 1
    if best is None:
        why = errors[0] if errors else f"no JSON {'/'.join(_names(expect))} found"
        return JSONParse(error=why, repairs=repairs)
    trunc, neg_span, start, v, reps = best
    if body[:start].strip() or body[start - neg_span:].strip():
        repairs.append("surrounding_text")
    repairs.extend(sorted(reps))
    return JSONParse(value=v, ok=True, repairs=repairs)


def _accepts(expect: type | tuple, t: type) -> bool:
    types = expect if isinstance(expect, tuple) else (expect,)
    return any(issubclass(t, x) or issubclass(x, t) for x in types)


def _names(expect: type | tuple | None) -> list[str]:
    if expect is None:
        return ["object", "array"]
    types = expect if isinstance(expect, tuple) else (expect,)
    return [{"dict": "object", "list": "array"}.get(t.__name__, t.__name__) for t in types]


def loads_lenient(text: str | None, expect: type | tuple | None = None, default: Any = None) -> Any:
    """The parsed value, or `default` when nothing of the expected type can be read."""
    res = parse_json_reply(text, expect)
    return res.value if res.ok else default
