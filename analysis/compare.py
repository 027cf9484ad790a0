"""Several surfaces in one figure on one shared colour scale (e.g. small vs large batch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from analysis import contour
from analysis.common import Levels, new_figure, norm_range, resolve_levels, tidy_log_axis
from analysis.surface import Surface, SurfaceError


def compare_figure(
    surfaces: Sequence[Surface],
    metric: str = "train_loss",
    *,
    labels: Sequence[str] | None = None,
    kind: str = "contourf",
    levels: Levels = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    log: bool = False,
    cmap: str = "viridis",
) -> Figure:
    """Side-by-side panels (2D) or overlaid curves (1D) of `metric`, all on one colour/value scale."""
    if len(surfaces) < 1:
        raise SurfaceError("compare needs at least one surface file")
    labels = list(labels) if labels is not None else [s.name for s in surfaces]
    if len(labels) != len(surfaces):
        raise SurfaceError(f"--labels gives {len(labels)} labels for {len(surfaces)} files")
    dims = {s.ndim for s in surfaces}
    if len(dims) != 1:
        kinds = ", ".join(f"{s.describe()} ({s.ndim}D)" for s in surfaces)
        raise SurfaceError(f"compare needs all 1D or all 2D surfaces, got {kinds}")
    # One norm and one set of levels over every file's valid points: equal colours mean equal values.
    lv, norm = resolve_levels(surfaces, metric, levels if dims == {2} else 20, vmin=vmin, vmax=vmax, log=log)
    if dims == {1}:
        return _compare_lines(surfaces, metric, labels, *norm_range(norm), log)
    ncols = min(len(surfaces), 3)
    nrows = math.ceil(len(surfaces) / ncols)
    fig = new_figure(4.2 * ncols + 1.0, 3.8 * nrows)
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(len(surfaces))]
    artists = []
    for ax, surface, label in zip(axes, surfaces, labels):
        artists.append(contour.draw(ax, surface, metric, kind=kind, norm=norm, levels=lv, log=log, cmap=cmap))
        ax.set_title(label, fontsize=10)
    # every panel shares the norm, so any panel's artist gives the colour bar
    contour.add_colorbar(fig, artists[-1], axes, norm, label=metric + (" (log scale)" if log else ""))
    return fig


def _compare_lines(
    surfaces: Sequence[Surface], metric: str, labels: Sequence[str], lo: float, hi: float, log: bool
) -> Figure:
    """1D surfaces overlaid on one axis with a shared value range."""
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    for surface, label in zip(surfaces, labels):
        ax.plot(surface.x, surface.values(metric, log=log), label=label)
    ax.set_xlabel(surfaces[0].xlabel)
    ax.set_ylabel(metric)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        tidy_log_axis(ax.yaxis, lo, hi)
    else:
        pad = 0.03 * (hi - lo)
        ax.set_ylim(lo - pad, hi + pad)
    ax.legend(fontsize=8)
    ax.set_title(f"{metric}", fontsize=10)
    return fig

