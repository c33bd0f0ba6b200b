"""Shared parts of the benchmark loaders: errors, the load report, record collection
(raise or skip a bad record), image fields turned into verified files, and file readers."""

from __future__ import annotations

import io
import json
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

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

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


def image_cache_for(dataset_path: str | os.PathLike, configured: str | None = None) -> str:
    """Where loaders write embedded images: the configured dir, else one per dataset
    under $VLPRM_CACHE/images (~/.cache/vlprm), never inside the dataset (which may be read-only)."""
    if configured:
        return str(configured)
    root = os.environ.get("VLPRM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vlprm")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.abspath(os.fspath(dataset_path)).strip("/"))[-150:]
    return os.path.join(root, "images", name)


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


def _local_split(root: Path, patterns: list[str], name: str, split: str, image_cache_dir, check_images: bool):
    """A split in a released local layout: its data files, the dirs its relative image paths
    resolve against (the file's dir, its parent, the given root), and the image handler."""
    files = _find_one(root, patterns, name, split)
    base = files[0].parent
    bases = [base, base.parent] + ([root] if root.is_dir() else [])
    return files, bases, _Images(image_cache_for(base, image_cache_dir), check_images)


def _iter_parquet(path: Path, id_fn) -> Iterator["_Raw"]:
    """Rows of a parquet file as raw records, the id from id_fn(row index, record)."""
    for i, rec in enumerate(_read_parquet(path)):
        yield _Raw(str(path), f"row {i}", str(id_fn(i, rec)), rec)


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
