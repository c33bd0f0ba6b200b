"""Run configs: nested dataclasses filled from a YAML recipe plus command-line overrides.

    cfg = load_config(EvalConfig, "eval/configs/tiny.yaml", ["--policy.n", "8", "--seed=1"])

Overrides are "--section.key value" or "--section.key=value"; values are read as YAML
("4" -> 4, "null" -> None, "[a, b]" -> list, "a,b" -> list for list fields). Unknown keys are
errors that list the valid ones. `config_help(cls)` renders every key with its default and the
`help` metadata of its field, for `--help`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, Sequence, TypeVar

T = TypeVar("T")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Coerce a YAML / command-line value to a field's type (lists from "a,b")."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType) and args:
        if isinstance(value, (list, dict)):  # e.g. `list[str] | None` given a list
            for a in args:
                if typing.get_origin(a) in (list, dict) or a in (list, dict):
                    return _coerce(value, a, where)
        return _coerce(value, args[0], where)
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return bool(value)
    if origin is list or hint is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        item = typing.get_args(hint)[0] if typing.get_args(hint) else None
        if item is not None and dataclasses.is_dataclass(item):
            return [build_dataclass(item, v, f"{where}[{i}].") for i, v in enumerate(value)]
        return list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is int:
        return int(value)
    if hint is float:
        return float(value)
    if hint is str:
        return str(value)
    return value


def build_dataclass(cls: type[T], data: dict, where: str = "") -> T:
    """Instantiate a (nested) dataclass from a mapping, checking keys and coercing types."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'} must be a mapping of {cls.__name__} keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
                         f"valid keys under {where or 'the top level'}: {', '.join(sorted(names))}")
    kw = {}
    for k, v in data.items():
        hint = hints[k]
        if dataclasses.is_dataclass(hint):
            kw[k] = build_dataclass(hint, v, f"{where}{k}.")
        else:
            kw[k] = _coerce(v, hint, where + k)
    return cls(**kw)


def _yaml_value(raw: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ValueError(f"--{key}: {p} is not a section")
    d[parts[-1]] = value


def parse_overrides(args: Sequence[str]) -> dict:
    """["--a.b", "1", "--c=x"] -> {"a": {"b": 1}, "c": "x"}."""
    data: dict = {}
    args = list(args)
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ValueError(f"unexpected argument {a!r}; overrides look like --section.key value")
        if "=" in a:
            key, raw = a[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"{a} needs a value")
            key, raw = a[2:], args[i + 1]
            i += 2
        key = ".".join(p.replace("-", "_") for p in key.split("."))
        _set_dotted(data, key, _yaml_value(raw))
    return data


def deep_merge(base: dict, extra: dict) -> dict:
    """base updated with extra, recursing into nested mappings."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """A `cls` config from a YAML file plus command-line style overrides. Calls `.validate()` on
    the result when the class has one."""
    import yaml

    data: dict = {}
    if path:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config must be a YAML mapping")
    data = deep_merge(data, parse_overrides(overrides))
    cfg = build_dataclass(cls, data)
    validate = getattr(cfg, "validate", None)
    return validate() if callable(validate) else cfg


def config_help(cls: type) -> str:
    """Every config key with its default and meaning (for --help)."""
    lines: list[str] = []

    def walk(c, prefix: str, inst):
        for f in dataclasses.fields(c):
            v = getattr(inst, f.name)
            if dataclasses.is_dataclass(v):
                lines.append(f"\n  [{prefix}{f.name}]")
                walk(type(v), prefix + f.name + ".", v)
            else:
                lines.append(f"  --{prefix}{f.name} (default: {v!r})\n        {f.metadata.get('help', '')}")

    walk(cls, "", cls())
    return "\n".join(lines)


def to_yaml(cfg: Any) -> str:
    """A config dataclass as YAML (what a run writes next to its outputs)."""
    import yaml

    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False, allow_unicode=True)
