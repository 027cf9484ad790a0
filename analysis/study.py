"""The outputs of a study (`effrep study`): the papers' figure grids and a table of test error beside sharpness.

A study directory holds ``study.json`` (the manifest the study runner keeps: variants, seeds, and per run
the status and output files of each measurement node) and the files those nodes wrote. This module reads
only the manifest and those files, so a workstation without torch can redo the figures and the table.

Figures (``figures/``), one panel per variant for one seed (the study's first unless ``seed`` is given):

- ``scan2d_<metric>_seed<S>``: contour grids of the 2D scans. Every panel has the same levels and the same
  colour scale, computed over all panels at once (`analysis.common.resolve_levels`: the paper's
  0.1:10:0.5 on a loss that spans them), so equal colours mean equal values across variants.
- ``scan1d_<metric>_seed<S>``: the 1D filter-normalized scans overlaid, one colour per variant, loss solid
  on the left axis, accuracy dashed on the right (as the landscape paper's fig. 3).
- ``convexity_seed<S>``: the convexity maps |lambda_min / lambda_max| on one fixed scale [0, 0.5], as
  ``python -m analysis convexity`` draws one.
- ``trajectory_<metric>_seed<S>``: the optimizer paths over their PCA-plane scans, shared levels and colours.
- ``interp_<metric>_seed<S>``: the interpolations between the study's named pairs, overlaid like the 1D scans.

Panels follow the variants' ``group`` labels when every variant has one that places it uniquely: the
columns by the first key (e.g. depth), the rows by the other keys (e.g. shortcut), values in the order
the variants list them, as the paper's fig. 5; otherwise the variants in order, four to a row. A variant
without the measurement keeps its place as an empty panel naming its status.

The table (``table.csv``, ``table.json``, ``table.md``): one row per variant, each measure the mean and the
sample standard deviation (ddof = 1) over the seeds where it was measured, with their number n:

- test error (%): 100 - test_acc of the last finished epoch of ``metrics.h5``;
- top eigenvalue and trace of the Hessian at the minimum (``effrep hessian``: ``top_eigenvalues[0]``, ``trace``);
- the 1D width: the length of the connected interval around the 1D scan's minimum where the loss stays
  <= minimum + 0.1, its ends interpolated linearly between grid points. A curve that does not rise by 0.1
  before an end of the scan gives only a lower bound (the interval is cut at the scan's edge): flagged;
- the nearly convex fraction: the share of the computed, finite points of the convexity map with
  |lambda_min / lambda_max| < 0.1;
- the path in 2 PCs: the explained variance of the trajectory's first two principal directions, in %.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.curvature import CONVEXITY_METRIC, DEFAULT_VMAX, NEARLY_CONVEX, convex_fraction
from analysis.surface import Surface, SurfaceError, load_surface

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MANIFEST = "study.json"
KIND = "study"
SCHEMA_VERSION = 1
RISE = 0.1  # the 1D width is taken where the loss is within this of its minimum
SIGNIFICANT = 4  # digits kept in table.csv / table.json
MAX_COLUMNS = 4  # panels per row when the variants carry no group labels


class StudyError(SurfaceError):
    """A study directory or manifest that analysis cannot use; the message says what to fix."""


# --- the manifest ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One variant of a study: its name and its group labels (e.g. {"depth": 20, "shortcut": True})."""

    name: str
    group: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """The group labels as "depth=20, shortcut=true" (empty without labels)."""
        return ", ".join(f"{k}={_plain(v)}" for k, v in self.group.items())


@dataclass(frozen=True)
class Node:
    """A measurement of one run (or pair): its status ("pending", "done", "failed") and output files."""

    status: str
    outputs: dict[str, str]
    error: str = ""


