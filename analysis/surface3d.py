"""A matplotlib 3D view of a plane scan, for PNG/PDF figures without ParaView."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from analysis.common import new_figure
from analysis.surface import Surface, SurfaceError, height_label


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
    """A 3D surface of `metric` (NaN/inf/pending points leave holes), coloured by height."""
    y = surface.require_2d("surface3d")
    z, _ = surface.height(metric, log=log, zmax=zmax)
    lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    if log and ((vmin is not None and vmin <= 0) or (vmax is not None and vmax <= 0)):
        raise SurfaceError("--vmin/--vmax must be > 0 with --log (they are in data units)")
    if vmin is not None:
        lo = float(np.log10(vmin)) if log else float(vmin)
    if vmax is not None:
        hi = float(np.log10(vmax)) if log else float(vmax)
    if hi <= lo:
        hi = lo + 1.0
    X, Y = np.meshgrid(surface.x, y)
    fig = new_figure(7.0, 5.6)
    # add_subplot(projection="3d") registers the axes with the figure; a bare Axes3D(fig) would render blank.
    ax = fig.add_subplot(projection="3d")
    ny, nx = z.shape
    surf = ax.plot_surface(
        X, Y, z, cmap=cmap, vmin=lo, vmax=hi, rcount=min(ny, 200), ccount=min(nx, 200), linewidth=0, antialiased=False
    )
    ax.set_xlabel(surface.xlabel)
    ax.set_ylabel(surface.ylabel)
    ax.set_zlabel(height_label(metric, log=log))
    ax.view_init(elev=elev, azim=azim)
    fig.colorbar(surf, ax=ax, shrink=0.6, label=height_label(metric, log=log))
    ax.set_title(f"{surface.name}: {metric}", fontsize=10)
    return fig
