"""Sensitivity files: accuracy of a model with one layer pruned, for every (layer, ratio, criterion) cell.

Schema (``kind="sensitivity"``, ``schema_version=1``):

- value datasets ``acc`` (percent) and ``loss`` of shape ``(layers, ratios, criteria)``, NaN until
  computed, plus a ``done`` mask of the same shape; attribute ``axes = "layer,ratio,criterion"``;
- axes: ``layers`` (prune group names), ``layer_ids`` (the paper's layer id of each group, 0 if none),
  ``ratios`` (fraction of filters removed), ``criteria`` (``l1``, ``random``, ``largest``, ...);
- per layer: ``widths`` (filters before pruning), ``kept`` ``(layers, ratios)`` (filters left) and
  ``flops_fraction`` ``(layers, ratios)`` (model FLOPs left when only that layer is pruned, over the
  original), ``filter_l1`` ``(layers, max width)`` (each layer's filter L1 norms sorted descending and
  divided by the largest, NaN-padded: the paper's Figure 2(a));
- root attributes: the provenance of ``store.h5`` (config, version, time), ``model_hash``,
  ``arch_name``, ``arch`` (JSON), ``baseline_acc`` / ``baseline_loss`` (the unpruned model on the same
  data) and ``eval`` (JSON of what decides a value: split, sample count, retraining, seed).

Cells are addressed by the flat index ``k = (layer * R + ratio) * C + criterion``. As in surface files,
datasets are preallocated, values (and their checksum, ``integrity/checksum``) are written before their
``done`` flags, each step is flushed, and a new file appears under its final name only when complete; a
killed writer loses nothing already done, and a done cell changed on disk afterwards is found on resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from effrep_hpc.store.h5 import (
    CHECKSUM,
    ResumableWriter,
    atomic_create,
    open_readonly,
    preallocate,
    provenance,
    read_attr,
    set_attrs,
)

SCHEMA_VERSION = 1
KIND = "sensitivity"
METRICS = ("acc", "loss")
AXES = "layer,ratio,criterion"


@dataclass
class SensitivitySpec:
    """Everything that defines a sensitivity scan: its axes, per-layer facts, and what decides a value."""

    layers: list[str]
    ratios: np.ndarray
    criteria: list[str]
    layer_ids: list[int]
    widths: list[int]
    kept: np.ndarray  # (layers, ratios) int
    flops_fraction: np.ndarray  # (layers, ratios)
    filter_l1: np.ndarray  # (layers, max width), NaN-padded
    model_hash: str = ""
    arch_name: str = ""
    arch: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    baseline_acc: float = float("nan")
    baseline_loss: float = float("nan")
    config_yaml: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(layers, ratios, criteria), the layout of every value dataset."""
        return (len(self.layers), len(self.ratios), len(self.criteria))

    @property
    def num_cells(self) -> int:
        """Number of (layer, ratio, criterion) cells."""
        return int(np.prod(self.shape))

    def cell(self, flat: int) -> tuple[int, int, int]:
        """``(layer, ratio, criterion)`` indices of flat cell index ``flat``."""
        return tuple(int(i) for i in np.unravel_index(int(flat), self.shape))  # type: ignore[return-value]


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=h5py.string_dtype())


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _differences(f: h5py.File, spec: SensitivitySpec) -> list[str]:
    if read_attr(f, "kind") != KIND:
        return [f"it is not a sensitivity file (kind={read_attr(f, 'kind')!r})"]
    diffs = []
    if _decode(f["layers"][()]) != list(spec.layers):
        diffs.append(f"layers: file has {_decode(f['layers'][()])}, requested {list(spec.layers)}")
    old_r = f["ratios"][()]
    if old_r.shape != np.shape(spec.ratios) or not np.allclose(old_r, spec.ratios, rtol=0, atol=1e-12):
        diffs.append(f"ratios: file has {old_r.tolist()}, requested {np.asarray(spec.ratios).tolist()}")
    if _decode(f["criteria"][()]) != list(spec.criteria):
        diffs.append(f"criteria: file has {_decode(f['criteria'][()])}, requested {list(spec.criteria)}")
    if read_attr(f, "model_hash") != spec.model_hash:
        diffs.append("model: the checkpoint's weights differ from the ones the file was computed for")
    old_eval = json.loads(str(read_attr(f, "eval", "{}")))
    if old_eval != json.loads(json.dumps(spec.eval)):
        changed = sorted(k for k in set(old_eval) | set(spec.eval) if old_eval.get(k) != spec.eval.get(k))
        diffs.append("evaluation settings: " + ", ".join(f"{k} {old_eval.get(k)!r} -> {spec.eval.get(k)!r}" for k in changed))
    return diffs