@dataclass
class Study:
    """A study manifest read from ``<root>/study.json``; output paths in it are relative to `root`."""

    root: Path
    name: str
    variants: list[Variant]
    seeds: list[int]
    runs: dict[tuple[str, int], dict[str, Node]]
    pairs: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def node(self, variant: str, seed: int, node: str) -> Node | None:
        """The node `node` of run (variant, seed), or None when the study does not measure it."""
        return self.runs.get((variant, seed), {}).get(node)

    def status(self, variant: str, seed: int, node: str) -> str:
        """The node's status, "not measured" when the study has no such node."""
        found = self.node(variant, seed, node)
        return found.status if found is not None else "not measured"

    def output(self, variant: str, seed: int, node: str, key: str) -> Path | None:
        """The file `key` of a node that is done; None (with a note when the file is gone) otherwise."""
        return self._done_file(self.node(variant, seed, node), key, f"{variant} seed {seed}: {node}")

    def pair_output(self, pair: dict[str, Any], key: str = "surface") -> Path | None:
        """The file `key` of a pair's interpolation when it is done."""
        node = Node(str(pair.get("status", "pending")), dict(pair.get("outputs") or {}))
        return self._done_file(node, key, f"pair {pair.get('name')}: interp")

    def _done_file(self, node: Node | None, key: str, what: str) -> Path | None:
        if node is None or node.status != "done" or key not in node.outputs:
            return None
        path = self.root / node.outputs[key]
        if not path.exists():
            self.notes.append(f"{what} is done but {path} is missing; shown as n/a")
            return None
        return path


