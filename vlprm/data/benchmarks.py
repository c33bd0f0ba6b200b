"""Benchmark loaders: each reads a benchmark in its *released* format and returns `Problem`s.

Every loader takes a local path (the directory or file as released) or a datasets hub id
(online use), and returns problems whose `images` are absolute paths of files on disk. Images
that a release embeds as bytes (parquet, hub) are written once to a cache directory
(`{data dir}/_images/` by default) and reused on the next load.

A bad record (missing field, missing or unreadable image, answer not among the options) raises
`BenchmarkFormatError` naming the file, the record and what to do. With `on_error="skip"` it is
skipped instead and listed in a `LoadReport`, so a long run reports it rather than dying:

>>> report = LoadReport("mmmu", "data/MMMU")
>>> problems = load_mmmu("data/MMMU", on_error="skip", report=report)
>>> print(report.summary())

`load_benchmark(name, path_or_hub_id, ...)` dispatches by name (see `BENCHMARKS`).
"""

from __future__ import annotations

import ast
import io
import json
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from vlprm.answer_rules import repair_latex_controls
from vlprm.config import ConfigError
from vlprm.data.schema import Problem

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# The 30 MMMU subjects (hub configs), used when the hub cannot list them.
MMMU_SUBJECTS = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory",
    "Basic_Medical_Science", "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science",
    "Design", "Diagnostics_and_Laboratory_Medicine", "Economics", "Electronics",
    "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage", "Marketing",
    "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology",
    "Public_Health", "Sociology",
)

_SKIP_HINT = "Fix or remove the record, or pass on_error='skip' to skip bad records and list them in the load report."


class BenchmarkFormatError(ValueError):
    """A benchmark record is not in the expected released format (message says where and why)."""


class BenchmarkNotFoundError(FileNotFoundError, ConfigError):
    """The benchmark path holds no data in a layout the loader knows (the message says where the
    files were expected). A ConfigError too: an entry point prints it as one line and exits 2."""


class _RecordError(Exception):
    """Raised while converting one record; the loader adds file and record id."""


@dataclass
class LoadReport:
    """What a load did: how many records loaded, which were skipped and why."""

    benchmark: str
    source: str
    loaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record id, reason)
    skipped_files: list[str] = field(default_factory=list)  # the file of each skipped record

    @property
    def reasons(self) -> Counter:
        """Skip counts by reason (the reason text up to its first colon)."""
        return Counter(reason.split(":")[0] for _, reason in self.skipped)

    def summary(self) -> str:
        s = f"{self.benchmark} ({self.source}): loaded {self.loaded}, skipped {len(self.skipped)}"
        if self.skipped:
            s += " [" + "; ".join(f"{n}x {r}" for r, n in self.reasons.most_common()) + "]"
        return s


@dataclass
class ProcessBenchSample:
    """One VisualProcessBench item: a problem, a policy's steps and their human labels.

    labels[i] is 1 (correct), 0 (neutral) or -1 (incorrect) for steps[i], as released.
    """

    id: str
    problem: Problem
    steps: list[str]
    labels: list[int]
    source: str


# --------------------------------------------------------------------------- helpers


# Fields that must be text in every release (a number or a list there is a broken record).
_TEXT_FIELDS = ("question",)
# Fields that are text or a number (answers and ids are numbers in some releases).
_SCALAR_FIELDS = ("id", "answer", "question_type", "pid")


def _require(rec: dict, *names: str) -> None:
    """Every field in names present and non-empty, and of the type its role allows."""
    missing = [n for n in names if rec.get(n) is None or (isinstance(rec.get(n), str) and not rec[n].strip())]
    if missing:
        raise _RecordError(f"missing required field(s) {', '.join(repr(m) for m in missing)}")
    for n in names:
        v = rec[n]
        if n in _TEXT_FIELDS and not isinstance(v, str):
            raise _RecordError(f"field {n!r} must be text, got {type(v).__name__} {_clip(v)}")
        if n in _SCALAR_FIELDS and (isinstance(v, bool) or not isinstance(v, (str, int, float))):
            raise _RecordError(f"field {n!r} must be text or a number, got {type(v).__name__} {_clip(v)}")


def _clip(v: Any, limit: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def _letters_for(options: list[str]) -> list[str]:
    if len(options) > len(LETTERS):
        raise _RecordError(f"{len(options)} options; at most {len(LETTERS)} are supported")
    return list(LETTERS[: len(options)])


def _answer_to_letter(answer: Any, options: list[str]) -> str:
    """Map an answer given as option text (or already a letter) to its option letter."""
    text = str(answer).strip()
    for i, opt in enumerate(options):
        if str(opt).strip() == text:
            return LETTERS[i]
    lowered = [str(o).strip().lower() for o in options]
    if text.lower() in lowered:
        return LETTERS[lowered.index(text.lower())]
    raise _RecordError(f"answer {text!r} is not one of the options {options!r}")


_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def infer_answer_type(answer: str) -> str:
    """integer / float for plain numbers, expression for LaTeX-ish math, else text."""
    a = str(answer).strip().strip("$").strip()
    if _INT_RE.match(a):
        return "integer"
    if _FLOAT_RE.match(a):
        return "float"
    if re.search(r"[\\^=]|\d\s*/\s*\d|\b(sqrt|frac|pi)\b", a):
        return "expression"
    return "text"


def _is_missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)[:150]


_PIL_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif"}


