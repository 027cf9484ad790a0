"""How configs are built: YAML 1.2 loading, dotted overrides, type checks, and result-marked fields.

Every problem in a config (unknown key, wrong type, impossible value) is collected and reported in
one :class:`ConfigError` that names the key, the closest valid key and the valid choices, before any
file is created. Nothing here imports torch: section checks use the torch-free name tables.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from effrep_hpc.registry import did_you_mean


class _Loader(yaml.SafeLoader):
    """YAML with 1.2-style numbers: ``-1:1:51`` stays a string (1.1 reads base 60), ``1e-3`` is a float."""


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^([-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with the config loader (numbers as in YAML 1.2)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class ConfigError(ValueError):
    """A config that cannot be used; the message lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        # One line, so that a job's log shows it whole next to the rank that printed it.
        super().__init__("invalid config: " + "; ".join(p.replace("\n", " ") for p in self.problems))


def result(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
) -> Any:
    """A config field whose value changes what an output holds (see :mod:`effrep_hpc.config.identity`).

    ``only`` limits that to the named experiments (a retraining key matters to ``prune-retrain``, not
    to a sensitivity scan); ``skip`` names experiments it does not matter to; by default it matters to
    every experiment whose identity includes the section.
    """
    meta = {"result": {"only": tuple(only), "skip": tuple(skip)}}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------
# Building dataclasses from plain data, with every problem collected.


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float etc.)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping of {tp.__name__} keys (got {value!r})")
            return tp()
        return _build(tp, value, key + ".", problems)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], key, problems)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            hint = did_you_mean(str(value), [str(c) for c in choices], n=1)
            problems.append(f"{key}: invalid value {value!r}{hint} (valid: {', '.join(map(str, choices))})")
            return choices[0]
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            problems.append(f"{key}: expected {_type_name(tp)} (got {value!r})")
            return []
        (item_tp,) = get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping (got {value!r})")
            return {}
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{key}: expected true or false (got {value!r})")
            return False
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key}: expected an integer (got {value!r})")
            return 0
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}: expected a number (got {value!r})")
            return 0.0
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            # YAML turns `x: 1:2:3`-like text into strings anyway; numbers given for a str key are
            # almost always a mistake, but a bare number as a path or name is harmless.
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            problems.append(f"{key}: expected a string (got {value!r})")
            return ""
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _build(cls: type, data: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            hint = did_you_mean(str(key), names, n=1, prefix=prefix, quote=False)
            problems.append(f"{prefix}{key}: unknown key{hint} (valid keys: {', '.join(names)})")
            continue
        kwargs[key] = _convert(value, hints[key], prefix + key, problems)
    obj = cls(**kwargs)
    return obj


def _check_all(obj: Any, problems: list[str]) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_all(value, problems)
    check = getattr(obj, "_check", None)
    if check is not None:
        problems.extend(check())


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], value), the value parsed as YAML (so 0.05 is a float)."""
    if "=" not in text:
        raise ConfigError([f"override {text!r}: expected section.key=value, e.g. train.lr=0.05"])
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError([f"override {text!r}: expected section.key=value, e.g. train.lr=0.05"])
    try:
        value = yaml_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_dotted(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``data[path[0]][path[1]]...`` to ``value`` in place, creating mappings on the way."""
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def merge_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted overrides to a nested mapping (a copy is returned)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        set_dotted(out, *parse_override(text))
    return out


def build(data: dict[str, Any], cls: type) -> Any:
    """Build and validate a config dataclass from a mapping; raise ConfigError listing all problems."""
    if not isinstance(data, dict):
        raise ConfigError([f"the config must be a mapping of sections (got {type(data).__name__})"])
    problems: list[str] = []
    obj = _build(cls, data, "", problems)
    if not problems:
        _check_all(obj, problems)
    if problems:
        raise ConfigError(problems)
    return obj


def load(path: str | Path | None, overrides: list[str] | tuple[str, ...], cls: type) -> Any:
    """Load a YAML config file (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError([f"config file {str(p)!r} does not exist"])
        try:
            loaded = yaml_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError([f"{p}: not valid YAML: {exc}"]) from None
        data = loaded or {}
        if not isinstance(data, dict):
            raise ConfigError([f"{p}: the top level must be a mapping of sections"])
    return build(merge_overrides(data, list(overrides)), cls)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text, stored with every output for provenance."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