def load_study(study_dir: str | Path) -> Study:
    """Read ``<study_dir>/study.json``; a StudyError names the file and what is wrong with it."""
    root = Path(study_dir)
    path = root / MANIFEST
    if not path.is_file():
        what = "no such directory" if not root.is_dir() else f"no {MANIFEST} in it"
        raise StudyError(f"{root}: {what}; give the directory `effrep study CONFIG` writes (its study.out)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StudyError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND or data.get("schema_version") != SCHEMA_VERSION:
        found = (data.get("kind"), data.get("schema_version")) if isinstance(data, dict) else (type(data).__name__, None)
        raise StudyError(
            f"{path}: not a study manifest of this version (kind {found[0]!r}, schema_version {found[1]!r}; "
            f"expected kind {KIND!r}, schema_version {SCHEMA_VERSION})"
        )
    try:
        variants = [Variant(str(v["name"]), dict(v.get("group") or {})) for v in data["variants"]]
        seeds = [int(s) for s in data["seeds"]]
        runs: dict[tuple[str, int], dict[str, Node]] = {}
        for run in data.get("runs", []):
            nodes = {
                name: Node(str(n.get("status", "pending")), {k: str(v) for k, v in (n.get("outputs") or {}).items()},
                           str(n.get("error", "")))
                for name, n in (run.get("nodes") or {}).items()
            }
            runs[(str(run["variant"]), int(run["seed"]))] = nodes
        pairs = [dict(p) for p in data.get("pairs", [])]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StudyError(f"{path}: malformed study manifest ({type(exc).__name__}: {exc})") from None
    names = [v.name for v in variants]
    if not names or not seeds:
        raise StudyError(f"{path}: the manifest lists no variants or no seeds")
    unknown = sorted({v for v, _ in runs} - set(names))
    if unknown:
        raise StudyError(f"{path}: runs of variants the manifest does not list: {', '.join(unknown)}")
    return Study(root, str(data.get("name") or root.name), variants, seeds, runs, pairs)


def _plain(value: Any) -> str:
    """A group value as the YAML/JSON text a user wrote: true/false for booleans."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


# --- the measures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Width:
    """The interval around a 1D minimum where the loss is <= minimum + rise: [left, right], `bounded` when
    both ends are crossings inside the scan (else an end is the scan's edge and the width a lower bound)."""

    left: float
    right: float
    bounded: bool

    @property
    def value(self) -> float:
        """right - left (a lower bound when not `bounded`)."""
        return self.right - self.left


def flat_width(x: np.ndarray, loss: np.ndarray, valid: np.ndarray | None = None, *, rise: float = RISE) -> Width | None:
    """Width of the connected interval around the minimum where loss <= min + rise; crossings interpolated linearly.

    Only valid points (computed, finite) make the curve; None when there is none.
    """
    x, loss = np.asarray(x, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    ok = np.isfinite(loss) & np.isfinite(x)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    if not ok.any():
        return None
    order = np.argsort(x[ok], kind="stable")
    xs, ls = x[ok][order], loss[ok][order]
    k = int(np.argmin(ls))
    level = ls[k] + rise

    def end(step: int) -> tuple[float, bool]:
        i = k
        while 0 <= i + step < xs.size and ls[i + step] <= level:
            i += step
        j = i + step
        if not 0 <= j < xs.size:
            return float(xs[i]), False  # the scan ends before the curve rises: a lower bound
        return float(xs[i] + (level - ls[i]) / (ls[j] - ls[i]) * (xs[j] - xs[i])), True

    (left, lb), (right, rb) = end(-1), end(+1)
    return Width(left, right, lb and rb)


@dataclass
class Stat:
    """One measure of one variant over its seeds: the per-seed values and their mean, std (ddof = 1), n."""

    seeds: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    lower_bounds: int = 0  # how many of the values are only lower bounds (the 1D width)

    def add(self, seed: int, value: float | None, *, lower_bound: bool = False) -> None:
        """Record a seed's value; None or a non-finite value counts as not measured."""
        if value is None or not math.isfinite(value):
            return
        self.seeds.append(seed)
        self.values.append(float(value))
        self.lower_bounds += int(lower_bound)

    @property
    def n(self) -> int:
        """Number of seeds measured."""
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """Mean over the seeds (None when none was measured)."""
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the seeds (ddof = 1; None for fewer than two)."""
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None


@dataclass
class Row:
    """The table row of one variant."""

    variant: Variant
    test_error: Stat = field(default_factory=Stat)
    top_eigenvalue: Stat = field(default_factory=Stat)
    trace: Stat = field(default_factory=Stat)
    width: Stat = field(default_factory=Stat)
    convex_fraction: Stat = field(default_factory=Stat)
    path_in_plane: Stat = field(default_factory=Stat)


# (attribute, column title in table.md, definition) in table order
COLUMNS = (
    ("test_error", "test error (%)", "100 - test_acc of the last finished epoch (metrics.h5)"),
    ("top_eigenvalue", "top eigenvalue", "largest Hessian eigenvalue at the minimum (effrep hessian: top_eigenvalues[0])"),
    ("trace", "trace", "Hessian trace at the minimum (effrep hessian: trace)"),
    ("width", f"1D width at +{RISE:g}",
     f"length of the interval around the 1D scan's minimum where the loss <= minimum + {RISE:g}, ends "
     "interpolated linearly; a lower bound when the loss stays below that up to an edge of the scan"),
    ("convex_fraction", f"nearly convex fraction (|λmin/λmax| < {NEARLY_CONVEX:g})",
     f"share of the computed, finite points of the convexity map with |lambda_min / lambda_max| < {NEARLY_CONVEX:g}"),
    ("path_in_plane", "path in 2 PCs (%)",
     "explained variance of the first two principal directions of the optimization path (effrep trajectory), in %"),
)


def _hessian(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StudyError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or "top_eigenvalues" not in data:
        raise StudyError(f"{path}: not the result of `effrep hessian` (no top_eigenvalues)")
    return data


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def study_table(study: Study, metric: str = "train_loss") -> list[Row]:
    """One row per variant: test error and the sharpness measures over the seeds where they were measured."""
    from analysis.metrics import last_value
    from analysis.trajectory import load_trajectory

    loss = width_metric(metric)
    rows = []
    for variant in study.variants:
        row = Row(variant)
        for seed in study.seeds:
            path = study.output(variant.name, seed, "train", "metrics")
            if path is not None:
                acc = last_value(path, "test_acc")
                row.test_error.add(seed, None if acc is None else 100.0 - acc)
            path = study.output(variant.name, seed, "hessian", "hessian")
            if path is not None:
                data = _hessian(path)
                top = data.get("top_eigenvalues") or [None]
                row.top_eigenvalue.add(seed, _number(top[0]))
                if data.get("trace_probes", 1):  # hessian.trace_probes=0: no trace was estimated (stored as 0)
                    row.trace.add(seed, _number(data.get("trace")))
            path = study.output(variant.name, seed, "scan1d", "surface")
            if path is not None:
                surface = _line(load_surface(path), "scan1d")
                width = flat_width(surface.x, surface.require(loss), surface.valid(loss))
                if width is not None:
                    row.width.add(seed, width.value, lower_bound=not width.bounded)
            path = study.output(variant.name, seed, "curvature", "surface")
            if path is not None:
                share, count = convex_fraction(load_surface(path), CONVEXITY_METRIC)
                row.convex_fraction.add(seed, share if count else None)
            path = study.output(variant.name, seed, "trajectory", "surface")
            if path is not None:
                ratio = load_trajectory(path).explained_variance_ratio
                row.path_in_plane.add(seed, 100.0 * float(ratio[:2].sum()) if ratio.size >= 2 else None)
        rows.append(row)
    return rows


def width_metric(metric: str) -> str:
    """The loss the 1D width is measured on: `metric` when it is a loss, else train_loss."""
    return metric if metric.endswith("loss") else "train_loss"


def _line(surface: Surface, node: str) -> Surface:
    if surface.y is not None:
        raise StudyError(f"{surface.describe()}: the {node} measurement must be a 1D scan, this is 2D")
    return surface


# --- the table files ---------------------------------------------------------------------------------


def significant(value: float | None, digits: int = SIGNIFICANT) -> float | None:
    """`value` rounded to `digits` significant digits (None stays None)."""
    if value is None:
        return None
    return float(f"{value:.{digits}g}")


def plain(value: float, digits: int) -> str:
    """A number with `digits` significant digits, without an exponent where a plain number reads well."""
    rounded = float(f"{value:.{digits}g}")
    return f"{rounded:g}" if rounded == 0 or 1e-4 <= abs(rounded) < 1e6 else f"{rounded:.{digits - 1}e}"


def cell(stat: Stat) -> str:
    """A table.md cell: "mean ± std (n=k)", "> ..." for a lower bound, "n/a" when nothing was measured.

    The std has two significant digits; the mean at least three, and as many decimals as the std shows
    (100.5 ± 0.71, not 100 ± 0.71), up to six significant digits (99.99999 ± 2e-11 reads 100.000 ± 2.0e-11).
    """
    mean, std = stat.mean, stat.std
    if mean is None:
        return "n/a"
    text = plain(mean, 3)
    if std is not None:
        std_text = plain(std, 2)
        if std > 0 and 1e-4 <= abs(mean) < 1e6:
            decimals = max(1 - math.floor(math.log10(std)), 2 - math.floor(math.log10(abs(mean))), 0)
            decimals = min(decimals, max(5 - math.floor(math.log10(abs(mean))), 0))  # at most 6 significant digits
            text = f"{mean:.{decimals}f}"
        text += f" ± {std_text}"
    return f"{'> ' if stat.lower_bounds else ''}{text} (n={stat.n})"


def table_json(study: Study, rows: Sequence[Row], metric: str) -> dict[str, Any]:
    """The table as table.json holds it: per row and measure mean, std, n, and the per-seed values."""

    def entry(stat: Stat) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": significant(stat.mean), "std": significant(stat.std), "n": stat.n,
                               "seeds": stat.seeds, "values": [significant(v) for v in stat.values]}
        return out

    out_rows = []
    for row in rows:
        item: dict[str, Any] = {"variant": row.variant.name, "group": row.variant.group}
        for name, _, _ in COLUMNS:
            item[name] = entry(getattr(row, name))
        item["width"]["lower_bound_seeds"] = row.width.lower_bounds
        out_rows.append(item)
    return {"kind": "study_table", "schema_version": 1, "study": study.name, "metric": metric,
            "width_metric": width_metric(metric), "rise": RISE,
            "columns": {name: definition for name, _, definition in COLUMNS}, "rows": out_rows}


def csv_fields() -> list[str]:
    """The header of table.csv."""
    names = ["variant", "group"]
    for name, _, _ in COLUMNS:
        names += [f"{name}_mean", f"{name}_std", f"{name}_n"]
    names.insert(names.index("width_n") + 1, "width_lower_bound_seeds")
    return names


def table_csv(rows: Sequence[Row]) -> str:
    """table.csv: one line per variant, empty where not measured, values to SIGNIFICANT digits."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_fields(), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        line: dict[str, Any] = {"variant": row.variant.name, "group": row.variant.label()}
        for name, _, _ in COLUMNS:
            stat: Stat = getattr(row, name)
            mean, std = significant(stat.mean), significant(stat.std)
            line |= {f"{name}_mean": "" if mean is None else repr(mean), f"{name}_std": "" if std is None else repr(std),
                     f"{name}_n": stat.n}
        line["width_lower_bound_seeds"] = row.width.lower_bounds
        writer.writerow(line)
    return buffer.getvalue()


def table_markdown(study: Study, rows: Sequence[Row], metric: str) -> str:
    """table.md: a Markdown table, "mean ± std (n=k)" per cell, n/a where nothing was measured, notes below."""
    groups = any(row.variant.group for row in rows)
    head = ["variant", *(["group"] if groups else []), *(title for _, title, _ in COLUMNS)]

    def md_row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    intro = f"Study {study.name}: mean ± std over seeds (sample std; n = seeds measured); 1D width of {width_metric(metric)}."
    lines = [intro, "", md_row(head), "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.variant.name, *([row.variant.label()] if groups else [])]
        cells += [cell(getattr(row, name)) for name, _, _ in COLUMNS]
        lines.append(md_row(cells))
    bounded = [row for row in rows if row.width.lower_bounds]
    if bounded:
        which = ", ".join(f"{r.variant.name} ({r.width.lower_bounds} of {r.width.n} seeds)" for r in bounded)
        lines += ["", f"1D width \"> x\": a lower bound (wider than the scan range): the loss stays within +{RISE:g} of "
                      f"its minimum up to an edge of the 1D scan in {which}."]
    return "\n".join(lines) + "\n"


# --- the figures -------------------------------------------------------------------------------------


def panel_layout(variants: Sequence[Variant]) -> tuple[int, int, list[tuple[int, int]]]:
    """(rows, columns, (row, column) of each variant): by group labels when they place every variant in its own
    cell (columns by the first key, rows by the others, values in order of appearance), else in order."""
    keys = list(dict.fromkeys(k for v in variants for k in v.group))
    if keys and all(v.group for v in variants):
        def value(v: Variant, key: str) -> str:
            return json.dumps(v.group.get(key), sort_keys=True, default=str)

        cols = list(dict.fromkeys(value(v, keys[0]) for v in variants))
        rows = list(dict.fromkeys(tuple(value(v, k) for k in keys[1:]) for v in variants))
        places = [(rows.index(tuple(value(v, k) for k in keys[1:])), cols.index(value(v, keys[0]))) for v in variants]
        if len(set(places)) == len(places):
            return len(rows), len(cols), places
    ncols = min(len(variants), MAX_COLUMNS)
    return math.ceil(len(variants) / ncols), ncols, [divmod(k, ncols) for k in range(len(variants))]


def _grid(study: Study, width: float = 3.6, height: float = 3.4) -> tuple[Figure, list[Axes]]:
    """A figure with one Axes per variant at its place in the layout (cells without a variant stay empty)."""
    from analysis.common import new_figure

    nrows, ncols, places = panel_layout(study.variants)
    fig = new_figure(width * ncols + 1.2, height * nrows + 0.6)
    gs = fig.add_gridspec(nrows, ncols)
    axes = [fig.add_subplot(gs[r, c]) for r, c in places]
    return fig, axes


def _panel_title(variant: Variant, extra: str = "") -> str:
    return "\n".join(line for line in (variant.name, variant.label(), extra) if line)


def _empty_panel(ax: Axes, variant: Variant, status: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, f"n/a\n({status})", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_title(_panel_title(variant), fontsize=9)


def _surfaces(study: Study, seed: int, node: str) -> list[Surface | None]:
    """The done surface file of `node` per variant at `seed`, None where missing."""
    out: list[Surface | None] = []
    for v in study.variants:
        path = study.output(v.name, seed, node, "surface")
        out.append(load_surface(path) if path is not None else None)
    return out


def contour_grid(
    study: Study, seed: int, metric: str = "train_loss", *, node: str = "scan2d", kind: str = "contour",
    log: bool = False, cmap: str = "viridis",
) -> Figure | None:
    """The 2D scans of every variant on one colour scale with one set of levels; None when no variant has one."""
    from analysis.common import resolve_levels
    from analysis.contour import add_colorbar, draw

    surfaces = _surfaces(study, seed, node)
    present = [s for s in surfaces if s is not None]
    if not present:
        return None
    for s in present:
        s.require_2d(f"the {node} grid")
    levels, norm = resolve_levels(present, metric, "auto", log=log)
    fig, axes = _grid(study)
    artist = None
    for ax, variant, surface in zip(axes, study.variants, surfaces):
        if surface is None:
            _empty_panel(ax, variant, study.status(variant.name, seed, node))
            continue
        artist = draw(ax, surface, metric, kind=kind, norm=norm, levels=levels, log=log, cmap=cmap)
        ax.set_title(_panel_title(variant), fontsize=9)
    assert artist is not None
    add_colorbar(fig, artist, axes, norm, label=metric + (" (log scale)" if log else ""))
    fig.suptitle(f"{study.name}: {metric} of the 2D scans, seed {seed}", fontsize=11)
    return fig


def convexity_grid(study: Study, seed: int, *, cmap: str = "viridis") -> Figure | None:
    """The convexity maps |lambda_min / lambda_max| of every variant on the fixed scale [0, 0.5]; None without any."""
    from analysis.common import resolve_levels
    from analysis.contour import add_colorbar, draw

    surfaces = _surfaces(study, seed, "curvature")
    present = [s for s in surfaces if s is not None]
    if not present:
        return None
    for s in present:
        s.require_2d("the convexity grid")
    levels, norm = resolve_levels(present, CONVEXITY_METRIC, 20, vmin=0.0, vmax=DEFAULT_VMAX)
    fig, axes = _grid(study)
    artist = None
    for ax, variant, surface in zip(axes, study.variants, surfaces):
        if surface is None:
            _empty_panel(ax, variant, study.status(variant.name, seed, "curvature"))
            continue
        artist = draw(ax, surface, CONVEXITY_METRIC, kind="heatmap", norm=norm, levels=levels, cmap=cmap)
        share, count = convex_fraction(surface)
        note = f"{share:.0%} of {count} points < {NEARLY_CONVEX:g}" if count else "no computed point"
        ax.set_title(_panel_title(variant, note), fontsize=9)
    assert artist is not None
    add_colorbar(fig, artist, axes, norm, label="|λmin / λmax|")
    fig.suptitle(f"{study.name}: convexity maps, seed {seed}", fontsize=11)
    return fig


def trajectory_grid(
    study: Study, seed: int, metric: str = "train_loss", *, log: bool = False, cmap: str = "viridis"
) -> Figure | None:
    """The optimizer paths over their PCA-plane scans, one colour scale and one set of levels; None without any."""
    from analysis.common import resolve_levels
    from analysis.contour import add_colorbar
    from analysis.trajectory import draw_trajectory, load_trajectory, percent

    surfaces = _surfaces(study, seed, "trajectory")
    present = [s for s in surfaces if s is not None]
    if not present:
        return None
    for s in present:
        s.require_2d("the trajectory grid")
    levels, norm = resolve_levels(present, metric, "auto", log=log)
    fig, axes = _grid(study, 3.8, 4.2)
    artist = None
    for ax, variant, surface in zip(axes, study.variants, surfaces):
        if surface is None:
            _empty_panel(ax, variant, study.status(variant.name, seed, "trajectory"))
            continue
        assert surface.path is not None
        path = load_trajectory(surface.path)
        artist = draw_trajectory(ax, surface, path, metric, kind="contour", norm=norm, levels=levels, log=log, cmap=cmap)
        ratio = path.explained_variance_ratio
        extra = f"PC1 + PC2: {percent(float(ratio[:2].sum()))}" if ratio.size >= 2 and np.isfinite(ratio[:2]).all() else ""
        ax.set_title(_panel_title(variant, extra), fontsize=9)
    assert artist is not None
    add_colorbar(fig, artist, axes, norm, label=metric + (" (log scale)" if log else ""))
    fig.suptitle(f"{study.name}: optimizer paths over {metric}, seed {seed}", fontsize=11)
    return fig


def overlay_lines(
    curves: Sequence[tuple[str, Surface]], metric: str = "train_loss", *, log: bool = False, title: str = "",
    panels: Sequence[tuple[str, Sequence[int]]] = (),
) -> Figure:
    """1D curves overlaid, one colour each: `metric` solid on the left axis, its accuracy dashed on the right.

    ``panels``: (title, indices into ``curves``) per panel side by side (default: one panel of all curves), for
    curves whose x axes mean different things (filter-normalized against unnormalized directions)."""
    from analysis.common import new_figure, tidy_log_axis

    acc = metric.replace("loss", "acc") if metric.endswith("loss") else None
    groups = list(panels) or [("", range(len(curves)))]
    fig = new_figure(6.8 if len(groups) == 1 else 5.2 * len(groups), 4.6)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    has_acc = acc is not None and any(acc in s.metrics for _, s in curves)
    handles = []
    for ax, (panel_title, members) in zip(axes, groups):
        twin = ax.twinx() if has_acc else None
        chosen = [(k, *curves[k]) for k in members]
        for k, label, surface in chosen:
            colour = f"C{k % 10}"
            handles += ax.plot(surface.x, surface.values(metric, log=log), color=colour, linestyle="-", label=label)
            if twin is not None and acc in surface.metrics:
                twin.plot(surface.x, surface.values(acc), color=colour, linestyle="--", label=f"_{label} {acc}")
        ax.set_xlabel(chosen[0][2].xlabel)
        ax.set_ylabel(f"{metric} (solid)")
        if log:
            ax.set_yscale("log")
            tidy_log_axis(ax.yaxis, *ax.get_ylim())
        if twin is not None:
            twin.set_ylabel(f"{acc} (%, dashed)")
        ax.set_xlim(min(float(s.x.min()) for _, _, s in chosen), max(float(s.x.max()) for _, _, s in chosen))
        ax.set_title(panel_title, fontsize=9)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def line_overlay(study: Study, seed: int, metric: str = "train_loss", *, log: bool = False) -> Figure | None:
    """The 1D scans of every variant overlaid, one panel per direction normalization; None when no variant has one."""
    curves = []
    for variant, surface in zip(study.variants, _surfaces(study, seed, "scan1d")):
        if surface is not None:
            curves.append((variant.name, _line(surface, "scan1d")))
    if not curves:
        return None
    norms = [str(surface.attrs.get("norm", "filter")) for _, surface in curves]
    panels = [(f"directions normalized by {norm}" if norm != "none" else "unnormalized directions",
               [k for k, n in enumerate(norms) if n == norm]) for norm in dict.fromkeys(norms)]
    what = "filter-normalized " if set(norms) == {"filter"} else ""
    return overlay_lines(curves, metric, log=log, title=f"{study.name}: 1D {what}scans, seed {seed}",
                         panels=panels if len(panels) > 1 else ())


def interp_overlay(study: Study, seed: int, metric: str = "train_loss", *, log: bool = False) -> Figure | None:
    """The interpolations between the study's pairs at `seed` overlaid; None when there is none."""
    curves = []
    for pair in study.pairs:
        if pair.get("seed", seed) != seed:
            continue
        path = study.pair_output(pair)
        if path is not None:
            label = f"{pair.get('name')}: {pair.get('a')} → {pair.get('b')}"
            curves.append((label, _line(load_surface(path), "interp")))
    if not curves:
        return None
    return overlay_lines(curves, metric, log=log, title=f"{study.name}: interpolation between pairs, seed {seed}")


# --- entry points ------------------------------------------------------------------------------------


@dataclass
class StudyReport:
    """What `write_study_outputs` wrote, the notes on what it skipped, and the Markdown table."""

    paths: list[Path]
    notes: list[str]
    markdown: str
    rows: list[Row]


def write_study_outputs(
    study_dir: str | Path,
    *,
    out: str | Path | None = None,
    formats: Sequence[str] = ("png",),
    metric: str = "train_loss",
    seed: int | None = None,
    log: bool = False,
) -> StudyReport:
    """Write the figure grids under ``<out>/figures/`` and table.csv/.json/.md under ``<out>`` (default: the study dir)."""
    from analysis.common import IMAGE_FORMATS, save_figure

    study = load_study(study_dir)
    bad = [f for f in formats if f not in IMAGE_FORMATS]
    if bad or not formats:
        raise StudyError(f"--format {','.join(formats)}: choose from {', '.join(IMAGE_FORMATS)}")
    if seed is None:
        seed = study.seeds[0]
    elif seed not in study.seeds:
        raise StudyError(f"--seed {seed}: not one of the study's seeds ({', '.join(map(str, study.seeds))})")
    root = Path(out) if out is not None else study.root
    figures_dir = root / "figures"
    rows = study_table(study, metric)  # reads every measurement first: a damaged file stops before anything is written
    tag = f"seed{seed}{'_log' if log else ''}"
    figures = {
        f"scan2d_{metric}_{tag}": lambda: contour_grid(study, seed, metric, log=log),
        f"scan1d_{metric}_{tag}": lambda: line_overlay(study, seed, metric, log=log),
        f"convexity_seed{seed}": lambda: convexity_grid(study, seed),
        f"trajectory_{metric}_{tag}": lambda: trajectory_grid(study, seed, metric, log=log),
        f"interp_{metric}_{tag}": lambda: interp_overlay(study, seed, metric, log=log),
    }
    paths: list[Path] = []
    for name, make in figures.items():
        fig = make()
        if fig is None:
            what = "no pair" if name.startswith("interp") else "no variant"
            study.notes.append(f"{name.split('_')[0]}: {what} has it done at seed {seed}; no figure")
            continue
        figures_dir.mkdir(parents=True, exist_ok=True)
        for ext in dict.fromkeys(formats):
            paths.append(save_figure(fig, figures_dir / f"{name}.{ext}"))
    root.mkdir(parents=True, exist_ok=True)
    markdown = table_markdown(study, rows, metric)
    texts = {"table.csv": table_csv(rows), "table.json": json.dumps(table_json(study, rows, metric), indent=1) + "\n",
             "table.md": markdown}
    for name, text in texts.items():
        # written beside and renamed into place: a kill leaves the previous table or the new one, never half of one
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(root / name)
        paths.append(root / name)
    return StudyReport(paths, list(dict.fromkeys(study.notes)), markdown, rows)


def study_outputs(
    study_dir: str | Path, *, formats: Sequence[str] = ("png",), metric: str = "train_loss", seed: int | None = None,
    out: str | Path | None = None, log: bool = False,
) -> list[Path]:
    """Write a study's figure grids and its table (see the module docstring); returns the paths written."""
    return write_study_outputs(study_dir, out=out, formats=formats, metric=metric, seed=seed, log=log).paths


# --- command line ------------------------------------------------------------------------------------


def _parse_formats(text: str) -> list[str]:
    from analysis.common import IMAGE_FORMATS

    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in names if f not in IMAGE_FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give formats from {', '.join(IMAGE_FORMATS)}, e.g. png,pdf")
    return names


def _cmd_study(args: argparse.Namespace) -> Iterator[Path]:
    formats = [f for group in (args.format or [["png"]]) for f in group]
    report = write_study_outputs(args.study_dir, out=args.out, formats=formats, metric=args.metric, seed=args.seed,
                                 log=args.log)
    yield from report.paths
    for note in report.notes:
        print(f"note: {note}", flush=True)
    print(report.markdown, end="", flush=True)


def add_commands(sub: Any) -> None:
    """Add `study` to the analysis parser (``sub`` from add_subparsers)."""
    from analysis.cli import _HelpFormatter

    p = sub.add_parser("study", help="a study's figure grids and its table (effrep study)",
                       description="The outputs of a study directory written by `effrep study` (its study.json and\n"
                       "the files of its measurements): figure grids with one panel per variant on one colour\n"
                       "scale and one set of levels (2D scans, convexity maps, trajectories), the 1D scans and the\n"
                       "pairs' interpolations overlaid, and a table of test error beside the sharpness measures\n"
                       "(mean ± std over seeds): figures/<kind>_<metric>_seed<S>[_log].<ext>, table.csv,\n"
                       "table.json, table.md. Prints the Markdown table.", formatter_class=_HelpFormatter)
    p.add_argument("study_dir", metavar="STUDY_DIR", help="the study's output directory (holds study.json)")
    p.add_argument("--out", metavar="DIR", default=None, help="write here instead of into STUDY_DIR")
    p.add_argument("--format", type=_parse_formats, action="append", default=None, metavar="FMT[,FMT]",
                   help="figure formats, comma-separated or repeated (png,pdf) [default: png]")
    p.add_argument("--seed", type=int, default=None, help="the seed whose runs the figures show [default: the first]")
    p.add_argument("--metric", default="train_loss",
                   help="surface dataset drawn and used for the 1D width (train_loss, test_loss, ...)")
    p.add_argument("--log", action="store_true", help="logarithmic loss axis and colour scale")
    p.set_defaults(run=_cmd_study)
