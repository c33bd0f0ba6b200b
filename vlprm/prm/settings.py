"""The scoring settings of a PRM, recorded next to it and read by every scorer.

A PRM is only scored right with the settings it was trained with: the system prompt, the step
suffix (text appended to every step, e.g. the "\\n\\n" VL-PRM's data keeps at the end of each
step; "" for ours), the image pixel bounds and the label tokens. They live in one record,
``vlprm_prm.json`` in the checkpoint directory, written by our trainer (`vlprm.training.run`),
by ``vlprm prm-config`` (from an imported dataset's own settings, or given by hand), and in an
imported dataset's directory by ``vlprm import-prm-data``.

`resolve_prm_settings(model, overrides)` is the one place a scorer gets them: explicit overrides
win key by key over the record; a PRM without a record (a hub id, a bare checkpoint) is refused
unless the user gives its settings, never scored with a guessed prompt.

Record (format_version 2)::

    {"format": "vlprm-prm", "format_version": 2,
     "system_prompt": "<text>" | null,      # null: the chat template's default system turn
     "step_suffix": "" | "\\n\\n",
     "min_pixels": int | null, "max_pixels": int | null,   # null: the processor's own
     "label_tokens": {"plus": "+", "minus": "-"},
     ...informational keys (base_model, train_dataset, label_mode, ...)}

Records of format_version 1 (our trainer before the step suffix existed) stored the prompt as a
spec ("system_prompt") plus its text ("system_prompt_text") and always stripped steps: they read
as step suffix "".
"""

from __future__ import annotations

import codecs
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from vlprm.config import ConfigError

SETTINGS_FILE = "vlprm_prm.json"
FORMAT_NAME = "vlprm-prm"
FORMAT_VERSION = 2
AUTO = "auto"  # system prompt not given: the PRM's own (its record)
_REQUIRED = ("system_prompt", "step_suffix")


@dataclass(frozen=True)
class PRMSettings:
    """How a PRM's inputs are built: everything `encode_prm` and the processor depend on
    besides the sample. `source` says where they came from (for messages and summaries)."""

    system_prompt: str | None
    step_suffix: str = ""
    min_pixels: int | None = None
    max_pixels: int | None = None
    plus: str = "+"
    minus: str = "-"
    source: str = field(default="", compare=False)

    @classmethod
    def from_spec(cls, system_prompt: str | None = "vlprm", step_suffix: str = "", **kw) -> "PRMSettings":
        """Settings from a system prompt spec (variant name, "file:PATH" or text) and a suffix."""
        from vlprm.prm.format import resolve_system_prompt

        return cls(system_prompt=resolve_system_prompt(system_prompt), step_suffix=parse_step_suffix(step_suffix),
                   **kw)

    def to_record(self, **extra: Any) -> dict:
        """The JSON record (extra keys are informational: base model, dataset, ...)."""
        rec = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "system_prompt": self.system_prompt,
               "step_suffix": self.step_suffix, "min_pixels": self.min_pixels, "max_pixels": self.max_pixels,
               "label_tokens": {"plus": self.plus, "minus": self.minus}}
        rec.update({k: v for k, v in extra.items() if k not in rec})
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], where: str) -> "PRMSettings":
        """Settings from a record; `where` (its file) names it in errors."""
        if not isinstance(rec, Mapping):
            raise ConfigError(f"{where}: a PRM settings record must be a JSON object")
        labels = rec.get("label_tokens") or {}
        kw = dict(min_pixels=rec.get("min_pixels"), max_pixels=rec.get("max_pixels"),
                  plus=labels.get("plus", "+"), minus=labels.get("minus", "-"), source=where)
        if rec.get("format") == FORMAT_NAME and rec.get("format_version") == 1:
            # Our trainer before v2: a prompt spec plus its text, steps always stripped (suffix "").
            from vlprm.prm.format import resolve_system_prompt

            text = rec["system_prompt_text"] if "system_prompt_text" in rec else \
                resolve_system_prompt(rec.get("system_prompt"))
            return cls(system_prompt=text, step_suffix="", **kw)
        missing = [k for k in _REQUIRED if k not in rec]
        if missing:
            raise ConfigError(f"{where}: PRM settings record lacks {', '.join(missing)}; add them "
                              f"(see vlprm/prm/settings.py) or write the record with `vlprm prm-config`")
        if rec["system_prompt"] is not None and not isinstance(rec["system_prompt"], str):
            raise ConfigError(f"{where}: system_prompt must be text or null")
        return cls(system_prompt=rec["system_prompt"], step_suffix=str(rec["step_suffix"]), **kw)