def _decode_fully(source: Callable[[], Any]) -> str:
    """Check an image the way it will be used, at load time: its structure (`verify`: a PNG cut
    before its end chunk) and every pixel (`load`: a JPEG or PNG cut mid-data, which `verify`
    lets through). Returns the format; raises what PIL raises."""
    from PIL import Image

    with Image.open(source()) as im:
        fmt = im.format or "PNG"
        im.verify()
    with Image.open(source()) as im:  # verify() leaves the image unusable: decode a fresh one
        im.load()
    return fmt


def _decode_failure(e: BaseException) -> str:
    """The skip reason of an image that does not decode: "truncated image" or "corrupt image"."""
    return "truncated image" if "truncated" in str(e).lower() else "corrupt image"


class _Images:
    """Turns image fields (paths, {bytes, path} dicts, PIL images) into verified files on disk."""

    def __init__(self, cache_dir: str | os.PathLike, check: bool):
        self.cache_dir = Path(cache_dir)
        self.check = check
        self._verified: set[str] = set()

    def from_path(self, rel: str, bases: Iterable[Path], what: str = "image") -> str:
        """Resolve a released relative path against candidate base dirs; first existing wins."""
        rel = str(rel)
        cands = [Path(rel)] if os.path.isabs(rel) else [Path(b) / rel for b in bases]
        for c in cands:
            if c.is_file():
                return self.verify(str(c.resolve()), what)
        tried = ", ".join(str(c) for c in cands)
        raise _RecordError(f"image file not found: {what} {rel!r} (looked in {tried}); "
                           "download/unzip the benchmark images next to the data")

    def from_bytes(self, data: bytes, stem: str, what: str = "image") -> str:
        """Write embedded image bytes to the cache (unchanged, extension from the format)."""
        try:
            fmt = _decode_fully(lambda: io.BytesIO(data))
        except Exception as e:  # noqa: BLE001 - any decode failure means a corrupt image
            raise _RecordError(f"{_decode_failure(e)}: embedded {what} bytes cannot be decoded ({e}); "
                               "re-download the benchmark") from None
        path = self.cache_dir / f"{_safe_name(stem)}.{_PIL_EXT.get(fmt, fmt.lower())}"
        if not (path.is_file() and path.stat().st_size == len(data)):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic: concurrent loaders never see half a file
        self._verified.add(str(path.resolve()))
        return str(path.resolve())

    def from_pil(self, img, stem: str) -> str:
        path = self.cache_dir / f"{_safe_name(stem)}.png"
        if not path.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            img.save(tmp, format="PNG")
            os.replace(tmp, path)
        return str(path.resolve())

    def from_value(self, value: Any, stem: str, bases: Iterable[Path], what: str = "image") -> str:
        """Any released image field: a path string, an HF {bytes, path} dict, or a PIL image."""
        if isinstance(value, str):
            return self.from_path(value, bases, what)
        if isinstance(value, dict):
            if value.get("bytes"):
                return self.from_bytes(value["bytes"], stem, what)
            if value.get("path"):
                return self.from_path(value["path"], bases, what)
            raise _RecordError(f"{what} has neither bytes nor path")
        if hasattr(value, "save"):  # PIL image from a decoded hub dataset
            return self.from_pil(value, stem)
        raise _RecordError(f"{what} has an unsupported value of type {type(value).__name__}")

    def verify(self, path: str, what: str = "image") -> str:
        if not self.check or path in self._verified:
            return path
        try:
            _decode_fully(lambda: path)
        except Exception as e:  # noqa: BLE001 - any decode failure means an unusable image
            raise _RecordError(f"{_decode_failure(e)}: {what} {path} cannot be decoded ({e}); "
                               "re-download the image or drop the record") from None
        self._verified.add(path)
        return path


@dataclass
class _Raw:
    """One raw record and where it came from, for error messages."""

    file: str
    where: str  # "line 3", "row 7", "key '12'"
    rid: str
    data: Any


def _repair_raw_text(raw: _Raw) -> _Raw:
    """raw with its text fields' LaTeX control characters repaired, before a converter strips
    them as whitespace ("\\x0crac{1}{2}".strip() loses the "\\f")."""
    if not isinstance(raw.data, dict):
        return raw
    data = {k: repair_latex_controls(v) if isinstance(v, str)
            else [repair_latex_controls(x) for x in v] if isinstance(v, list) else v
            for k, v in raw.data.items()}
    return _Raw(raw.file, raw.where, raw.rid, data)


def _repair_latex_text(item: Any) -> Any:
    """A converted Problem with the control characters that a Python literal left in its LaTeX
    (MMMU's options and answer lists) repaired in question, options, answer and solution texts."""
    if not isinstance(item, Problem):
        return item
    item.question = repair_latex_controls(item.question)
    item.answer = repair_latex_controls(item.answer)
    if item.options is not None:
        item.options = [repair_latex_controls(o) for o in item.options]
    meta = item.metadata
    for k in ("solution", "explanation", "answer_text", "query"):
        if isinstance(meta.get(k), str):
            meta[k] = repair_latex_controls(meta[k])
    if isinstance(meta.get("accepted_answers"), list):
        meta["accepted_answers"] = [repair_latex_controls(a) for a in meta["accepted_answers"]]
    return item


