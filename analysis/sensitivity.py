"""Figures of a pruning sensitivity file (``effrep prune sensitivity``): the paper's Figures 2 and 8.

Torch-free: reads the HDF5 file with h5py (schema in ``effrep_hpc/store/sensitivity.py``: ``acc`` /
``loss`` of shape (layers, ratios, criteria), a ``done`` mask, axes ``layers``, ``ratios``,
``criteria``, and per-layer ``layer_ids``, ``widths``, ``filter_l1``).

  python -m analysis sensitivity FILE...    (or `effrep analyze sensitivity ...`) writes
    <stem>_layers_<criterion>.<ext>   accuracy against the fraction of filters pruned away, one curve
                                      per layer, unpruned accuracy dashed (Figure 2(b)); ResNets get
                                      one panel per stage
    <stem>_criteria.<ext>             per layer, one panel: the criteria side by side, e.g. smallest
                                      L1 vs random vs largest L1 (Figure 8); needs >= 2 criteria
    <stem>_filters.<ext>              each layer's filter L1 norms, sorted and divided by the largest
                                      (Figure 2(a))

Cells not yet computed (a scan in progress) are NaN and leave gaps in the curves.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.surface import SurfaceError, attr_value, open_h5, read_attrs

KINDS = ("layers", "criteria", "filters")
FIGURE_FORMATS = ("png", "pdf", "svg")
# The paper's names for the criteria, used in legends.
CRITERION_LABELS = {
    "l1": "smallest L1",
    "l2": "smallest L2",
    "random": "random",
    "largest": "largest L1",
    "mean_mean": "mean-mean",
    "mean_std": "mean-std",
    "mean_l1": "mean-L1",
    "mean_l2": "mean-L2",
    "var_l2": "var-L2",
}


class SensitivityError(SurfaceError):
    """A file that is not a usable sensitivity file; the message says what to fix."""


@dataclass
class Sensitivity:
    """A sensitivity scan in memory: values ``[layer, ratio, criterion]``, NaN where not computed."""

    layers: list[str]
    ratios: np.ndarray
    criteria: list[str]
    acc: np.ndarray
    loss: np.ndarray
    done: np.ndarray
    layer_ids: np.ndarray
    widths: np.ndarray
    filter_l1: np.ndarray | None = None
    flops_fraction: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def baseline_acc(self) -> float:
        """Accuracy of the unpruned model on the same data (NaN if the file does not say)."""
        return float(self.attrs.get("baseline_acc", np.nan))

    def values(self, metric: str = "acc") -> np.ndarray:
        """The metric with cells not marked done set to NaN."""
        data = {"acc": self.acc, "loss": self.loss}.get(metric)
        if data is None:
            raise SensitivityError(f"unknown metric {metric!r} (valid: acc, loss)")
        return np.where(self.done, data, np.nan)

    def label(self, i: int) -> str:
        """A legend label for layer ``i``: the paper's conv id and the module name."""
        lid = int(self.layer_ids[i]) if self.layer_ids.size else 0
        return f"conv_{lid} ({self.layers[i]})" if lid else self.layers[i]

    def stages(self) -> list[tuple[str, list[int]]]:
        """Layers grouped by ResNet stage (``layerS...``) when the names say so, else one group."""
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(self.layers):
            m = re.match(r"^(layer\d+)", name)
            if m is None:
                return [("", list(range(len(self.layers))))]
            groups.setdefault(m.group(1), []).append(i)
        return list(groups.items()) if len(groups) > 1 else [("", list(range(len(self.layers))))]


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def load_sensitivity(path: str | Path) -> Sensitivity:
    """Read a sensitivity file, raising SensitivityError with a clear message for anything else."""
    path = Path(path)
    with open_h5(path, SensitivityError) as f:
        kind = attr_value(f.attrs.get("kind"))
        if kind != "sensitivity":
            raise SensitivityError(
                f"{path} is not a sensitivity file (kind={kind!r}); make one with `effrep prune sensitivity CONFIG`"
            )
        missing = [n for n in ("layers", "ratios", "criteria", "acc", "done") if n not in f]
        if missing:
            raise SensitivityError(f"{path} lacks dataset(s) {missing}; was it written by another version?")
        attrs = read_attrs(f)
        data = Sensitivity(
            layers=_decode(f["layers"][()]),
            ratios=np.asarray(f["ratios"][()], dtype=np.float64),
            criteria=_decode(f["criteria"][()]),
            acc=np.asarray(f["acc"][()], dtype=np.float64),
            loss=np.asarray(f["loss"][()], dtype=np.float64) if "loss" in f else np.full(f["acc"].shape, np.nan),
            done=np.asarray(f["done"][()], dtype=bool),
            layer_ids=np.asarray(f["layer_ids"][()]) if "layer_ids" in f else np.zeros(0, dtype=int),
            widths=np.asarray(f["widths"][()]) if "widths" in f else np.zeros(0, dtype=int),
            filter_l1=np.asarray(f["filter_l1"][()], dtype=np.float64) if "filter_l1" in f else None,
            flops_fraction=np.asarray(f["flops_fraction"][()], dtype=np.float64) if "flops_fraction" in f else None,
            attrs=attrs,
            path=path,
        )
    expected = (len(data.layers), len(data.ratios), len(data.criteria))
    if data.acc.shape != expected or data.done.shape != expected:
        raise SensitivityError(f"{path}: acc/done have shape {data.acc.shape}, expected {expected} (layers, ratios, criteria)")
    return data