def parse_step_suffix(spec: str | None) -> str | None:
    """A step suffix as given on a command line or in YAML: backslash escapes ("\\\\n\\\\n") are
    decoded; None stays None (not given)."""
    if spec is None or "\\" not in spec:
        return spec
    return codecs.decode(spec, "unicode_escape")


def settings_path(directory: str | os.PathLike) -> Path:
    return Path(os.fspath(directory)) / SETTINGS_FILE


def read_settings(path: str | os.PathLike) -> PRMSettings | None:
    """The settings recorded in a checkpoint/dataset dir (or a record file itself), or None."""
    p = Path(os.fspath(path))
    p = p if p.suffix == ".json" and not p.is_dir() else p / SETTINGS_FILE
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not valid JSON ({e}); fix it or write it again with `vlprm prm-config`") from e
    return PRMSettings.from_record(rec, str(p))


def write_settings(directory: str | os.PathLike, settings: PRMSettings, **extra: Any) -> Path:
    """Write the record into `directory` (atomically) and return its path."""
    out = settings_path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(settings.to_record(**extra), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def _prm_flag(key: str) -> str:
    return f"--prm.{key}"


def resolve_prm_settings(model: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *,
                         flag: Callable[[str], str] = _prm_flag) -> PRMSettings:
    """The settings to score `model` with.

    overrides (each optional; None / "auto" = not given): "settings" (a record file, or a dir
    holding one, used instead of the PRM's own), "system_prompt" (spec: variant name,
    "file:PATH", text, or None for the template default when given explicitly), "step_suffix",
    "min_pixels", "max_pixels". Explicit values win over the record key by key. Raises
    ConfigError (one line naming what to pass, spelled by `flag`) when neither a record nor an
    explicit system prompt and step suffix are there.
    """
    from vlprm.prm.format import resolve_system_prompt

    ov = dict(overrides or {})
    source = ov.get("settings")
    if source:
        base = read_settings(source)
        if base is None:
            raise ConfigError(f"{flag('settings')} {source}: no such settings file ({SETTINGS_FILE} or a .json record)")
    else:
        base = read_settings(model) if Path(os.fspath(model)).is_dir() else None
    has_prompt = "system_prompt" in ov and ov["system_prompt"] != AUTO
    suffix = parse_step_suffix(ov.get("step_suffix"))
    if base is None and not (has_prompt and suffix is not None):
        from vlprm.paths import check_model_ref, is_hub_id

        if not source and not is_hub_id(os.fspath(model)):  # a missing path says so, not that its record is
            check_model_ref(os.fspath(model), flag("model").lstrip("-"))
        raise ConfigError(
            f"PRM {os.fspath(model)!r} has no {SETTINGS_FILE} recording the settings it was trained with, so it "
            f"cannot be scored without guessing: pass {flag('settings')} PATH.json, or both "
            f"{flag('system_prompt')} (file:PATH | text | vlprm | none) and {flag('step_suffix')} ('' or '\\n\\n')")
    try:
        prompt = resolve_system_prompt(ov["system_prompt"]) if has_prompt else base.system_prompt
    except (ValueError, OSError) as e:
        raise ConfigError(f"{flag('system_prompt')}: {e}") from e
    out = base or PRMSettings(system_prompt=prompt, source="explicit")
    out = replace(out, system_prompt=prompt)
    if suffix is not None:
        out = replace(out, step_suffix=suffix)
    for k in ("min_pixels", "max_pixels"):
        if ov.get(k):
            out = replace(out, **{k: int(ov[k])})
    if out.min_pixels and out.max_pixels and out.min_pixels > out.max_pixels:
        raise ConfigError(f"PRM {os.fspath(model)!r}: min_pixels {out.min_pixels} > max_pixels {out.max_pixels}")
    return out


def training_settings(dataset: str | os.PathLike | None, system_prompt: str | None = AUTO,
                      step_suffix: str | None = None, *, min_pixels: int | None = None,
                      max_pixels: int | None = None) -> PRMSettings:
    """The format a PRM is trained in: explicit values > the training set's own record (an
    imported released dataset carries its system prompt and step suffix) > ours ("vlprm", "").
    The pixel bounds are the trainer's (what the checkpoint sees); they go into its record."""
    from vlprm.prm.format import DEFAULT_SYSTEM_PROMPT, resolve_system_prompt

    own = read_settings(dataset) if dataset and Path(os.fspath(dataset)).is_dir() else None
    base = own or PRMSettings.from_spec(DEFAULT_SYSTEM_PROMPT, "")
    prompt = base.system_prompt if system_prompt == AUTO else resolve_system_prompt(system_prompt)
    suffix = base.step_suffix if step_suffix is None else parse_step_suffix(step_suffix)
    return replace(base, system_prompt=prompt, step_suffix=suffix, min_pixels=min_pixels, max_pixels=max_pixels,
                   source=own.source if own else "")


def main(argv: list[str] | None = None) -> int:
    """`vlprm prm-config`: write the settings record into a checkpoint directory."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="vlprm prm-config", description=(
        "Write a PRM's settings record (vlprm_prm.json) into its checkpoint directory: from the "
        "dataset it was trained on or released with (an import-prm-data dir), or given explicitly."))
    p.add_argument("--out", required=True, help="the checkpoint directory")
    p.add_argument("--from-dataset", default=None, help="an imported PRM dataset dir (its own settings)")
    p.add_argument("--system-prompt", default=AUTO, help="variant name, file:PATH or the text (overrides the dataset's)")
    p.add_argument("--step-suffix", default=None, help="'' or '\\n\\n' (overrides the dataset's)")
    p.add_argument("--min-pixels", type=int, default=None)
    p.add_argument("--max-pixels", type=int, default=None)
    p.add_argument("--force", action="store_true", help="replace a different record already in --out")
    args = p.parse_args(argv)
    flag = lambda k: "--" + k.replace("_", "-")  # noqa: E731 - the message names this command's flags
    try:
        if args.from_dataset and read_settings(args.from_dataset) is None:
            raise ConfigError(f"--from-dataset {args.from_dataset}: no {SETTINGS_FILE} there (import the "
                              "dataset with `vlprm import-prm-data`)")
        # Without --from-dataset: the record already in --out (if any), updated by what is given.
        new = resolve_prm_settings(args.out, {
            "settings": args.from_dataset, "system_prompt": args.system_prompt, "step_suffix": args.step_suffix,
            "min_pixels": args.min_pixels, "max_pixels": args.max_pixels}, flag=flag)
        old = read_settings(args.out)
        if old is not None and old != new and not args.force:
            raise ConfigError(f"{settings_path(args.out)} already records other settings ({old}); pass --force "
                              "to replace them")
    except ConfigError as e:
        print(f"vlprm prm-config: {e}", file=sys.stderr)
        return 2
    path = write_settings(args.out, new, settings_from=args.from_dataset or "explicit")
    print(f"wrote {path}: system prompt {'(template default)' if new.system_prompt is None else repr(new.system_prompt[:60])}, "
          f"step suffix {new.step_suffix!r}, pixels {new.min_pixels}..{new.max_pixels}")
    return 0

