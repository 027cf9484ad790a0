"""2D views of a plane scan: labelled contour lines, filled contours and a heatmap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from analysis.common import (
    color_norm,
    extend_for,
    make_levels,
    masked_note,
    new_figure,
    set_plane_aspect,
    with_bad,
)
from analysis.surface import Surface

KINDS = ("contour", "contourf", "heatmap")


def contour_data(surface: Surface, metric: str, *, log: bool = False) -> tuple[np.ndarray, np.ndarray, np.ma.MaskedArray]:
    """(X, Y, Z) meshes with Z[j, i] at (x[i], y[j]) and invalid points masked: what the plots draw."""
    surface.require_2d("contour")
    X, Y = np.meshgrid(surface.x, surface.y)
    return X, Y, surface.masked(metric, log=log)


def draw(
    ax: Axes,
    surface: Surface,
    metric: str,
    *,
    kind: str,
    norm: Normalize,
    levels: int | Sequence[float] = 20,
    log: bool = False,
    cmap: str = "viridis",
):
    """Draw one view of `metric` on `ax` with the given colour scale; returns the mappable."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    X, Y, Z = contour_data(surface, metric, log=log)
    ax.set_facecolor("0.85")  # masked points show as grey, not as the lowest colour
    if kind == "heatmap":
        # shading="nearest" centres each cell on its grid point, also for uneven spacing.
        artist = ax.pcolormesh(surface.x, surface.y, Z, shading="nearest", norm=norm, cmap=with_bad(cmap))
    else:
        lv = make_levels(norm, levels, log=log)
        if kind == "contourf":
            if lv.size < 2:
                raise ValueError("filled contours need at least two levels")
            artist = ax.contourf(X, Y, Z, levels=lv, norm=norm, cmap=cmap, extend=extend_for(Z.filled(np.nan), lv))
        else:
            ax.set_facecolor("white")
            artist = ax.contour(X, Y, Z, levels=lv, norm=norm, cmap=cmap, linewidths=1.0)
            if len(artist.levels):
                ax.clabel(artist, inline=True, fontsize=7, fmt="%.3g")
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel(surface.ylabel)
    ax.set_xlim(surface.x.min(), surface.x.max())
    ax.set_ylim(surface.y.min(), surface.y.max())
    set_plane_aspect(ax, surface.x, surface.y)
    return artist


def contour_figure(
    surface: Surface,
    metric: str = "train_loss",
    *,
    kind: str = "contour",
    levels: int | Sequence[float] = 20,
    vmin: float | None = None,
    vmax: float | None = None,
    log: bool = False,
    cmap: str = "viridis",
) -> Figure:
    """A figure with one view (`kind` in KINDS) of a 2D surface, coloured over valid points only."""
    surface.require_2d("contour")
    norm = color_norm([surface], metric, vmin=vmin, vmax=vmax, log=log)
    fig = new_figure()
    ax = fig.add_subplot()
    artist = draw(ax, surface, metric, kind=kind, norm=norm, levels=levels, log=log, cmap=cmap)
    fig.colorbar(artist, ax=ax, label=metric + (" (log scale)" if log else ""), shrink=0.85)
    note = masked_note(surface, metric, log=log)
    ax.set_title(f"{surface.name}: {metric}" + (f"\n({note})" if note else ""), fontsize=10)
    return fig
