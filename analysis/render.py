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

from analysis.preview import computed_points, preview_title
from analysis.surface import Surface, SurfaceError, height_label
from analysis.trajectory import PATH_COLOUR, Trajectory, marked, marker_every
from analysis.vtkexport import HEIGHT_ARRAY, auto_zscale, polydata, trajectory_polydata

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
    trajectory: Trajectory | None = None,
) -> Path:
    """Render the surface offscreen to a PNG; colour = plotted height.

    Oblique: lit and smooth-shaded, seen from an elevated camera. Top: a flat map seen straight down,
    unlit so every pixel has exactly the colour bar's colour for its height, with x and y axes.
    With `trajectory`, the optimizer's path lies on the surface (the polyline `vtk` writes), dots mark
    every K epochs (as the `trajectory` figure), start and end are labelled with their epochs, and the
    top view's axes say the explained variance.
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
            if computed_points(surface) is not None:  # an interpolated preview: dots at the computed points
                _add_computed(plotter, mesh)
            if trajectory is not None:
                _add_path(plotter, surface, trajectory, metric, log=log, zmax=zmax, flat=view == "top", zscale=scale)
            if title:
                text = "\n".join(t for t in (f"{surface.name}: {label}", preview_title(surface)) if t)
                plotter.add_text(text, font_size=10, color="black")
            if view == "top":
                xtitle, ytitle = (surface.xlabel, surface.ylabel) if trajectory is None else trajectory.axis_labels(surface)
                plotter.show_bounds(
                    mesh=mesh, xtitle=xtitle, ytitle=ytitle, show_zaxis=False, show_zlabels=False,
                    font_size=int(np.clip(min(window_size) / 22, 10, 24)),
                    location="outer", color="black", bold=False, n_xlabels=5, n_ylabels=5, fmt="%.2g",
                    use_3d_text=False,
                )
            _place_camera(plotter, mesh, view=view, elev=elev, azim=azim)
            plotter.screenshot(str(path))
        finally:
            plotter.close()
    return path


def _add_path(
    plotter: pyvista.Plotter,
    surface: Surface,
    trajectory: Trajectory,
    metric: str,
    *,
    log: bool,
    zmax: float | None,
    flat: bool,
    zscale: float,
) -> None:
    """The path as a thick line on the surface, dots every K epochs, start and end labelled."""
    import pyvista

    path = pyvista.wrap(trajectory_polydata(surface, trajectory, metric, log=log, zmax=zmax, flat=flat, zscale=zscale))
    plotter.add_mesh(path, color=PATH_COLOUR, line_width=4, show_scalar_bar=False, lighting=False)
    dots = marked(trajectory.epoch, marker_every(trajectory.epoch))
    if dots.any():
        plotter.add_points(
            np.asarray(path.points)[dots], color=PATH_COLOUR, point_size=11, render_points_as_spheres=True,
            lighting=False, show_scalar_bar=False,
        )
    ends = [0] if trajectory.size == 1 else [0, trajectory.size - 1]
    words = ("start", "end")
    plotter.add_point_labels(
        np.asarray(path.points)[ends], [f"epoch {trajectory.epoch[k]} ({w})" for k, w in zip(ends, words)],
        font_size=14, text_color="black", point_color="black", point_size=12, shape_color="white", shape_opacity=0.7,
        always_visible=True, render_points_as_spheres=True,
    )


def _add_computed(plotter: pyvista.Plotter, mesh: pyvista.PolyData) -> None:
    """Small black dots, a hair above the surface, at the points that were computed (its `done` array)."""
    computed = np.asarray(mesh.point_data["done"]) == 1
    if not computed.any():
        return
    points = np.array(mesh.points)[computed]
    points[:, 2] += 2e-3 * max(float(np.ptp(mesh.points[:, 2])), mesh.length, 1e-12)
    plotter.add_points(points, color="black", point_size=3, render_points_as_spheres=True, show_scalar_bar=False)


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