def _collect(raws: Iterable[_Raw], convert: Callable[[_Raw], Any], *, benchmark: str, source: str,
             on_error: str, report: LoadReport | None, limit: int | None) -> list:
    """Convert raw records, raising or skipping bad ones; fills report; stops at limit."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    report = report if report is not None else LoadReport(benchmark, source)
    out, seen = [], set()
    try:
        from tqdm import tqdm
        it = tqdm(raws, desc=f"load {benchmark}", unit="rec", disable=None, leave=False)
    except ImportError:  # tqdm is a declared dependency; stay usable without it
        it = raws
    for raw in it:
        if limit is not None and len(out) >= limit:
            break
        try:
            if raw.rid in seen:
                raise _RecordError(f"duplicate id {raw.rid!r}: ids must be unique within a benchmark")
            try:
                item = _repair_latex_text(convert(_repair_raw_text(raw)))
            except (TypeError, AttributeError, KeyError, IndexError, ValueError) as e:
                # A field of a type no check above foresaw: this record is bad, not the loader.
                raise _RecordError(f"malformed record ({type(e).__name__}: {e})") from None
        except _RecordError as e:
            if on_error == "raise":
                raise BenchmarkFormatError(f"{raw.file}: record {raw.rid} ({raw.where}): {e}. {_SKIP_HINT}") from None
            report.skipped.append((raw.rid, str(e)))
            report.skipped_files.append(raw.file)
            continue
        seen.add(raw.rid)
        out.append(item)
    report.loaded += len(out)
    return out


def _iter_jsonl(path: Path, id_fn: Callable[[int, dict], str]) -> Iterator[_Raw]:
    """Records of a JSON-lines file; a malformed line becomes a record that fails to convert."""
    with open(path, "r", encoding="utf-8") as f:
        idx = 0
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("line is not a JSON object")
                rid = str(id_fn(idx, rec))
            except (json.JSONDecodeError, ValueError) as e:
                yield _Raw(str(path), f"line {lineno}", str(id_fn(idx, {})), _BadLine(str(e)))
            else:
                yield _Raw(str(path), f"line {lineno}", rid, rec)
            idx += 1


@dataclass
class _BadLine:
    error: str


def _check_bad_line(raw: _Raw) -> dict:
    if isinstance(raw.data, _BadLine):
        raise _RecordError(f"not valid JSON ({raw.data.error})")
    return raw.data


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001
        raise BenchmarkFormatError(f"{path}: cannot read parquet file ({e}); re-download it") from None


def _is_local(path_or_hub_id: str | os.PathLike) -> bool:
    p = os.fspath(path_or_hub_id)
    if os.path.exists(p):
        return True
    if re.fullmatch(r"[\w.-]+/[\w.-]+", p) and not p.startswith("."):
        return False  # looks like owner/name and no such local path: a hub id
    raise BenchmarkNotFoundError(f"benchmark data not found: {p} does not exist (give the directory or file "
                            "as released, or a datasets hub id like 'MMMU/MMMU')")


def _hub_rows(hub_id: str, split: str, config: str | None = None) -> list[dict]:
    """Rows of a hub dataset with image columns left undecoded ({bytes, path} dicts)."""
    import datasets

    try:
        args = (hub_id, config) if config else (hub_id,)
        ds = datasets.load_dataset(*args, split=split)
    except Exception as e:  # noqa: BLE001
        raise BenchmarkNotFoundError(f"{hub_id!r} is not a local path, and loading it from the hub (config {config}, "
                                f"split {split}) failed: {e}. Pass an existing local path, or check the hub id "
                                "and network") from e
    for name, feat in ds.features.items():
        if isinstance(feat, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
    return list(ds)


def _hub_cache(hub_id: str, split: str) -> Path:
    root = os.environ.get("VLPRM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vlprm")
    return Path(root) / "benchmarks" / _safe_name(hub_id) / split / "_images"


def _check_options_type(options: Any) -> list[str]:
    if not isinstance(options, (list, tuple)):
        raise _RecordError(f"options must be a list, got {type(options).__name__}")
    return [str(o) for o in options]


# --------------------------------------------------------------------------- MMMU

_MMMU_IMG_RE = re.compile(r"<image (\d+)>")


def _mmmu_files(root: Path, split: str) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(root.glob(f"*/{split}-*.parquet")) + sorted(root.glob(f"{split}-*.parquet"))
    if not files:
        files = sorted(root.glob("*.parquet"))  # flat directory of parquet files
    if not files:
        raise BenchmarkNotFoundError(f"no MMMU parquet files in {root} (expected {{Subject}}/{split}-*.parquet "
                                "as in the MMMU/MMMU hub repo, or a flat directory of .parquet files)")
    return files


def _mmmu_convert(raw: _Raw, images: _Images, base: Path) -> Problem:
    rec = raw.data
    _require(rec, "id", "question", "answer", "question_type")
    qtype = rec["question_type"]
    opts_raw = rec.get("options")
    try:
        options = ast.literal_eval(opts_raw) if isinstance(opts_raw, str) else list(opts_raw or [])
    except (ValueError, SyntaxError) as e:
        raise _RecordError(f"options {opts_raw!r} is not a Python list literal ({e})") from None
    options = _check_options_type(options)

    # images[k-1] must be <image k>: take image_1..image_7 in order and refuse gaps.
    paths, present = [], []
    for k in range(1, 8):
        v = rec.get(f"image_{k}")
        if v is None:
            continue
        present.append(k)
        paths.append(images.from_value(v, f"{rec['id']}_{k}", [base], what=f"image_{k}"))
    if present != list(range(1, len(present) + 1)):
        raise _RecordError(f"image columns {present} are not contiguous from image_1, so <image k> "
                           "cannot map to images[k-1]")
    text_all = rec["question"] + " " + " ".join(options)
    referenced = sorted({int(k) for k in _MMMU_IMG_RE.findall(text_all)})
    missing = [k for k in referenced if k > len(paths)]
    if missing:
        raise _RecordError(f"question/options reference <image {missing[0]}> but image_{missing[0]} is empty")

    answer = str(rec["answer"]).strip()
    meta = {
        "subject": rec.get("subject") or _mmmu_subject(rec["id"]),
        "subfield": rec.get("subfield"),
        "topic_difficulty": rec.get("topic_difficulty"),
        "img_type": _maybe_literal(rec.get("img_type")),
        "question_type": qtype,
        "explanation": rec.get("explanation"),
        "referenced_images": referenced,
    }
    if qtype == "multiple-choice":
        if not options:
            raise _RecordError("question_type is 'multiple-choice' but options is empty")
        letters = _letters_for(options)
        if answer not in letters:
            raise _RecordError(f"answer {answer!r} is not an option letter {letters[0]}-{letters[-1]}")
        return Problem(id=str(rec["id"]), benchmark="mmmu", question=rec["question"], images=paths,
                       options=options, answer=answer, answer_type="multiple_choice", metadata=meta)
    # Open questions sometimes list several accepted answers as a Python list literal.
    accepted = _maybe_literal(answer)
    if isinstance(accepted, list) and accepted:
        meta["accepted_answers"] = [str(a) for a in accepted]
        answer = str(accepted[0])
    return Problem(id=str(rec["id"]), benchmark="mmmu", question=rec["question"], images=paths,
                   options=None, answer=answer, answer_type=infer_answer_type(answer), metadata=meta)


def _mmmu_subject(rid: str) -> str | None:
    m = re.match(r"^(?:validation|dev|test)_(.+)_\d+$", rid)
    return m.group(1) if m else None


def _maybe_literal(x: Any) -> Any:
    if isinstance(x, str) and x.strip().startswith("["):
        try:
            return ast.literal_eval(x)
        except (ValueError, SyntaxError):
            return x
    return x


def load_mmmu(path_or_hub_id: str | os.PathLike = "MMMU/MMMU", split: str | None = None, limit: int | None = None,
              *, subjects: Iterable[str] | None = None, on_error: str = "raise", check_images: bool = True,
              image_cache_dir: str | os.PathLike | None = None, report: LoadReport | None = None) -> list[Problem]:
    """Load MMMU (default split "validation") from the hub layout `{Subject}/{split}-*.parquet`,
    a flat directory of parquet files, one parquet file, or the hub id "MMMU/MMMU".

    Questions keep their `<image k>` tokens and `images[k-1]` is the file of `<image k>`;
    metadata["referenced_images"] lists the k referenced in question and options.
    """
    split = split or "validation"
    subj = set(subjects) if subjects else None
    if _is_local(path_or_hub_id):
        root = Path(path_or_hub_id).resolve()
        base = root if root.is_dir() else root.parent
        images = _Images(image_cache_dir or base / "_images", check_images)

        def raws():
            for f in _mmmu_files(root, split):
                if subj and f.parent.name not in subj and not any(s in f.name for s in subj):
                    continue
                for i, rec in enumerate(_read_parquet(f)):
                    yield _Raw(str(f), f"row {i}", str(rec.get("id", f"{f.stem}:{i}")), rec)
        source = str(root)
    else:
        hub_id, base = str(path_or_hub_id), Path(".")
        images = _Images(image_cache_dir or _hub_cache(hub_id, split), check_images)
        names = list(subj) if subj else _hub_configs(hub_id) or list(MMMU_SUBJECTS)

        def raws():
            for name in names:
                for i, rec in enumerate(_hub_rows(hub_id, split, name)):
                    yield _Raw(f"{hub_id}[{name}/{split}]", f"row {i}", str(rec.get("id", f"{name}:{i}")), rec)
        source = hub_id
    return _collect(raws(), lambda r: _mmmu_convert(r, images, base), benchmark="mmmu", source=source,
                    on_error=on_error, report=report, limit=limit)


def _hub_configs(hub_id: str) -> list[str]:
    try:
        import datasets

        return [c for c in datasets.get_dataset_config_names(hub_id) if c != "default"]
    except Exception:  # noqa: BLE001 - fall back to the known subject list
        return []


# --------------------------------------------------------------------------- MathVista


def _mathvista_hint(question_type: str, answer_type: str, precision: Any, unit: Any) -> str:
    """The answer-format hint MathVista's own query adds (which type and how many decimals)."""
    if question_type == "multi_choice":
        return ""
    if answer_type == "integer":
        hint = "Answer with an integer."
    elif answer_type == "float":
        if precision is not None and int(precision) >= 1:
            n = int(precision)
            words = {1: "one", 2: "two", 3: "three"}
            example = "1." + "234567"[:n]
            hint = (f"Answer with a floating-point number with {words.get(n, n)} decimal "
                    f"place{'s' if n > 1 else ''}, e.g. {example}.")
        else:
            hint = "Answer with a floating-point number."
    elif answer_type == "list":
        hint = "Answer with a Python list."
    else:
        hint = ""
    if unit:
        hint = (hint + f" Give the value in {unit}, without the unit in the box.").strip()
    return hint


