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
from analysis.vtkexport import HEIGHT_ARRAY, auto_zscale, polydata

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
    """Render the surface offscreen to a PNG; colour = plotted height.

    Oblique: lit and smooth-shaded, seen from an elevated camera. Top: a flat map seen straight down,
    unlit so every pixel has exactly the colour bar's colour for its height, with x and y axes.
    """
    if view not in VIEWS:
        raise SurfaceError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    if contours < 0:
        raise SurfaceError(f"--contours {contours}: give a number of contour lines >= 0")
    surface.require_2d("render")
    import pyvista

    pyvista.OFF_SCREEN = True
    scale = auto_zscale(surface, metric, log=log, zmax=zmax) if zscale is None else float(zscale)
    # Seen from straight above, height only gets in the way of the axes: draw the map flat at z = 0.
    mesh = pyvista.wrap(polydata(surface, metric, log=log, zmax=zmax, cells="tri", flat=view == "top", zscale=scale))
    if mesh.n_cells == 0:
        raise SurfaceError(f"{surface.describe()}: no grid cell of {metric!r} has four valid corners to draw")
    mesh.set_active_scalars(HEIGHT_ARRAY)
    label = height_label(metric, log=log)
    path = Path(path)
    with _quiet_vtk():
        plotter = pyvista.Plotter(off_screen=True, window_size=list(window_size), lighting="three lights")
        try:
            plotter.set_background("white")
            bar_args = {"title": label, "color": "black", "vertical": True, "position_x": 0.86, "position_y": 0.15}
            if view == "top":
                # Unlit: a light (above all its specular highlight) would shift colours off the bar's.
                shading: dict[str, object] = {"lighting": False}
            else:
                shading = {"smooth_shading": True, "ambient": 0.1, "specular": 0.25, "specular_power": 20.0}
            plotter.add_mesh(
                mesh, scalars=HEIGHT_ARRAY, cmap=cmap, show_scalar_bar=scalar_bar, scalar_bar_args=bar_args, **shading
            )
            if contours:
                # Evenly spaced inside the range, ends excluded: a line at the maximum would trace the
                # zigzag rim of a --zmax cap. The array itself, not its name, is passed because the name
                # may also be a field-data entry, which would shadow it.
                height = mesh.point_data[HEIGHT_ARRAY]
                values = np.linspace(float(np.min(height)), float(np.max(height)), contours + 2)[1:-1]
                lines = mesh.contour(isosurfaces=list(values), scalars=height)
                if lines.n_points:
                    lines = lines.copy()
                    # Lift the lines a hair above the surface so the depth test does not hide them.
                    lines.points[:, 2] += 2e-3 * max(float(np.ptp(mesh.points[:, 2])), mesh.length, 1e-12)
                    plotter.add_mesh(lines, color="black", line_width=1.5, show_scalar_bar=False)
            if title:
                plotter.add_text(f"{surface.name}: {label}", font_size=10, color="black")
            if view == "top":
                plotter.show_bounds(
                    mesh=mesh, xtitle=surface.xlabel, ytitle=surface.ylabel, show_zaxis=False, show_zlabels=False,
                    font_size=int(np.clip(min(window_size) / 22, 10, 24)),
                    location="outer", color="black", bold=False, n_xlabels=5, n_ylabels=5, fmt="%.2g",
                    use_3d_text=False,
                )
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
        plotter.reset_camera()
        plotter.camera.zoom(0.8)  # room for the axis labels around the map
        return
    else:
        e, a = np.radians(elev), np.radians(azim)
        direction = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
        plotter.camera.focal_point = center
        plotter.camera.position = center + 3.0 * max(mesh.length, 1e-9) * direction
        plotter.camera.up = (0.0, 0.0, 1.0)
    plotter.reset_camera()