def _create(path: Path, spec: SensitivitySpec, extra_attrs: dict[str, Any]) -> None:
    shape = spec.shape
    if np.shape(spec.kept) != shape[:2] or np.shape(spec.flops_fraction) != shape[:2]:
        raise ValueError(f"kept and flops_fraction must have shape {shape[:2]} (layers, ratios)")
    if len(spec.layer_ids) != shape[0] or len(spec.widths) != shape[0] or np.shape(spec.filter_l1)[0] != shape[0]:
        raise ValueError("layer_ids, widths and filter_l1 need one entry per layer")
    with atomic_create(path) as f:
        attrs = provenance(
            spec.config_yaml,
            kind=KIND,
            schema_version=SCHEMA_VERSION,
            axes=AXES,
            metrics=",".join(METRICS),
            model_hash=spec.model_hash,
            arch_name=spec.arch_name,
            arch=json.dumps(spec.arch),
            eval=json.dumps(spec.eval),
            baseline_acc=float(spec.baseline_acc),
            baseline_loss=float(spec.baseline_loss),
        )
        attrs.update(extra_attrs)
        set_attrs(f, attrs)
        f.create_dataset("layers", data=_strings(list(spec.layers)))
        f.create_dataset("layer_ids", data=np.asarray(spec.layer_ids, dtype=np.int64))
        f.create_dataset("ratios", data=np.asarray(spec.ratios, dtype=np.float64))
        f.create_dataset("criteria", data=_strings(list(spec.criteria)))
        f.create_dataset("widths", data=np.asarray(spec.widths, dtype=np.int64))
        f.create_dataset("kept", data=np.asarray(spec.kept, dtype=np.int64))
        f.create_dataset("flops_fraction", data=np.asarray(spec.flops_fraction, dtype=np.float64))
        f.create_dataset("filter_l1", data=np.asarray(spec.filter_l1, dtype=np.float64))
        axes = _strings(["layer", "ratio", "criterion"])
        for name in METRICS:
            preallocate(f, name, shape, np.float64, np.nan).attrs["axes"] = axes
        preallocate(f, "done", shape, bool, False).attrs["axes"] = axes
        preallocate(f, CHECKSUM, shape, np.uint64, 0).attrs["axes"] = axes


class SensitivityWriter(ResumableWriter):
    """The single writer of a sensitivity file (or an array task's shard): holds the lock and the file."""

    what = "sensitivity scan"
    unit = "cells"
    setting = "prune.sensitivity file"
    kind = KIND

    @classmethod
    def spec_from_file(cls, f: h5py.File) -> SensitivitySpec:
        """The spec of an open sensitivity file."""
        return spec_from_file(f)

    def _copy_done(self, f: h5py.File, flat: np.ndarray) -> None:
        acc, loss = f["acc"][()].reshape(-1), f["loss"][()].reshape(-1)
        for k in flat:
            self.write(int(k), acc[k], loss[k])

    def _differences(self, f: h5py.File, spec: SensitivitySpec) -> list[str]:
        return _differences(f, spec)

    def _create(self, path: Path, spec: SensitivitySpec, extra_attrs: dict[str, Any]) -> None:
        _create(path, spec, extra_attrs)

    def write(self, flat: int, acc: float, loss: float) -> None:
        """Record one cell's accuracy (percent) and loss, then mark it done (flushing after each step)."""
        f = self._open_file()
        if not 0 <= int(flat) < self.spec.num_cells:
            raise IndexError(f"cell {flat} outside the {self.spec.num_cells} cells of {self.path}")
        idx = self.spec.cell(int(flat))
        f["acc"][idx] = float(acc)
        f["loss"][idx] = float(loss)
        if self.checksums:
            f[CHECKSUM][idx] = self._checksums_of({"acc": np.array([float(acc)]), "loss": np.array([float(loss)])})[0]
        f.flush()
        f["done"][idx] = True
        f.flush()


def read_sensitivity(path: str | Path) -> dict[str, Any]:
    """Read a whole sensitivity file: datasets by name (strings decoded) plus ``attrs``."""
    with open_readonly(path) as f:
        if read_attr(f, "kind") != KIND:
            raise ValueError(f"{path} is not a sensitivity file (kind={read_attr(f, 'kind')!r})")
        out: dict[str, Any] = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
        out["attrs"] = {k: read_attr(f, k) for k in f.attrs}
    for key in ("layers", "criteria"):
        out[key] = _decode(out[key])
    return out


def spec_from_file(f: h5py.File) -> SensitivitySpec:
    """The spec of an open sensitivity file (to merge shards into a file of the same scan)."""
    return SensitivitySpec(
        layers=_decode(f["layers"][()]),
        ratios=f["ratios"][()],
        criteria=_decode(f["criteria"][()]),
        layer_ids=f["layer_ids"][()].tolist(),
        widths=f["widths"][()].tolist(),
        kept=f["kept"][()],
        flops_fraction=f["flops_fraction"][()],
        filter_l1=f["filter_l1"][()],
        model_hash=str(read_attr(f, "model_hash", "")),
        arch_name=str(read_attr(f, "arch_name", "")),
        arch=json.loads(str(read_attr(f, "arch", "{}"))),
        eval=json.loads(str(read_attr(f, "eval", "{}"))),
        baseline_acc=float(read_attr(f, "baseline_acc", float("nan"))),
        baseline_loss=float(read_attr(f, "baseline_loss", float("nan"))),
        config_yaml=str(read_attr(f, "config", "")),
    )


merge_sensitivity_shards = SensitivityWriter.merge
repair_sensitivity = SensitivityWriter.repair
