"""A matplotlib 3D view of a plane scan, for PNG/PDF figures without ParaView.

With `--zmax` the values above it are clipped to it (not masked), so the walls end in a flat cap at
zmax as in the paper's 3D figures. matplotlib draws one flat quad per grid cell, so on a coarse scan
the rim of that cap would zigzag from cell to cell; the surface is therefore drawn on a finer grid,
interpolated bilinearly from the scan (the scan's own points keep their values) and clipped after the
interpolation, so the rim follows the zmax contour of the interpolated surface.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.common import new_figure
from analysis.surface import Surface, SurfaceError, height_label

# Draw at least this many points per side (up to MAX_FACTOR times the scan's own).
MIN_DRAWN_POINTS = 120
MAX_FACTOR = 8
MAX_DRAWN_POINTS = 240  # matplotlib samples larger grids down to this many rows/columns


def refine(x: np.ndarray, y: np.ndarray, z: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear interpolation of z[j, i] at (x[i], y[j]) onto a grid `factor` times finer per cell.

    A fine point is NaN when any scan point it is interpolated from (with a non-zero weight) is NaN,
    so holes stay holes and never spread by more than one scan cell.
    """
    if factor <= 1 or x.size < 2 or y.size < 2:
        return x, y, z
    if np.any(np.diff(x) <= 0) or np.any(np.diff(y) <= 0):
        raise SurfaceError("surface3d needs increasing x and y coordinates")

    def axis(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.arange((c.size - 1) * factor + 1) / factor
        k = np.minimum(t.astype(int), c.size - 2)
        frac = t - k
        return c[k] + frac * (c[k + 1] - c[k]), k, frac

    xf, i, tx = axis(x)
    yf, j, ty = axis(y)
    out = np.zeros((yf.size, xf.size))
    hole = np.zeros(out.shape, dtype=bool)
    for dj, wy in ((0, 1.0 - ty), (1, ty)):
        for di, wx in ((0, 1.0 - tx), (1, tx)):
            w = np.outer(wy, wx)
            corner = z[np.ix_(j + dj, i + di)]
            used = w > 0
            hole |= used & np.isnan(corner)
            out += np.where(used & ~np.isnan(corner), w * np.nan_to_num(corner), 0.0)
    out[hole] = np.nan
    return xf, yf, out


def drawn_grid(
    surface: Surface, metric: str = "train_loss", *, log: bool = False, zmax: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, z) that `surface3d_figure` draws: the height refined to >= MIN_DRAWN_POINTS a side, then capped."""
    y = surface.require_2d("surface3d")
    z, _ = surface.height(metric, log=log)  # unclipped: the cap comes after the refinement
    factor = min(MAX_FACTOR, max(1, -(-MIN_DRAWN_POINTS // max(min(z.shape) - 1, 1))))
    xf, yf, zf = refine(surface.x, y, z, factor)
    if zmax is not None:
        surface.height(metric, log=log, zmax=zmax)  # checks zmax (> 0 with --log)
        cap = float(np.log10(zmax)) if log else float(zmax)
        with np.errstate(invalid="ignore"):
            zf = np.where(zf > cap, cap, zf)
    return xf, yf, zf


def surface3d_figure(
    surface: Surface,
    metric: str = "train_loss",
    *,
    log: bool = False,
    zmax: float | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    elev: float = 30.0,
    azim: float = -60.0,
    cmap: str = "viridis",
) -> Figure:
    """A 3D surface of `metric` coloured by height; values above `zmax` form a flat cap, invalid points holes."""
    if log and ((vmin is not None and vmin <= 0) or (vmax is not None and vmax <= 0)):
        raise SurfaceError("--vmin/--vmax must be > 0 with --log (they are in data units)")
    xf, yf, zf = drawn_grid(surface, metric, log=log, zmax=zmax)
    lo, hi = float(np.nanmin(zf)), float(np.nanmax(zf))
    if vmin is not None:
        lo = float(np.log10(vmin)) if log else float(vmin)
    if vmax is not None:
        hi = float(np.log10(vmax)) if log else float(vmax)
    if hi <= lo:
        hi = lo + 1.0
    X, Y = np.meshgrid(xf, yf)
    fig = new_figure(7.0, 5.6)
    # add_subplot(projection="3d") registers the axes with the figure; a bare Axes3D(fig) would render blank.
    ax = fig.add_subplot(projection="3d")
    ny, nx = zf.shape
    surf = ax.plot_surface(
        X, Y, zf, cmap=cmap, vmin=lo, vmax=hi, rcount=min(ny, MAX_DRAWN_POINTS), ccount=min(nx, MAX_DRAWN_POINTS),
        linewidth=0, antialiased=False,
    )
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):  # fewer ticks: the default ones run into each other
        axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel(surface.ylabel)
    ax.set_zlabel(height_label(metric, log=log))
    ax.view_init(elev=elev, azim=azim)
    fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.1, label=height_label(metric, log=log))
    ax.set_title(f"{surface.name}: {metric}", fontsize=10)
    return fig
