"""Training data for EVPV: description SFT, step-judge SFT, and DPO preference pairs.

All three write a dataset directory:

    DIR/data.jsonl   one row per example (image paths relative to DIR)
    DIR/images/      the images, named by content hash (copied once)
    DIR/meta.json    {"kind", "rows", "skipped": {reason: count}, ...}

Chat SFT rows (kind "chat_sft"; `python -m experiments.evpv.sft_chat` reads them)::

    {"id": ..., "task": "evpv_describe" | "evpv_step_judge", "images": ["images/ab12.png"],
     "messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "<target JSON>"}]}

DPO rows (kind "dpo"; TRL's conversational preference format with images, `python -m experiments.evpv.dpo_evpv`)::

    {"id": ..., "images": [...], "prompt": [system, user messages], "chosen": [{"role": "assistant",
     "content": ...}], "rejected": [...], "problem_id": ..., "chosen_id": ..., "rejected_id": ...}

Contents are plain strings; the images belong before the text of the first user turn (the TRL
convention), which is where every prompt builder of `vlprm.prompts` puts them, so a training row
renders exactly like the request the model answers at test time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from vlprm.data.store import read_jsonl, stable_seed
from vlprm.evpv.checklist import strip_visual_tags
from vlprm.evpv.description import ImageDescription
from vlprm.prompts import (
    build_evpv_describe_messages,
    build_evpv_step_judge_messages,
    build_policy_messages,
    build_policy_messages_tagged,
)

DATA_FILE = "data.jsonl"
META_FILE = "meta.json"


def flatten_messages(messages: Sequence[dict]) -> tuple[list[dict], list[Any]]:
    """HF multimodal messages -> (messages with string contents, images in order).

    Raises ValueError if an image is anywhere but before the text of the first user turn
    (the position TRL and our SFT collator put images back)."""
    out, images = [], []
    first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    for i, m in enumerate(messages):
        content = m["content"]
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        texts, seen_text = [], False
        for p in content:
            if p.get("type") == "image" or "image" in p:
                if i != first_user or seen_text:
                    raise ValueError("images must come before the text of the first user turn")
                images.append(p.get("image"))
            else:
                texts.append(p.get("text", ""))
                seen_text = True
        out.append({"role": m["role"], "content": "".join(texts)})
    return out, images


def _compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


class DatasetWriter:
    """Collects rows, copies their images into DIR/images, writes data.jsonl and meta.json."""

    def __init__(self, out_dir: str | os.PathLike, kind: str, copy_images: bool = True):
        self.dir = Path(out_dir)
        self.kind = kind
        self.copy_images = copy_images
        self.rows: list[dict] = []
        self.skipped: Counter = Counter()
        self._copied: dict[str, str] = {}

    def _image(self, path: Any) -> str:
        path = os.fspath(path)
        if not self.copy_images:
            return os.path.abspath(path)
        if path in self._copied:
            return self._copied[path]
        with open(path, "rb") as f:
            data = f.read()
        name = f"images/{hashlib.sha256(data).hexdigest()[:20]}{Path(path).suffix.lower() or '.png'}"
        dest = self.dir / name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        self._copied[path] = name
        return name

    def add(self, row: dict) -> None:
        try:
            row["images"] = [self._image(p) for p in row.get("images") or []]
        except OSError as e:
            self.skipped[f"unreadable image ({type(e).__name__})"] += 1
            return
        self.rows.append(row)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def write(self, **meta) -> dict:
        """Write the dataset; returns the meta dict (also saved as meta.json)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / (DATA_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in self.rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, self.dir / DATA_FILE)
        info = {"kind": self.kind, "rows": len(self.rows), "skipped": dict(self.skipped), **meta}
        (self.dir / META_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
        return info


def read_dataset(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """(rows with absolute image paths, meta) of a dataset dir or a JSONL file."""
    p = Path(path)
    data = p / DATA_FILE if p.is_dir() else p
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such dataset (expected a dir with {DATA_FILE} or a JSONL file)")
    meta_path = (p if p.is_dir() else p.parent) / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    base = data.parent
    rows = []
    for r in read_jsonl(data, strict=True):
        r["images"] = [x if os.path.isabs(x) else str(base / x) for x in r.get("images") or []]
        rows.append(r)
    return rows, meta


# --------------------------------------------------------------------------- description SFT


def build_description_sft(problems: Iterable[Any], out_dir: str | os.PathLike, *,
                          descriptions: Mapping[str, ImageDescription] | None = None,
                          copy_images: bool = True) -> dict:
    """Image -> structured description JSON, with the describer's own prompt.

    The target of a problem is descriptions[problem.id] when given (e.g. a strong describer's
    cached output), else the oracle description from its ground-truth perception facts
    (`metadata["perception_facts"]`); a problem with neither, or without an image, is skipped.
    """
    from experiments.evpv.ablations import oracle_description

    w = DatasetWriter(out_dir, "chat_sft", copy_images)
    for p in problems:
        if not p.images:
            w.skip("no image")
            continue
        desc = (descriptions or {}).get(p.id) or oracle_description(p)
        if desc is None or desc.is_empty():
            w.skip("no description or perception facts")
            continue
        msgs, images = flatten_messages(build_evpv_describe_messages(list(p.images)))
        msgs.append({"role": "assistant", "content": _compact(desc.to_dict())})
        w.add({"id": f"describe:{p.id}", "task": "evpv_describe", "images": images, "messages": msgs})
    return w.write(task="evpv_describe")


# --------------------------------------------------------------------------- step-judge SFT


def load_prm_export(path: str | os.PathLike) -> list[dict]:
    """Rows of a PRM export (`DIR/prm.jsonl`, or a JSONL file) with absolute image paths."""
    p = Path(path)
    f = p / "prm.jsonl" if p.is_dir() else p
    if not f.exists():
        raise FileNotFoundError(f"{f}: no PRM export here (expected DIR/prm.jsonl)")
    rows = []
    for r in read_jsonl(f, strict=True):
        r["images"] = [x if os.path.isabs(x) else str(f.parent / x) for x in r.get("images") or []]
        rows.append(r)
    return rows


def _verdicts(labels: Sequence[Any]) -> list[str | None]:
    """"+"/1/True -> "correct", "-"/-1/False -> "incorrect", anything else (0 = neutral) -> None."""
    out: list[str | None] = []
    for y in labels:
        if isinstance(y, str):
            v = {"+": "correct", "correct": "correct", "-": "incorrect", "incorrect": "incorrect"}.get(y.strip())
        elif isinstance(y, bool):
            v = "correct" if y else "incorrect"
        elif isinstance(y, (int, float)):
            v = "correct" if y == 1 else "incorrect" if y == -1 else None
        else:
            v = None
        out.append(v)
    return out


def build_step_judge_sft(items: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike, *,
                         descriptions: Mapping[str, ImageDescription] | None = None,
                         with_description: str = "both", after_first_error: str = "truncate",
                         copy_images: bool = True) -> dict:
    """Question + (description) + steps -> per-step verdicts JSON, with the step judge's prompt.

    items: PRM export rows (question, steps, images, labels "+"/"-", problem_id) or any dicts
    with those keys. descriptions: {problem_id (or id): ImageDescription}.
    with_description: "yes" (only rows with the description; items without one are skipped),
    "no" (never), "both" (a row without, plus one with when a description exists).
    after_first_error: PRM labels mark every step after the first error "-", but the judge is
    asked about each step on its own: "truncate" keeps the steps up to the first error (exact
    verdicts), "keep" keeps every step with its label.
    Steps with no label (None) end the solution there.
    """
    if with_description not in ("yes", "no", "both"):
        raise ValueError(f"with_description must be yes, no or both, got {with_description!r}")
    if after_first_error not in ("truncate", "keep"):
        raise ValueError(f"after_first_error must be truncate or keep, got {after_first_error!r}")
    w = DatasetWriter(out_dir, "chat_sft", copy_images)
    for n, it in enumerate(items):
        rid = str(it.get("id") or it.get("solution_id") or n)
        labels = it.get("labels")
        if not labels or not it.get("steps"):
            w.skip("no steps or labels")
            continue
        steps = strip_visual_tags([str(s) for s in it["steps"]])
        verdicts = _verdicts(labels)
        cut = next((k for k, v in enumerate(verdicts) if v is None), len(verdicts))
        if after_first_error == "truncate" and "incorrect" in verdicts[:cut]:
            cut = verdicts.index("incorrect") + 1
        steps, verdicts = steps[:cut], verdicts[:cut]
        if not steps:
            w.skip("first step unlabelled")
            continue
        target = _compact({"steps": [{"step": k, "verdict": v} for k, v in enumerate(verdicts, 1)]})
        desc = None
        if descriptions:
            desc = descriptions.get(str(it.get("problem_id"))) or descriptions.get(rid)
        variants = {"no": [None], "yes": [desc], "both": [None, desc] if desc is not None else [None]}[with_description]
        if with_description == "yes" and desc is None:
            w.skip("no description")
            continue
        for d in variants:
            msgs, images = flatten_messages(build_evpv_step_judge_messages(
                str(it["question"]), steps, list(it.get("images") or []), d.to_text() if d is not None else None))
            msgs.append({"role": "assistant", "content": target})
            w.add({"id": f"judge:{rid}:{'desc' if d is not None else 'nodesc'}", "task": "evpv_step_judge",
                   "images": images, "messages": msgs})
    return w.write(task="evpv_step_judge", with_description=with_description, after_first_error=after_first_error)


# --------------------------------------------------------------------------- DPO pairs


def build_dpo_pairs(problems: Iterable[Any], solutions: Iterable[Any], out_dir: str | os.PathLike, *,
                    max_pairs_per_problem: int = 4, seed: int = 0, style: str = "structured", tagged: bool = False,
                    rejected_priority: Mapping[str, float] | None = None, copy_images: bool = True) -> dict:
    """Preference pairs from solutions of the same problem: chosen = a correct solution,
    rejected = an incorrect one, with the policy prompt the solutions were sampled with.

    solutions: `Solution`s (or dicts) with id, problem_id, text, correct (None: unchecked,
    not used). Up to max_pairs_per_problem pairs per problem, drawn without repetition by a
    seeded shuffle. rejected_priority: {solution id: value}; incorrect solutions with lower
    values are paired first (e.g. EVPV's mean reliability, so solutions with contradicted
    visual premises become rejected first). tagged: the prompt asks for "[visual: ...]" tags.
    """
    by_problem: dict[str, list[Any]] = {}
    for s in solutions:
        pid = s["problem_id"] if isinstance(s, Mapping) else s.problem_id
        by_problem.setdefault(str(pid), []).append(s)
    get = lambda s, k: s[k] if isinstance(s, Mapping) else getattr(s, k)  # noqa: E731
    w = DatasetWriter(out_dir, "dpo", copy_images)
    for p in problems:
        sols = by_problem.get(str(p.id), [])
        good = [s for s in sols if get(s, "correct") is True and str(get(s, "text")).strip()]
        bad = [s for s in sols if get(s, "correct") is False and str(get(s, "text")).strip()]
        if not sols:
            w.skip("no solutions")
            continue
        if not good or not bad:
            w.skip("no correct solution" if not good else "no incorrect solution")
            continue
        rng = random.Random(stable_seed(seed, p.id, "dpo"))
        rng.shuffle(good)
        rng.shuffle(bad)
        if rejected_priority:
            bad.sort(key=lambda s: rejected_priority.get(str(get(s, "id")), 1.0))
        # Diagonal order over (chosen i, rejected j): pairs spread over distinct solutions first,
        # and the highest-priority rejected solutions come early.
        order = sorted(((i, j) for i in range(len(good)) for j in range(len(bad))), key=lambda ij: (sum(ij), ij[1]))
        pairs = [(good[i], bad[j]) for i, j in order[:max_pairs_per_problem]]
        builder = build_policy_messages_tagged if tagged else build_policy_messages
        prompt, images = flatten_messages(builder(p, style))
        for c, r in pairs:
            w.add({"id": f"dpo:{p.id}:{get(c, 'id')}>{get(r, 'id')}", "images": list(images), "prompt": prompt,
                   "chosen": [{"role": "assistant", "content": str(get(c, "text")).strip()}],
                   "rejected": [{"role": "assistant", "content": str(get(r, "text")).strip()}],
                   "problem_id": p.id, "chosen_id": get(c, "id"), "rejected_id": get(r, "id")})
    return w.write(max_pairs_per_problem=max_pairs_per_problem, seed=seed, style=style, tagged=tagged)


# --------------------------------------------------------------------------- inputs + CLI


def descriptions_from_cache(cache: str | os.PathLike, problems: Iterable[Any], model: str) -> dict[str, ImageDescription]:
    """{problem id: description} of the problems whose images `model` described readably, read
    from an EVPV descriptions cache (a cache_dir or its descriptions.jsonl)."""
    from vlprm.evpv.description import description_key

    p = Path(cache)
    store = {r["key"]: r for r in read_jsonl(p / "descriptions.jsonl" if p.is_dir() else p) if r.get("key")}
    out = {}
    for prob in problems:
        if not prob.images:
            continue
        rec = store.get(description_key(prob.images, model))
        if rec and rec.get("ok"):
            out[prob.id] = ImageDescription.from_dict(rec["description"])
    return out


def load_problems(path: str | os.PathLike, benchmark: str | None = None, limit: int | None = None) -> list[Any]:
    """Problems from a `problems.jsonl` (a synthesis run's; images relative to its dir) or a
    benchmark directory / hub id loaded by `vlprm.data.benchmarks.load_benchmark`."""
    from vlprm.data.schema import Problem

    p = Path(path)
    if p.suffix == ".jsonl" and p.is_file():
        probs = [Problem.from_dict(r).resolve_images(p.parent) for r in read_jsonl(p, strict=True)]
        return probs[:limit] if limit else probs
    from vlprm.data.benchmarks import load_benchmark

    return load_benchmark(benchmark or "puzzles", path, limit=limit)


def load_solutions(path: str | os.PathLike) -> list[Any]:
    """`Solution`s of a rollouts JSONL (rows with a "status" other than "ok" are left out)."""
    from vlprm.data.schema import Solution

    return [Solution.from_dict(r) for r in read_jsonl(path, strict=True) if r.get("status", "ok") == "ok"]


@dataclass
class BuildConfig:
    """What every builder takes."""

    out: str | None = field(default=None, metadata={"help": "dataset dir to write (required)"})
    problems: str | None = field(default=None, metadata={
        "help": "problems.jsonl or a benchmark path (oracle descriptions come from perception facts)"})
    benchmark: str | None = field(default=None, metadata={"help": "loader for problems (default: puzzles)"})
    limit: int | None = field(default=None, metadata={"help": "use the first N problems"})
    descriptions_cache: str | None = field(default=None, metadata={"help": "EVPV cache dir whose descriptions to use"})
    describer_model: str | None = field(default=None, metadata={"help": "the model that wrote descriptions_cache"})
    copy_images: bool = field(default=True, metadata={"help": "copy images into the dataset (false: absolute paths)"})


@dataclass
class JudgeBuildConfig(BuildConfig):
    """question + description + steps -> per-step verdicts."""

    prm_export: str | None = field(default=None, metadata={"help": "PRM export dir (prm.jsonl), required"})
    with_description: str = field(default="both", metadata={"help": "yes | no | both"})
    after_first_error: str = field(default="truncate", metadata={"help": "truncate | keep"})


@dataclass
class DPOBuildConfig(BuildConfig):
    """Preference pairs: a correct vs an incorrect solution of a problem."""

    solutions: str | None = field(default=None, metadata={"help": "rollouts JSONL of Solution rows, required"})
    max_pairs_per_problem: int = field(default=4, metadata={"help": "pairs per problem"})
    style: str = field(default="structured", metadata={"help": "policy prompt style"})
    tagged: bool = field(default=False, metadata={"help": "prompt with the [visual: ...] variant"})
    seed: int = field(default=0, metadata={"help": "seed of the pair order"})


def _require(cfg: Any, *names: str) -> None:
    from vlprm.config import ConfigError

    missing = [n for n in names if not getattr(cfg, n)]
    if missing:
        raise ConfigError(f"missing --{', --'.join(missing)}")


def _inputs(cfg: BuildConfig) -> tuple[list[Any], dict[str, ImageDescription]]:
    from vlprm.config import ConfigError

    problems = load_problems(cfg.problems, cfg.benchmark, cfg.limit) if cfg.problems else []
    descs: dict[str, ImageDescription] = {}
    if cfg.descriptions_cache:
        if not cfg.describer_model:
            raise ConfigError("--descriptions_cache needs --describer_model (cache keys include the model)")
        descs = descriptions_from_cache(cfg.descriptions_cache, problems, cfg.describer_model)
    return problems, descs


def run_describe(cfg: BuildConfig) -> dict:
    _require(cfg, "out", "problems")
    problems, descs = _inputs(cfg)
    return build_description_sft(problems, cfg.out, descriptions=descs, copy_images=cfg.copy_images)


def run_judge(cfg: JudgeBuildConfig) -> dict:
    from experiments.evpv.ablations import oracle_description

    _require(cfg, "out", "prm_export")
    problems, descs = _inputs(cfg)
    for p in problems:
        if p.id not in descs and (d := oracle_description(p)) is not None:
            descs[p.id] = d
    return build_step_judge_sft(load_prm_export(cfg.prm_export), cfg.out, descriptions=descs,
                                with_description=cfg.with_description, after_first_error=cfg.after_first_error,
                                copy_images=cfg.copy_images)


def run_dpo(cfg: DPOBuildConfig) -> dict:
    _require(cfg, "out", "problems", "solutions")
    problems, _ = _inputs(cfg)
    return build_dpo_pairs(problems, load_solutions(cfg.solutions), cfg.out,
                           max_pairs_per_problem=cfg.max_pairs_per_problem, seed=cfg.seed, style=cfg.style,
                           tagged=cfg.tagged, copy_images=cfg.copy_images)


COMMANDS = {"describe": (BuildConfig, run_describe), "judge": (JudgeBuildConfig, run_judge),
            "dpo": (DPOBuildConfig, run_dpo)}
USAGE = """Build EVPV training data: python -m experiments.evpv.data_builders describe|judge|dpo [--config YAML] [--key value ...]

  describe  image -> structured description JSON
  judge     question + description + steps -> per-step verdicts
  dpo       preference pairs: a correct vs an incorrect solution of a problem"""


def build(argv: Sequence[str]) -> dict:
    """Build one dataset from command-line style arguments (COMMAND [--config YAML] [--key value ...])
    and return its meta (also printed)."""
    from vlprm.config import ConfigError, load_config
    from vlprm.runs import bare_flags, split_config_arg

    if not argv or argv[0] not in COMMANDS:
        raise ConfigError(f"the first argument is the dataset: {' | '.join(COMMANDS)}")
    cls, fn = COMMANDS[argv[0]]
    path, rest = split_config_arg(argv[1:])
    info = fn(load_config(cls, path, bare_flags(cls, rest)))
    print(json.dumps(info, indent=2))
    return info


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    from vlprm.runs import cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(USAGE + f"\n\nerror: the first argument is the dataset: {' | '.join(COMMANDS)}", file=sys.stderr)
        return 2
    cls, fn = COMMANDS[argv[0]]
    return cli_main(cls, argv[1:], lambda cfg: print(json.dumps(fn(cfg), indent=2)), USAGE)


if __name__ == "__main__":
    raise SystemExit(main())
