"""Offscreen pyvista renders of a plane scan, lit and coloured like ParaView loss-landscape figures.

pyvista is imported inside `render_surface` only, so `import analysis` stays light and works where
pyvista is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from analysis.surface import Surface, SurfaceError, height_label
from analysis.vtkexport import HEIGHT_ARRAY, polydata

if TYPE_CHECKING:
    import pyvista

VIEWS = ("oblique", "top")


@contextmanager
def _quiet_vtk() -> Iterator[None]:
    """Silence VTK's warning about a missing X display while it falls back to EGL offscreen."""
    from vtkmodules.vtkCommonCore import vtkLogger

    before = vtkLogger.GetCurrentVerbosityCutoff()
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    try:
        yield
    finally:
        vtkLogger.SetStderrVerbosity(before)


def auto_zscale(surface: Surface, metric: str, *, log: bool = False, zmax: float | None = None) -> float:
    """Height scale so the z extent is half the larger xy extent (ParaView's Warp By Scalar scale factor)."""
    z, _ = surface.height(metric, log=log, zmax=zmax)
    z_extent = float(np.nanmax(z) - np.nanmin(z))
    xy_extent = max(float(np.ptp(surface.x)), float(np.ptp(surface.require_2d("render"))), 1e-12)
    return 0.5 * xy_extent / z_extent if z_extent > 0 else 1.0


def render_surface(
    surface: Surface,
    path: str | Path,
    metric: str = "train_loss",
    *,
    log: bool = False,
    zmax: float | None = None,
    zscale: float | None = None,
    cmap: str = "viridis",
    contours: int = 0,
    view: str = "oblique",
    elev: float = 35.0,
    azim: float = -60.0,
    window_size: tuple[int, int] = (1200, 900),
    scalar_bar: bool = True,
    title: bool = True,
) -> Path:
    """Render the surface offscreen to a PNG; colour = plotted height, smooth-shaded, elevated oblique camera."""
    if view not in VIEWS:
        raise SurfaceError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    if contours < 0:
        raise SurfaceError(f"--contours {contours}: give a number of contour lines >= 0")
    surface.require_2d("render")
    import pyvista

    pyvista.OFF_SCREEN = True
    mesh = pyvista.wrap(polydata(surface, metric, log=log, zmax=zmax, cells="tri"))
    if mesh.n_cells == 0:
        raise SurfaceError(f"{surface.describe()}: no grid cell of {metric!r} has four valid corners to draw")
    scale = auto_zscale(surface, metric, log=log, zmax=zmax) if zscale is None else float(zscale)
    mesh.points[:, 2] *= scale
    mesh.set_active_scalars(HEIGHT_ARRAY)
    label = height_label(metric, log=log)
    path = Path(path)
    with _quiet_vtk():
        plotter = pyvista.Plotter(off_screen=True, window_size=list(window_size), lighting="three lights")
        try:
            plotter.set_background("white")
            bar_args = {"title": label, "color": "black", "vertical": True, "position_x": 0.86, "position_y": 0.15}
            plotter.add_mesh(
                mesh,
                scalars=HEIGHT_ARRAY,
                cmap=cmap,
                smooth_shading=True,
                ambient=0.1,
                specular=0.25,
                specular_power=20.0,
                show_scalar_bar=scalar_bar,
                scalar_bar_args=bar_args,
            )
            if contours:
                lines = mesh.contour(isosurfaces=contours + 2, scalars=HEIGHT_ARRAY)
                if lines.n_points:
                    lines = lines.copy()
                    # Lift the lines a hair above the surface so the depth test does not hide them.
                    lines.points[:, 2] += 2e-3 * max(float(np.ptp(mesh.points[:, 2])), 1e-12)
                    plotter.add_mesh(lines, color="black", line_width=1.5, show_scalar_bar=False)
            if title:
                plotter.add_text(f"{surface.name}: {label}", font_size=10, color="black")
            _place_camera(plotter, mesh, view=view, elev=elev, azim=azim)
            plotter.screenshot(str(path))
        finally:
            plotter.close()
    return path


def _place_camera(plotter: pyvista.Plotter, mesh: pyvista.PolyData, *, view: str, elev: float, azim: float) -> None:
    """Top: looking down -z with +y up and +x right (parallel). Oblique: matplotlib-style elev/azim."""
    center = np.array(mesh.center)
    if view == "top":
        plotter.camera.focal_point = center
        plotter.camera.position = center + np.array([0.0, 0.0, 10.0 * max(mesh.length, 1e-9)])
        plotter.camera.up = (0.0, 1.0, 0.0)
        plotter.enable_parallel_projection()
    else:
        e, a = np.radians(elev), np.radians(azim)
        direction = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
        plotter.camera.focal_point = center
        plotter.camera.position = center + 3.0 * max(mesh.length, 1e-9) * direction
        plotter.camera.up = (0.0, 0.0, 1.0)
    plotter.reset_camera()