def _mathvista_convert(raw: _Raw, images: _Images, bases: list[Path]) -> Problem:
    rec = raw.data
    _require(rec, "question", "answer", "question_type")
    pid = str(rec.get("pid") or raw.rid)
    precision = None if _is_missing(rec.get("precision")) else rec.get("precision")
    if isinstance(precision, float) and precision.is_integer():
        precision = int(precision)
    unit = rec.get("unit") or None
    src_meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    qtype, atype = rec["question_type"], rec.get("answer_type") or "text"

    # Prefer the released image file; fall back to the parquet's embedded decoded_image.
    img = rec.get("image")
    if img and isinstance(img, str):
        try:
            path = images.from_path(img, bases)
        except _RecordError:
            if rec.get("decoded_image") is None:
                raise
            path = images.from_value(rec["decoded_image"], pid, bases, "decoded_image")
    elif rec.get("decoded_image") is not None:
        path = images.from_value(rec["decoded_image"], pid, bases, "decoded_image")
    else:
        raise _RecordError("missing required field 'image' (and no 'decoded_image')")

    meta = {**src_meta, "pid": pid, "question_type": qtype, "source_answer_type": atype,
            "precision": precision, "unit": unit, "query": rec.get("query"),
            "answer_hint": _mathvista_hint(qtype, atype, precision, unit)}
    answer = str(rec["answer"]).strip()
    if qtype == "multi_choice":
        choices = rec.get("choices")
        if not choices:
            raise _RecordError("question_type is 'multi_choice' but choices is empty")
        options = _check_options_type(choices)
        _letters_for(options)
        meta["answer_text"] = answer
        return Problem(id=pid, benchmark="mathvista", question=rec["question"], images=[path],
                       options=options, answer=_answer_to_letter(answer, options),
                       answer_type="multiple_choice", metadata=meta)
    if qtype != "free_form":
        raise _RecordError(f"question_type {qtype!r} is neither 'multi_choice' nor 'free_form'")
    # MathVista's "list" answers have no schema type of their own; they are compared as text.
    our_type = atype if atype in ("integer", "float", "text") else "text"
    return Problem(id=pid, benchmark="mathvista", question=rec["question"], images=[path], options=None,
                   answer=answer, answer_type=our_type, metadata=meta)