def _with_baseline(data: Sensitivity, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x in percent and the values along the ratio axis, with the unpruned model at 0% when known."""
    x = 100.0 * data.ratios
    if np.isfinite(data.baseline_acc) and 0.0 not in data.ratios and values.ndim == 1:
        return np.concatenate([[0.0], x]), np.concatenate([[data.baseline_acc], values])
    return x, values


def _new_figure(width: float, height: float):  # noqa: ANN202 - a matplotlib Figure
    from analysis.common import new_figure

    return new_figure(width, height)


def _title(data: Sensitivity) -> str:
    arch = data.attrs.get("arch_name", "")
    split = ""
    try:
        split = json.loads(str(data.attrs.get("eval", "{}"))).get("split", "")
    except ValueError:
        pass
    return f"{arch} sensitivity" + (f" ({split} set)" if split else "")


def layers_figure(data: Sensitivity, criterion: str, *, metric: str = "acc"):  # noqa: ANN201 - a matplotlib Figure
    """Accuracy (or loss) against the percentage of filters pruned, one curve per layer (Figure 2(b))."""
    if criterion not in data.criteria:
        raise SensitivityError(f"{data.path}: no criterion {criterion!r} (file has {', '.join(data.criteria)})")
    c = data.criteria.index(criterion)
    values = data.values(metric)[:, :, c]
    stages = data.stages()
    fig = _new_figure(4.6 * len(stages), 4.2)
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    import matplotlib

    for ax, (stage, idx) in zip(axes, stages):
        cmap = matplotlib.colormaps["viridis" if len(idx) > 10 else "tab10"]
        for k, i in enumerate(idx):
            color = cmap(k / max(1, len(idx) - 1)) if len(idx) > 10 else cmap(k % 10)
            x, y = _with_baseline(data, values[i]) if metric == "acc" else (100.0 * data.ratios, values[i])
            ax.plot(x, y, marker="o", markersize=3, color=color, label=data.label(i))
        if metric == "acc" and np.isfinite(data.baseline_acc):
            ax.axhline(data.baseline_acc, color="0.4", linestyle="--", linewidth=1, label="unpruned")
        ax.set_xlabel("filters pruned away (%)")
        ax.set_ylabel("accuracy (%)" if metric == "acc" else "loss")
        label = CRITERION_LABELS.get(criterion, criterion)
        ax.set_title(f"{stage}: {label}" if stage else label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6 if len(idx) > 8 else 8, ncol=2 if len(idx) > 8 else 1, loc="lower left")
    fig.suptitle(_title(data), fontsize=11)
    return fig


def criteria_figure(data: Sensitivity, *, metric: str = "acc"):  # noqa: ANN201 - a matplotlib Figure
    """One panel per layer with a curve per criterion (smallest vs random vs largest: Figure 8)."""
    if len(data.criteria) < 2:
        raise SensitivityError(
            f"{data.path} holds one criterion ({data.criteria[0]}); scan several to compare them, e.g. "
            "'prune.sensitivity_criteria=[l1,random,largest]'"
        )
    n = len(data.layers)
    ncols = min(4, n)
    nrows = -(-n // ncols)
    fig = _new_figure(3.0 * ncols, 2.5 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    values = data.values(metric)
    styles = {"l1": ("tab:blue", "o"), "random": ("tab:green", "s"), "largest": ("tab:red", "^")}
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_visible(False)
            continue
        for c, crit in enumerate(data.criteria):
            color, marker = styles.get(crit, (None, "x"))
            x, y = _with_baseline(data, values[i, :, c]) if metric == "acc" else (100.0 * data.ratios, values[i, :, c])
            ax.plot(x, y, marker=marker, markersize=3, color=color, label=CRITERION_LABELS.get(crit, crit))
        if metric == "acc" and np.isfinite(data.baseline_acc):
            ax.axhline(data.baseline_acc, color="0.4", linestyle="--", linewidth=1)
        ax.set_title(data.label(i), fontsize=9)
        ax.grid(alpha=0.3)
        if i % ncols == 0:
            ax.set_ylabel("accuracy (%)" if metric == "acc" else "loss", fontsize=8)
        if i >= n - ncols:
            ax.set_xlabel("filters pruned away (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(_title(data) + ": which filters to prune", fontsize=11)
    return fig


def filters_figure(data: Sensitivity):  # noqa: ANN201 - a matplotlib Figure
    """Each layer's filter L1 norms, sorted descending and normalised by the largest (Figure 2(a))."""
    if data.filter_l1 is None:
        raise SensitivityError(f"{data.path} has no filter_l1 dataset")
    fig = _new_figure(5.6, 4.2)
    ax = fig.add_subplot()
    import matplotlib

    n = len(data.layers)
    cmap = matplotlib.colormaps["viridis" if n > 10 else "tab10"]
    for i in range(n):
        row = data.filter_l1[i]
        row = row[np.isfinite(row)]
        color = cmap(i / max(1, n - 1)) if n > 10 else cmap(i % 10)
        # Rank over width, as in the paper, so layers of different widths share one axis.
        ax.plot(np.arange(1, row.size + 1) / row.size, row, color=color, label=data.label(i))
    ax.set_xlabel("filter rank / filters in layer (sorted by L1 norm)")
    ax.set_ylabel("L1 norm / largest in layer")
    ax.set_title(f"{data.attrs.get('arch_name', '')} filters ranked by L1 norm", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6 if n > 8 else 8, ncol=2 if n > 8 else 1)
    return fig


def _outputs(data: Sensitivity, args: argparse.Namespace, name: str) -> list[Path]:
    from analysis.common import output_path

    formats = list(dict.fromkeys(args.format or ["png"]))
    return [output_path(data.path, args.out, f"{name}.{ext}") for ext in formats]


def _save(fig: Any, paths: list[Path], dpi: int) -> Iterator[Path]:
    from analysis.common import save_figure

    for path in paths:
        yield save_figure(fig, path, dpi=dpi)


def _cmd_sensitivity(args: argparse.Namespace) -> Iterator[Path]:
    kinds = list(dict.fromkeys(args.kind or KINDS))
    for file in args.files:
        data = load_sensitivity(file)
        if not data.done.any():
            raise SensitivityError(f"{file}: no cell is computed yet; run (or resume) `effrep prune sensitivity`")
        stem = data.path.stem  # type: ignore[union-attr]
        suffix = "" if args.metric == "acc" else f"_{args.metric}"
        if "layers" in kinds:
            for crit in ([args.criterion] if args.criterion else data.criteria):
                fig = layers_figure(data, crit, metric=args.metric)
                yield from _save(fig, _outputs(data, args, f"{stem}_layers_{crit}{suffix}"), args.dpi)
        if "criteria" in kinds and (len(data.criteria) >= 2 or args.kind):
            fig = criteria_figure(data, metric=args.metric)
            yield from _save(fig, _outputs(data, args, f"{stem}_criteria{suffix}"), args.dpi)
        if "filters" in kinds and data.filter_l1 is not None:
            yield from _save(filters_figure(data), _outputs(data, args, f"{stem}_filters"), args.dpi)


def add_commands(subparsers: Any) -> None:
    """Add the `sensitivity` command to the analysis CLI (``python -m analysis sensitivity ...``)."""
    from analysis.cli import _HelpFormatter

    p = subparsers.add_parser(
        "sensitivity",
        help="pruning sensitivity: accuracy vs filters pruned per layer, criteria compared (paper Figs. 2, 8)",
        description=__doc__,
        formatter_class=_HelpFormatter,
    )
    p.set_defaults(run=_cmd_sensitivity)
    p.add_argument("files", nargs="+", metavar="FILE", help="sensitivity files (.h5) from `effrep prune sensitivity`")
    p.add_argument(
        "--out", metavar="DIR", default=None, help="write here instead of next to each input file (created if missing)"
    )
    p.add_argument("--kind", action="append", choices=KINDS, default=None,
                   help="figure to write; repeat for several [default: all that the file supports]")
    p.add_argument("--criterion", default=None, help="the criterion of the per-layer figure [default: one figure per criterion]")
    p.add_argument("--metric", choices=("acc", "loss"), default="acc", help="value to plot")
    p.add_argument("--format", action="append", choices=FIGURE_FORMATS, default=None,
                   help="image format; repeat for several [default: png]")
    p.add_argument("--dpi", type=int, default=150, help="resolution of raster images")
