"""Run identity: which config keys decide what an output holds, and how two configs differ in them.

Every field that changes results is marked with :func:`~effrep_hpc.config.base.result` in its
section. An experiment names its :class:`Scope` (sections or single keys, plus its own name for fields
marked ``only``/``skip``), and :func:`identity_differences` compares a stored config (the YAML text every
output keeps) with a new one over exactly those keys. Every resumable output (checkpoints, surfaces,
sweeps, sensitivity files) uses it, so a resume with a different loss, data subset or seed is refused
with the keys named, and the file is left as it was.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from effrep_hpc.config.base import to_dict, yaml_load


@dataclass(frozen=True)
class Scope:
    """What decides an output of ``experiment``: the result-marked fields of ``keys`` (sections or ``section.key``)."""

    experiment: str
    keys: tuple[str, ...]


def _applies(f: dataclasses.Field, experiment: str) -> bool:
    mark = f.metadata.get("result")
    if mark is None:
        return False
    only, skip = mark.get("only", ()), mark.get("skip", ())
    return (not only or experiment in only) and experiment not in skip


def _default(f: dataclasses.Field) -> Any:
    factory = f.default_factory
    value = f.default if f.default is not dataclasses.MISSING else factory() if callable(factory) else None
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def result_fields(scope: Scope) -> list[tuple[str, dataclasses.Field]]:
    """(dotted key, field) of every result-marked field the scope covers, in declaration order."""
    from effrep_hpc.config import Config

    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    out: list[tuple[str, dataclasses.Field]] = []
    for key in scope.keys:
        section, _, name = key.partition(".")
        if section not in sections:
            raise ValueError(f"identity scope of {scope.experiment!r} names an unknown section {section!r}")
        cls = getattr(Config(), section).__class__
        for f in dataclasses.fields(cls):
            if (not name or f.name == name) and _applies(f, scope.experiment):
                out.append((f"{section}.{f.name}", f))
        if name and not any(k == key for k, _ in out):
            raise ValueError(f"identity scope of {scope.experiment!r}: {key} is not a result-marked config key")
    return out


def identity(cfg: Any, scope: Scope) -> dict[str, Any]:
    """Dotted key -> value of the scope's result fields, from a Config, its dict or its YAML text."""
    if isinstance(cfg, str):
        data = yaml_load(cfg) or {}
    elif isinstance(cfg, Mapping):
        data = dict(cfg)
    else:
        data = to_dict(cfg)
    values: dict[str, Any] = {}
    for key, f in result_fields(scope):
        section, name = key.split(".", 1)
        sec = data.get(section)
        values[key] = sec[name] if isinstance(sec, Mapping) and name in sec else _default(f)
    return values


def identity_differences(old: Any, new: Any, scope: Scope) -> list[str]:
    """``key: old -> new`` for every result key of ``scope`` whose value differs (empty: the same run)."""
    a, b = identity(old, scope), identity(new, scope)
    return [f"{key}: {a[key]!r} -> {b[key]!r}" for key in a if a[key] != b[key]]


class ResumeMismatch(ValueError):
    """An existing output was computed with different result-defining settings; nothing was changed."""


def check_resume(path: Any, old: Any, new: Any, scope: Scope, *, fix: str = "choose another output path") -> None:
    """Raise :class:`ResumeMismatch` naming every differing key when ``old`` and ``new`` are not the same run."""
    diffs = identity_differences(old, new, scope)
    if diffs:
        raise ResumeMismatch(
            f"{path} was computed with different settings ({'; '.join(diffs)}); it was left unchanged. "
            f"Resume with the same settings, {fix}, or pass --overwrite to start over."
        )
