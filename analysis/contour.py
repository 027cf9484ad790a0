"""2D views of a plane scan: labelled contour lines, filled contours and a heatmap.

Levels default to the loss-landscape paper's (0.1 to 10 in steps of 0.5 on the loss, coloured over
0.1..10) when they fit the data, so the low-loss basin gets a dozen lines instead of the one line an
even spread from 0 to the scan's maximum leaves it; see `analysis.common.resolve_levels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.colors import Normalize
from matplotlib.contour import QuadContourSet
from matplotlib.figure import Figure

from analysis.common import (
    Levels,
    extend_for,
    make_levels,
    masked_note,
    new_figure,
    norm_range,
    resolve_levels,
    set_plane_aspect,
    tidy_colorbar,
    with_bad,
)
from analysis.preview import mark_computed, preview_title
from analysis.surface import Surface

KINDS = ("contour", "contourf", "heatmap")


def contour_data(surface: Surface, metric: str, *, log: bool = False) -> tuple[np.ndarray, np.ndarray, np.ma.MaskedArray]:
    """(X, Y, Z) meshes with Z[j, i] at (x[i], y[j]) and invalid points masked: what the plots draw."""
    X, Y = np.meshgrid(surface.x, surface.require_2d("contour"))
    return X, Y, surface.masked(metric, log=log)


def draw(
    ax: Axes,
    surface: Surface,
    metric: str,
    *,
    kind: str,
    norm: Normalize,
    levels: int | Sequence[float] | np.ndarray = 20,
    log: bool = False,
    cmap: str = "viridis",
) -> QuadMesh | QuadContourSet:
    """Draw one view of `metric` on `ax` with the given colour scale and levels; returns the mappable.

    A count of levels is spread over the norm's range; `resolve_levels` gives levels and norm together.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    X, Y, Z = contour_data(surface, metric, log=log)
    y = surface.require_2d("contour")
    ax.set_facecolor("0.85")  # masked points show as grey, not as the lowest colour
    artist: QuadMesh | QuadContourSet
    if kind == "heatmap":
        # shading="nearest" centres each cell on its grid point, also for uneven spacing.
        artist = ax.pcolormesh(surface.x, y, Z, shading="nearest", norm=norm, cmap=with_bad(cmap))
    else:
        lv = make_levels(norm, levels, log=log)
        if kind == "contourf":
            if lv.size < 2:
                raise ValueError("filled contours need at least two levels")
            # Values beyond the levels (the walls above the paper's 10) take the end colours.
            artist = ax.contourf(X, Y, Z, levels=lv, norm=norm, cmap=cmap, extend=extend_for(Z.filled(np.nan), lv))
        else:
            ax.set_facecolor("white")
            lines = ax.contour(X, Y, Z, levels=lv, norm=norm, cmap=cmap, linewidths=1.0)
            if list(lines.levels):  # matplotlib drops levels outside the data range
                ax.clabel(lines, inline=True, fontsize=7, fmt="%.3g")
            artist = lines
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel(surface.ylabel)
    ax.set_xlim(surface.x.min(), surface.x.max())
    ax.set_ylim(y.min(), y.max())
    set_plane_aspect(ax, surface.x, y)
    return artist


def contour_figure(
    surface: Surface,
    metric: str = "train_loss",
    *,
    kind: str = "contour",
    levels: Levels = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    log: bool = False,
    cmap: str = "viridis",
) -> Figure:
    """A figure with one view (`kind` in KINDS) of a 2D surface; levels and colours as `resolve_levels` picks."""
    surface.require_2d("contour")
    lv, norm = resolve_levels([surface], metric, levels, vmin=vmin, vmax=vmax, log=log)
    fig = new_figure()
    ax = fig.add_subplot()
    artist = draw(ax, surface, metric, kind=kind, norm=norm, levels=lv, log=log, cmap=cmap)
    add_colorbar(fig, artist, ax, norm, label=metric + (" (log scale)" if log else ""))
    note = masked_note(surface, metric, log=log)
    mark_computed(ax, surface)
    lines = [f"{surface.name}: {metric}", preview_title(surface), f"({note})" if note else ""]
    ax.set_title("\n".join(line for line in lines if line), fontsize=10)
    return fig


def add_colorbar(
    fig: Figure, artist: QuadMesh | QuadContourSet, ax: Axes | Sequence[Axes], norm: Normalize, *, label: str
) -> None:
    """A colour bar with round, plainly labelled ticks (several on a log scale), arrows where values overflow."""
    if isinstance(artist, QuadMesh):  # a contour set knows its own extend; a heatmap clips silently
        values: np.ndarray = np.ma.asarray(artist.get_array()).filled(np.nan)
        extend = extend_for(values, np.array(norm_range(norm)))
        cbar = fig.colorbar(artist, ax=ax, label=label, shrink=0.85, extend=extend)
    else:
        cbar = fig.colorbar(artist, ax=ax, label=label, shrink=0.85)
    tidy_colorbar(cbar, norm)