def load_mathvista(path_or_hub_id: str | os.PathLike = "AI4Math/MathVista", split: str | None = None,
                   limit: int | None = None, *, on_error: str = "raise", check_images: bool = True,
                   image_cache_dir: str | os.PathLike | None = None,
                   report: LoadReport | None = None) -> list[Problem]:
    """Load MathVista (default split "testmini").

    Accepts the released JSON (a dict keyed by pid, e.g. `testmini.json` with `images/`; a
    `query.json` pid->query map beside it is merged in), the hub parquet layout
    (`data/{split}-*.parquet`, with `decoded_image`), either file directly, or the hub id.
    Multiple choice answers become option letters (the text stays in metadata["answer_text"]);
    free-form keep precision and unit in metadata, and metadata["answer_hint"] says the format.
    """
    split = split or "testmini"
    if _is_local(path_or_hub_id):
        root = Path(path_or_hub_id).resolve()
        files = _find_one(root, [f"{split}.json", f"data/{split}.json", f"{split}-*.parquet",
                                 f"data/{split}-*.parquet"], "MathVista", split)
        base = files[0].parent
        bases = [base, base.parent] + ([root] if root.is_dir() else [])
        images = _Images(image_cache_dir or base / "_images", check_images)

        def raws():
            for f in files:
                if f.suffix == ".json":
                    data = _read_json(f)
                    if not isinstance(data, dict):
                        raise BenchmarkFormatError(f"{f}: expected a JSON object keyed by pid (MathVista "
                                                   f"{split}.json), got {type(data).__name__}")
                    queries = _read_queries(f.parent / "query.json")
                    for key, rec in data.items():
                        if isinstance(rec, dict) and "query" not in rec and key in queries:
                            rec = {**rec, "query": queries[key]}
                        data = rec if isinstance(rec, dict) else _BadLine("the value is not an object")
                        yield _Raw(str(f), f"key {key!r}", str(key), data)
                else:
                    for i, rec in enumerate(_read_parquet(f)):
                        yield _Raw(str(f), f"row {i}", str(rec.get("pid", i)), rec)
        source = str(root)
    else:
        hub_id = str(path_or_hub_id)
        bases = []
        images = _Images(image_cache_dir or _hub_cache(hub_id, split), check_images)

        def raws():
            for i, rec in enumerate(_hub_rows(hub_id, split)):
                yield _Raw(f"{hub_id}[{split}]", f"row {i}", str(rec.get("pid", i)), rec)
        source = hub_id
    return _collect(raws(), lambda r: _mathvista_convert(_with_checked(r), images, bases), benchmark="mathvista",
                    source=source, on_error=on_error, report=report, limit=limit)


def _with_checked(raw: _Raw) -> _Raw:
    _check_bad_line(raw)
    return raw


def _read_json(path: Path) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise BenchmarkFormatError(f"{path}: not valid JSON ({e}); re-download the file") from None


