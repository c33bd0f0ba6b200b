"""Append-only JSONL files keyed by a stable id.

Every long run writes one record per finished item and flushes it, so a run killed at any
point (even by SIGKILL, mid-line) resumes where it stopped: a truncated last line is
ignored on read and dropped on the next open for append, and ids already present are skipped.
A malformed line anywhere else is not a killed writer: it is skipped with a warning naming the
file and line, and counted (`JsonlStore.corrupt_lines`), so its record is redone and a summary
can say so. A write that fails (a full disk) removes its partial line and raises
`StoreWriteError`: the run stops with one line and every record written before is kept.
Shards (`--shard i/n`) write separate files that `merge_jsonl` joins by key.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger(__name__)
# Malformed lines skipped so far in this process, by file: warned once each, listed in summaries.
_corrupt_seen: dict[str, set[int]] = {}


def corrupt_lines_seen() -> dict[str, list[int]]:
    """Every malformed (not torn-last) line skipped by this process so far: {file: line numbers}."""
    return {path: sorted(lines) for path, lines in _corrupt_seen.items()}


class StoreWriteError(OSError):
    """A record could not be written (disk full, read-only, ...). The file is left as it was
    before the write, so rerunning after fixing the cause resumes with nothing lost."""


def read_jsonl(path: str | os.PathLike, *, strict: bool = False, bad_lines: list[int] | None = None
               ) -> Iterator[dict]:
    """Yield records of a JSONL file. A missing file yields nothing. A malformed line raises with
    the file and line number when strict. Otherwise a last line cut short by a killed writer is
    ignored, and any other malformed line is skipped with a warning and its line number appended
    to `bad_lines`."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if strict:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({e}); fix or delete the line") from e
                if not raw.endswith("\n"):  # a torn last line: a killed writer, not damage
                    continue
                if bad_lines is not None:
                    bad_lines.append(lineno)
                seen = _corrupt_seen.setdefault(str(path), set())
                if lineno not in seen:  # a file read by several stages is warned about once
                    seen.add(lineno)
                    log.warning("%s:%d: corrupt line skipped (not valid JSON: %s); its record is redone",
                                path, lineno, e.msg)
                continue
            yield rec


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records to a JSONL file atomically (temp file + rename), secrets masked
    (`vlprm.secrets.redact`). Returns the count."""
    from vlprm.secrets import redact

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(redact(json.dumps(r, ensure_ascii=False)) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


class JsonlStore:
    """An append-only JSONL file of records keyed by `key` (default "id").

    >>> store = JsonlStore("out/rollouts.jsonl")
    >>> for item in items:
    ...     if item.id in store: continue      # done in an earlier run
    ...     store.append({"id": item.id, ...})
    """

    def __init__(self, path: str | os.PathLike, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._records: dict[str, dict] = {}
        # Line numbers of malformed lines in the middle of the file (skipped, warned, counted).
        self.corrupt_lines: list[int] = []
        for rec in read_jsonl(self.path, bad_lines=self.corrupt_lines):
            if isinstance(rec, dict) and key in rec:
                self._records[str(rec[key])] = rec  # last write wins
        self._fh = None

    def _repair_tail(self) -> None:
        """Drop a partial last line left by a killed writer, so appends start on a clean line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            cut = f.read().rfind(b"\n") + 1
            f.truncate(cut)

    def __contains__(self, key: Any) -> bool:
        return str(key) in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: Any, default=None):
        return self._records.get(str(key), default)

    def keys(self):
        return self._records.keys()

    def values(self) -> list[dict]:
        return list(self._records.values())

    def append(self, record: dict) -> None:
        """Write one record and sync it to disk (secrets masked, `vlprm.secrets.redact`). A
        failed write leaves the file as it was and raises StoreWriteError."""
        from vlprm.secrets import redact

        if self.key not in record:
            raise KeyError(f"record for {self.path} has no '{self.key}' field")
        data = (redact(json.dumps(record, ensure_ascii=False)) + "\n").encode("utf-8")
        if self._fh is None:
            self._fh = open(self.path, "ab", buffering=0)
        size = os.fstat(self._fh.fileno()).st_size
        try:
            view = memoryview(data)
            while view:  # a raw write may write part of the line before the disk is full
                view = view[self._fh.write(view):]
            os.fsync(self._fh.fileno())
        except OSError as e:
            self._undo_write(size)
            why = "no space left on device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
            err = StoreWriteError(f"cannot write to {self.path}: {why}; the records written before are kept: "
                                  "fix it and rerun to resume")
            err.errno = e.errno
            raise err from None
        self._records[str(record[self.key])] = record

    def _undo_write(self, size: int) -> None:
        """Cut the file back to `size` bytes (drop a partial line) and close it."""
        fh, self._fh = self._fh, None
        try:
            fh.close()
            os.truncate(self.path, size)
        except OSError:  # the next open repairs a torn last line anyway
            pass

    @property
    def corrupt_count(self) -> int:
        """How many malformed lines were skipped in the middle of the file when it was opened."""
        return len(self.corrupt_lines)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_shard(spec: str | None) -> tuple[int, int]:
    """Parse "i/n" (0-based i) into (i, n). None means the whole set (0, 1)."""
    if not spec:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n with 0 <= i < n, got {spec!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard must look like i/n with 0 <= i < n, got {spec!r}")
    return i, n


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Deterministic shard membership by a hash of the key (stable across processes)."""
    i, n = shard
    if n == 1:
        return True
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16)
    return h % n == i


def merge_jsonl(inputs: Iterable[str | os.PathLike], output: str | os.PathLike, key: str = "id",
                sort_key: Callable[[dict], Any] | None = None) -> int:
    """Join several JSONL files by key (later files win on a duplicate key). Returns the count."""
    merged: dict[str, dict] = {}
    for p in inputs:
        for rec in read_jsonl(p):
            if key in rec:
                merged[str(rec[key])] = rec
    recs = list(merged.values())
    recs.sort(key=sort_key or (lambda r: str(r[key])))
    return write_jsonl(output, recs)


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed derived from (global seed, item id, candidate index, ...), never from hash()."""
    s = "\x1f".join(str(p) for p in parts)
    return int(hashlib.sha256(s.encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF
