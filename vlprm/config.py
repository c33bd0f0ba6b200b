"""Run configs: nested dataclasses filled from a YAML recipe plus command-line overrides.

    cfg = load_config(EvalConfig, "eval/configs/tiny.yaml", ["--policy.n", "8", "--seed=1"])

Overrides are "--section.key value" or "--section.key=value"; values are read as YAML
("4" -> 4, "null" / "None" -> None, "[a, b]" -> list, "a,b" -> list for list fields), except
that a text field takes the text as given ("Judge: is it right? #1" stays that string). Unknown
keys are errors that list the valid ones. `config_help(cls)` renders every key with its default and the
`help` metadata of its field, for `--help`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from typing import Any, Sequence, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config mistake the user fixes (unknown key, wrong type, bad value): entry points print
    its message as one line and exit 2, without a traceback."""


_EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "text", list: "a list",
             dict: "a mapping"}


def _expected(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(hint) if a is not type(None))
    return _EXPECTED.get(origin or hint, getattr(hint, "__name__", str(hint)))


def _wrong(where: str, hint: Any, value: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {_expected(hint)}, got {value!r}")


def _scalar(value: Any, hint: Any, where: str) -> Any:
    """A scalar field's value, converted only where nothing is lost ("8" or 8.0 for an int, 3 for
    a float, 2024 for text); anything else is an error naming the key and the expected type."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        raise _wrong(where, hint, value)
    if isinstance(value, bool):  # True is an int to Python, never to a config
        raise _wrong(where, hint, value)
    if hint is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        raise _wrong(where, hint, value)
    if hint is float:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-5 (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
        raise _wrong(where, hint, value)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int):  # `split: 2024`
            return str(value)
        raise _wrong(where, hint, value)
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a YAML / command-line value against a field's type (lists also from "a,b")."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None:
        # A list / mapping field that is not Optional: null means empty ("--search.strategies ''").
        if origin is list or hint is list:
            return []
        if origin is dict or hint is dict:
            return {}
        return None
    if origin in (typing.Union, types.UnionType) and args:
        if isinstance(value, (list, dict)):  # e.g. `list[str] | None` given a list
            for a in args:
                if typing.get_origin(a) in (list, dict) or a in (list, dict):
                    return _coerce(value, a, where)
        errors = []
        for a in args:
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(e)
        raise errors[0] if len(errors) == 1 else _wrong(where, hint, value)
    if origin is list or hint is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, dict):
            raise _wrong(where, hint, value)
        if not isinstance(value, (list, tuple)):
            value = [value]
        item = typing.get_args(hint)[0] if typing.get_args(hint) else None
        if item is not None and dataclasses.is_dataclass(item):
            return [build_dataclass(item, v, f"{where}[{i}].") for i, v in enumerate(value)]
        if item in (str, int, float, bool):  # "--only_benchmarks 2024" is ["2024"], not [2024]
            return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, hint, value)
        return dict(value)
    return _scalar(value, hint, where)


def build_dataclass(cls: type[T], data: dict, where: str = "") -> T:
    """Instantiate a (nested) dataclass from a mapping, checking keys and types.

    An API key written inline (`api_key: sk-...`, anywhere in the tree) is refused: configs name
    the environment variable that holds it (`api_key_env`), so a saved config never holds a key."""
    from vlprm.secrets import inline_secret_keys, register_env_secrets

    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping of {cls.__name__} keys, got {data!r}")
    inline = inline_secret_keys(data, where)
    if inline and inline[0].endswith("_env"):
        raise ConfigError(f"{inline[0]}: give the name of the environment variable that holds the key, not the "
                          "key itself (a config is saved with the run)")
    if inline:
        raise ConfigError(f"{inline[0]}: a secret is never written in a config (it would be saved with the "
                          "run); put it in an environment variable and name that variable with api_key_env")
    register_env_secrets(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(where + str(k) for k in unknown)}; "
                         f"valid keys under {where or 'the top level'}: {', '.join(sorted(names))}")
    kw = {}
    for k, v in data.items():
        hint = hints[k]
        if dataclasses.is_dataclass(hint):
            kw[k] = build_dataclass(hint, v, f"{where}{k}.")
        else:
            kw[k] = _coerce(v, hint, where + k)
    return cls(**kw)


_NULLS = ("", "~", "null", "Null", "NULL", "None")


def _yaml_value(raw: str) -> Any:
    import yaml

    if raw.strip() == "None":  # Python's spelling of null
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _is_text_field(cls: type, parts: Sequence[str]) -> bool:
    """Whether the dotted field is a `str` / `str | None` field of the dataclass tree."""
    for p in parts[:-1]:
        if not dataclasses.is_dataclass(cls):
            return False
        cls = typing.get_type_hints(cls).get(p)
    if not dataclasses.is_dataclass(cls):
        return False
    hint = typing.get_type_hints(cls).get(parts[-1])
    if hint is str:
        return True
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and args == [str]


def _text_value(raw: str) -> str | None:
    """A text field's command-line value as given: YAML would turn "a: b" into a mapping, cut
    " #..." as a comment, and "yes" / "0123" into a bool / an int."""
    s = raw.strip()
    if s in _NULLS:  # as YAML reads them (a required text field then fails where it is used)
        return None
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":  # quoted on purpose: YAML unquotes it
        return str(_yaml_value(raw))
    return raw


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"--{key}: {p} is not a section")
    d[parts[-1]] = value


def parse_overrides(args: Sequence[str], cls: type | None = None) -> dict:
    """["--a.b", "1", "--c=x"] -> {"a": {"b": 1}, "c": "x"}. With the config class, text fields
    keep their raw text (see `_text_value`)."""
    data: dict = {}
    args = list(args)
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ConfigError(f"unexpected argument {a!r}; overrides look like --section.key value")
        if "=" in a:
            key, raw = a[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"{a} needs a value")
            key, raw = a[2:], args[i + 1]
            i += 2
        key = ".".join(p.replace("-", "_") for p in key.split("."))
        text = cls is not None and _is_text_field(cls, key.split("."))
        _set_dotted(data, key, _text_value(raw) if text else _yaml_value(raw))
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
            raise ConfigError(f"{path}: the config must be a YAML mapping")
    data = deep_merge(data, parse_overrides(overrides, cls))
    cfg = build_dataclass(cls, data)
    validate = getattr(cfg, "validate", None)
    return validate() if callable(validate) else cfg


def option(default: Any, help: str):
    """A config dataclass field with its `--help` text (a list / dict default is copied per instance)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


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
    """A config dataclass as YAML (what a run writes next to its outputs), with every known secret
    masked (`vlprm.secrets.redact_obj`): keys are named by their environment variable only."""
    import yaml

    from vlprm.secrets import redact_obj

    data = cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)
    return yaml.safe_dump(redact_obj(data), sort_keys=False, allow_unicode=True)