def _read_queries(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = _read_json(path)
    return {str(k): v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _find_one(root: Path, patterns: list[str], name: str, split: str) -> list[Path]:
    """The data file(s) of a split: root itself if a file, else the first pattern that matches."""
    if root.is_file():
        return [root]
    for pat in patterns:
        found = sorted(root.glob(pat))
        if found:
            return found
    raise BenchmarkNotFoundError(f"no {name} {split!r} data in {root}: looked for {', '.join(patterns)}. "
                            "Point to the directory as released or to the data file itself")


# --------------------------------------------------------------------------- MathVision


def _mathvision_convert(raw: _Raw, images: _Images, bases: list[Path]) -> Problem:
    rec = _check_bad_line(raw)
    _require(rec, "id", "question", "answer")
    rid = str(rec["id"])
    if rec.get("image"):
        try:
            path = images.from_path(rec["image"], bases)
        except _RecordError:
            if rec.get("decoded_image") is None:
                raise
            path = images.from_value(rec["decoded_image"], rid, bases, "decoded_image")
    elif rec.get("decoded_image") is not None:
        path = images.from_value(rec["decoded_image"], rid, bases, "decoded_image")
    else:
        raise _RecordError("missing required field 'image' (and no 'decoded_image')")
    options = _check_options_type(rec.get("options") or [])
    answer = str(rec["answer"]).strip()
    meta = {"level": rec.get("level"), "subject": rec.get("subject"), "solution": rec.get("solution")}
    if options:
        letters = _letters_for(options)
        if answer not in letters:
            # Some releases give the option text; map it, else the record is inconsistent.
            answer = _answer_to_letter(answer, options)
        return Problem(id=rid, benchmark="mathvision", question=rec["question"], images=[path], options=options,
                       answer=answer, answer_type="multiple_choice", metadata=meta)
    return Problem(id=rid, benchmark="mathvision", question=rec["question"], images=[path], options=None,
                   answer=answer, answer_type=infer_answer_type(answer), metadata=meta)


def load_mathvision(path_or_hub_id: str | os.PathLike = "MathLLMs/MathVision", split: str | None = None,
                    limit: int | None = None, *, on_error: str = "raise", check_images: bool = True,
                    image_cache_dir: str | os.PathLike | None = None,
                    report: LoadReport | None = None) -> list[Problem]:
    """Load MATH-Vision (default split "test"): `{split}.jsonl` (GitHub `data/`, images in
    `images/` at the repo root), the hub parquet layout (`data/{split}-*.parquet` with
    `decoded_image`), either file directly, or the hub id.

    A non-empty `options` list makes a multiple-choice problem (answer a letter A-E); an empty
    one is free-form. Options are often also written in the question text; it is kept as is.
    """
    split = split or "test"
    if _is_local(path_or_hub_id):
        root = Path(path_or_hub_id).resolve()
        files = _find_one(root, [f"{split}.jsonl", f"data/{split}.jsonl", f"{split}-*.parquet",
                                 f"data/{split}-*.parquet"], "MathVision", split)
        base = files[0].parent
        bases = [base, base.parent] + ([root] if root.is_dir() else [])
        images = _Images(image_cache_dir or base / "_images", check_images)

        def raws():
            for f in files:
                if f.suffix == ".jsonl":
                    yield from _iter_jsonl(f, lambda i, r: r.get("id", f"line{i + 1}"))
                else:
                    for i, rec in enumerate(_read_parquet(f)):
                        yield _Raw(str(f), f"row {i}", str(rec.get("id", i)), rec)
        source = str(root)
    else:
        hub_id, bases = str(path_or_hub_id), []
        images = _Images(image_cache_dir or _hub_cache(hub_id, split), check_images)

        def raws():
            for i, rec in enumerate(_hub_rows(hub_id, split)):
                yield _Raw(f"{hub_id}[{split}]", f"row {i}", str(rec.get("id", i)), rec)
        source = hub_id
    return _collect(raws(), lambda r: _mathvision_convert(r, images, bases), benchmark="mathvision",
                    source=source, on_error=on_error, report=report, limit=limit)


# --------------------------------------------------------------------------- PuzzleVQA / AlgoPuzzleVQA

_PUZZLE_CORE = ("image", "question", "options", "answer", "metadata")


def _json_files(d: Path) -> list[Path]:
    # Names starting with "_" or "." are not puzzle files (caches, manifests).
    return sorted(p for p in list(d.glob("*.json")) + list(d.glob("*.jsonl")) if not p.name.startswith(("_", ".")))


def _looks_like_puzzles(path: Path, lines: int = 5) -> bool:
    """Whether one of the first non-empty lines of a file is a JSON object with a "question"."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            seen = 0
            for line in f:
                if not line.strip():
                    continue
                seen += 1
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    rec = None
                if isinstance(rec, dict) and "question" in rec:
                    return True
                if seen >= lines:
                    break
    except OSError:
        return False
    return False


def _puzzle_dirs_below(root: Path) -> list[Path]:
    """Directories up to two levels below root that hold puzzle files (where the data really is)."""
    found = []
    for d in sorted(p for pat in ("*", "*/*") for p in root.glob(pat) if p.is_dir() and not p.name.startswith(".")):
        if any(_looks_like_puzzles(f) for f in _json_files(d)[:3]):
            found.append(d)
    return found


def _puzzle_files(root: Path) -> list[Path]:
    """The puzzle files of a data directory. Other JSON files there (a repo's configs, when the
    path points at a checkout instead of its data/) are left out with a warning; a directory with
    no puzzle file at all is an error saying where the data files were expected."""
    if root.is_file():
        return [root]
    files = _json_files(root)
    puzzle_files = [f for f in files if _looks_like_puzzles(f)]
    if not puzzle_files:
        below = _puzzle_dirs_below(root)
        where = (f"; the puzzle files are in {', '.join(str(d) for d in below[:3])}: point the path there"
                 if below else "")
        other = f" (not puzzle records: {', '.join(f.name for f in files[:5])})" if files else ""
        raise BenchmarkNotFoundError(f"no puzzle files in {root}{other}: expected JSON-lines files of puzzles "
                                f"(image, question, options, answer) directly in it, e.g. data/triangle.json as in "
                                f"declare-lab/LLM-PuzzleTest{where}")
    for f in files:
        if f not in puzzle_files:
            log.warning("%s: not a puzzle file (no JSON-lines puzzle record in its first lines); left out", f)
    return puzzle_files


def _puzzle_convert(raw: _Raw, images: _Images, bases: list[Path], benchmark: str, puzzle: str,
                    index: int) -> Problem:
    rec = _check_bad_line(raw)
    _require(rec, "image", "question", "answer")
    path = images.from_value(rec["image"], raw.rid, bases)
    options = _check_options_type(rec.get("options") or [])
    meta = dict(rec.get("metadata") or {}) if isinstance(rec.get("metadata"), dict) else {}
    meta.update({k: v for k, v in rec.items() if k not in _PUZZLE_CORE})
    meta.update({"puzzle": puzzle, "index": index})
    answer = str(rec["answer"]).strip()
    if options:
        _letters_for(options)
        meta["answer_text"] = answer
        return Problem(id=raw.rid, benchmark=benchmark, question=rec["question"], images=[path], options=options,
                       answer=_answer_to_letter(answer, options), answer_type="multiple_choice", metadata=meta)
    # Early AlgoPuzzleVQA releases have no options: open-ended answers.
    return Problem(id=raw.rid, benchmark=benchmark, question=rec["question"], images=[path], options=None,
                   answer=answer, answer_type=infer_answer_type(answer), metadata=meta)


def _load_puzzle_dir(benchmark: str, path_or_hub_id, split, limit, *, first_n_per_type, puzzles, on_error,
                     check_images, image_cache_dir, report) -> list[Problem]:
    want = set(puzzles) if puzzles else None
    if _is_local(path_or_hub_id):
        root = Path(path_or_hub_id).resolve()
        data_dir = root if root.is_dir() else root.parent
        images = _Images(image_cache_dir or data_dir / "_images", check_images)
        bases = [data_dir, data_dir.parent]

        def raws():
            for f in _puzzle_files(root):
                puzzle = f.stem
                if want and puzzle not in want:
                    continue
                for n, raw in enumerate(_iter_jsonl(f, lambda i, r, p=puzzle: r.get("id") or f"{p}_{i:04d}")):
                    if first_n_per_type is not None and n >= first_n_per_type:
                        break  # the common subset is the first n records of each file
                    yield raw, puzzle, n
        source = str(root)
    else:
        hub_id, bases = str(path_or_hub_id), []
        split = split or "train"
        images = _Images(image_cache_dir or _hub_cache(hub_id, split), check_images)

        def raws():
            counts: Counter = Counter()
            for i, rec in enumerate(_hub_rows(hub_id, split)):
                puzzle = str(rec.get("puzzle") or rec.get("category") or rec.get("type") or benchmark)
                if want and puzzle not in want:
                    continue
                n = counts[puzzle]
                counts[puzzle] += 1
                if first_n_per_type is not None and n >= first_n_per_type:
                    continue
                yield _Raw(f"{hub_id}[{split}]", f"row {i}", str(rec.get("id") or f"{puzzle}_{n:04d}"), rec), puzzle, n
        source = hub_id

    def convert(item):
        raw, puzzle, n = item
        return _puzzle_convert(raw, images, bases, benchmark, puzzle, n)

    # Keep file/line/id on the outer _Raw so errors still name them; carry puzzle and index inside.
    tagged = (_Raw(raw.file, raw.where, raw.rid, (raw, puzzle, n)) for raw, puzzle, n in raws())
    return _collect(tagged, lambda r: convert(r.data), benchmark=benchmark, source=source,
                    on_error=on_error, report=report, limit=limit)


def load_puzzlevqa(path_or_hub_id: str | os.PathLike, split: str | None = None, limit: int | None = None, *,
                   first_n_per_type: int | None = None, puzzles: Iterable[str] | None = None,
                   on_error: str = "raise", check_images: bool = True,
                   image_cache_dir: str | os.PathLike | None = None, report: LoadReport | None = None,
                   benchmark: str = "puzzlevqa") -> list[Problem]:
    """Load PuzzleVQA (declare-lab/LLM-PuzzleTest, `PuzzleVQA/data`): a directory of
    `{puzzle}.json` JSON-lines files with image paths relative to that directory (or one file).

    Answers become option letters (text kept in metadata["answer_text"]); caption, explanation,
    deduction and any extra fields (our generator's id, family, perception_facts, ...) go to
    metadata, a record's own "metadata" dict is merged in. id is the record's "id" or
    "{puzzle}_{index:04d}". first_n_per_type=50 gives the common subset (first 50 per file).
    """
    return _load_puzzle_dir(benchmark, path_or_hub_id, split, limit, first_n_per_type=first_n_per_type,
                            puzzles=puzzles, on_error=on_error, check_images=check_images,
                            image_cache_dir=image_cache_dir, report=report)


def load_algopuzzlevqa(path_or_hub_id: str | os.PathLike, split: str | None = None, limit: int | None = None,
                       **kw) -> list[Problem]:
    """Load AlgoPuzzleVQA (`AlgoPuzzleVQA/data`): same layout as PuzzleVQA; the "solution"
    dict goes to metadata. Records without options (early releases) load as free-form."""
    return load_puzzlevqa(path_or_hub_id, split, limit, benchmark="algopuzzlevqa", **kw)


def load_puzzles(path_or_hub_id: str | os.PathLike, split: str | None = None, limit: int | None = None,
                 **kw) -> list[Problem]:
    """Load our generated puzzle set (`vlprm.puzzles` output, PuzzleVQA format)."""
    return load_puzzlevqa(path_or_hub_id, split, limit, benchmark="puzzles", **kw)


# --------------------------------------------------------------------------- VisualProcessBench


def _vpb_convert(raw: _Raw, images: _Images, bases: list[Path]) -> ProcessBenchSample:
    rec = _check_bad_line(raw)
    _require(rec, "image", "question", "answer", "response")
    resp = rec["response"]
    if isinstance(resp, str):  # the hub card types it as a string; accept a JSON-encoded dict
        try:
            resp = json.loads(resp)
        except json.JSONDecodeError:
            raise _RecordError("response is a string but not JSON with 'steps' and 'process_correctness'") from None
    if not isinstance(resp, dict) or "steps" not in resp or "process_correctness" not in resp:
        raise _RecordError("missing required field(s) 'response.steps' / 'response.process_correctness'")
    steps, labels = resp["steps"], resp["process_correctness"]
    if not isinstance(steps, list) or not isinstance(labels, list):
        raise _RecordError("response.steps and response.process_correctness must be lists")
    if len(steps) != len(labels):
        raise _RecordError(f"{len(steps)} steps but {len(labels)} process_correctness labels")
    try:
        labels = [int(x) for x in labels]
    except (TypeError, ValueError):
        raise _RecordError(f"process_correctness must be integers 1/0/-1, got {labels!r}") from None
    if any(x not in (1, 0, -1) for x in labels):
        raise _RecordError(f"process_correctness must be 1/0/-1, got {labels!r}")
    imgs = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
    paths = [images.from_value(v, f"{raw.rid}_{k + 1}", bases) for k, v in enumerate(imgs)]
    source = str(rec.get("data_source") or "unknown")
    answer = str(rec["answer"]).strip()
    problem = Problem(id=raw.rid, benchmark="visualprocessbench", question=rec["question"], images=paths,
                      options=None, answer=answer, answer_type=infer_answer_type(answer),
                      metadata={"data_source": source, "policy_model": rec.get("policy_model")})
    return ProcessBenchSample(id=raw.rid, problem=problem, steps=[str(s) for s in steps], labels=labels,
                              source=source)


def load_visualprocessbench(path_or_hub_id: str | os.PathLike = "OpenGVLab/VisualProcessBench",
                            split: str | None = None, limit: int | None = None, *, on_error: str = "raise",
                            check_images: bool = True, image_cache_dir: str | os.PathLike | None = None,
                            report: LoadReport | None = None) -> list[ProcessBenchSample]:
    """Load VisualProcessBench: `test.jsonl` (or the file itself) with images relative to the
    dataset root (unzipped `images.zip`). `image` may be one path or a list. id is the
    record's "id" or "vpb_{index:05d}". With a hub id the repo is downloaded and unzipped.
    """
    split = split or "test"
    if not _is_local(path_or_hub_id):
        path_or_hub_id = _vpb_snapshot(str(path_or_hub_id))
    root = Path(path_or_hub_id).resolve()
    f = _find_one(root, [f"{split}.jsonl", f"data/{split}.jsonl"], "VisualProcessBench", split)[0]
    bases = [f.parent, f.parent.parent] + ([root] if root.is_dir() else [])
    images = _Images(image_cache_dir or f.parent / "_images", check_images)
    raws = _iter_jsonl(f, lambda i, r: r.get("id") or f"vpb_{i:05d}")
    return _collect(raws, lambda r: _vpb_convert(r, images, bases), benchmark="visualprocessbench",
                    source=str(root), on_error=on_error, report=report, limit=limit)


def _vpb_snapshot(hub_id: str) -> str:
    """Download the dataset repo (test.jsonl + images.zip) and unzip the images once."""
    import zipfile

    from huggingface_hub import snapshot_download

    local = Path(snapshot_download(repo_id=hub_id, repo_type="dataset"))
    target = Path(os.environ.get("VLPRM_CACHE") or Path.home() / ".cache" / "vlprm") / "benchmarks" / _safe_name(hub_id)
    if not (target / "test.jsonl").exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("test.jsonl",):
            (target / name).write_bytes((local / name).read_bytes())
        if (local / "images.zip").exists():
            with zipfile.ZipFile(local / "images.zip") as z:
                z.extractall(target)
    return str(target)


# --------------------------------------------------------------------------- registry

BENCHMARKS: dict[str, Callable[..., list]] = {
    "mmmu": load_mmmu,
    "mathvista": load_mathvista,
    "mathvision": load_mathvision,
    "puzzlevqa": load_puzzlevqa,
    "algopuzzlevqa": load_algopuzzlevqa,
    "puzzles": load_puzzles,
    "visualprocessbench": load_visualprocessbench,
}


def load_benchmark(name: str, path_or_hub_id: str | os.PathLike, split: str | None = None,
                   limit: int | None = None, *, report: bool | LoadReport = False, **kw):
    """Load a benchmark by name (one of `BENCHMARKS`).

    Returns list[Problem] (list[ProcessBenchSample] for "visualprocessbench"). Keyword arguments
    go to the loader: on_error ("raise" | "skip"), check_images, image_cache_dir,
    first_n_per_type and puzzles (puzzle sets), subjects (mmmu). report=True returns
    (items, LoadReport); a LoadReport instance is filled in place instead.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    rep = report if isinstance(report, LoadReport) else LoadReport(key, os.fspath(path_or_hub_id))
    items = BENCHMARKS[key](path_or_hub_id, split, limit, report=rep, **kw)
    return (items, rep) if report is True else items
