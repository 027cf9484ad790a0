"""Surfaces as VTK XML files for ParaView: a `.vts` structured grid and a `.vtp` polygon surface.

Point `i + nx*j` of both files is the grid point `(x[i], y[j])` (x varies fastest), so a C-order
ravel of any `(ny, nx)` value array lines up with the points.

The point array `height` is the chosen metric (clipped at `zmax`, then log10 with `log`), in data
units, for colouring. The z coordinate is `zscale * height`: a loss spans tens of units while the
directions span about 2, so unscaled the surface opens in ParaView as a needle; `auto_zscale` makes
the z extent half the larger x-y extent, so it opens as a bowl. The scale and what z means are in
the file's field data, so the file explains itself.

Point normals (`Normals`) come from the scaled surface (VTK's polygon normals averaged at each
point), so ParaView shades it smoothly on open. `flat=True` writes z = 0 and no normals (a flat
plane's normals would make a warped surface shade flat); it is the input for Warp By Scalar, and
there every grid point is drawn so that colouring by `done` shows which points are computed.

A surface file with a `trajectory/` group (`effrep trajectory`) also gives the optimizer's path as one
polyline (`trajectory_polydata`): snapshot k at its (x, y) and at the surface's own z there (the same
height and zscale, interpolated bilinearly), raised by `PATH_LIFT` of the x-y extent so that it lies
visibly on top of the surface; point arrays `epoch`, `residual`, `distance`, `height`, `on_surface`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkDataArray, vtkDoubleArray, vtkIntArray, vtkPoints, vtkStringArray
from vtkmodules.vtkCommonDataModel import (
    vtkCellArray,
    vtkDataObject,
    vtkDataSetAttributes,
    vtkPolyData,
    vtkStructuredGrid,
)
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals
from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter, vtkXMLStructuredGridWriter, vtkXMLWriter

from analysis.preview import computed_points, preview_title
from analysis.surface import Surface, SurfaceError
from analysis.trajectory import Trajectory, interpolate_height

HEIGHT_ARRAY = "height"
NORMALS_ARRAY = "Normals"
CELL_KINDS = ("quad", "tri")
AUTO_Z_FRACTION = 0.5  # default z extent as a fraction of the larger x-y extent
PATH_LIFT = 0.01  # the trajectory polyline floats this fraction of the larger x-y extent above the surface


def auto_zscale(surface: Surface, metric: str, *, log: bool = False, zmax: float | None = None) -> float:
    """Height scale so the z extent is half the larger x-y extent (1.0 when the height is constant)."""
    y = surface.require_2d("vtk")
    z, valid = surface.height(metric, log=log, zmax=zmax)
    z_extent = float(np.ptp(z[valid]))
    xy_extent = max(float(np.ptp(surface.x)), float(np.ptp(y)))
    if z_extent <= 0 or xy_extent <= 0:
        return 1.0
    return AUTO_Z_FRACTION * xy_extent / z_extent


def check_zscale(zscale: float) -> float:
    """`zscale` as a float, or a SurfaceError when it is not a finite number > 0."""
    value = float(zscale)
    if not np.isfinite(value) or value <= 0:
        raise SurfaceError(f"--zscale {zscale:g}: give a finite scale factor > 0")
    return value


def height_expression(metric: str, *, log: bool = False, zmax: float | None = None) -> str:
    """What `height` is, as a formula: e.g. "log10(min(train_loss, 10))"."""
    inner = metric if zmax is None else f"min({metric}, {zmax:g})"
    return f"log10({inner})" if log else inner


def _grid_points(
    surface: Surface, metric: str, *, log: bool, zmax: float | None, flat: bool, zscale: float
) -> tuple[np.ndarray, np.ndarray]:
    """(points (ny*nx, 3), valid (ny, nx)) with x fastest; invalid points get z = NaN (0 when flat)."""
    y = surface.require_2d("vtk")
    z, valid = surface.height(metric, log=log, zmax=zmax)
    X, Y = np.meshgrid(surface.x, y)
    zc = np.zeros_like(z) if flat else zscale * z
    return np.column_stack([X.ravel(), Y.ravel(), zc.ravel()]), valid


def point_arrays(surface: Surface, metric: str, *, log: bool = False, zmax: float | None = None) -> dict[str, np.ndarray]:
    """Per-point arrays (C-order ravel): every metric and log10 of every loss (NaN where masked), done, height."""
    arrays: dict[str, np.ndarray] = {}
    for name in sorted(surface.metrics):
        arrays[name] = surface.values(name).ravel()
        if "loss" in name:
            positive = surface.values(name, log=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                arrays[f"log10_{name}"] = np.log10(positive).ravel()
    # An interpolated preview draws every point; `done` still says which ones were computed.
    computed = computed_points(surface)
    arrays["done"] = (surface.done_mask if computed is None else computed).astype(np.uint8).ravel()
    arrays[HEIGHT_ARRAY] = surface.height(metric, log=log, zmax=zmax)[0].ravel()
    return arrays


def _vtk_array(name: str, values: np.ndarray) -> vtkDataArray:
    """A named VTK array holding a copy of `values`."""
    array = numpy_support.numpy_to_vtk(np.ascontiguousarray(values), deep=True)
    array.SetName(name)
    return array


def _cells(valid: np.ndarray, cells: str) -> np.ndarray:
    """Cells over the valid points, as rows of grid point ids; a cell needs all four corners valid."""
    ny, nx = valid.shape
    ids = np.arange(ny * nx).reshape(ny, nx)
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]  # counter-clockwise seen from +z
    cell_ok = (valid[:-1, :-1] & valid[:-1, 1:] & valid[1:, 1:] & valid[1:, :-1]).ravel()
    quads = np.stack([a.ravel(), b.ravel(), c.ravel(), d.ravel()], axis=1)[cell_ok]
    if cells == "tri":
        return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=0)
    return quads


def _poly(points: np.ndarray, polys: np.ndarray, per_cell: int) -> vtkPolyData:
    """A vtkPolyData of `points` and the polygons `polys` (rows of point ids, `per_cell` each)."""
    offsets = np.arange(0, (len(polys) + 1) * per_cell, per_cell, dtype=np.int64)
    cell_array = vtkCellArray()
    cell_array.SetData(
        numpy_support.numpy_to_vtkIdTypeArray(offsets, deep=True),
        numpy_support.numpy_to_vtkIdTypeArray(polys.astype(np.int64).ravel(), deep=True),
    )
    poly = vtkPolyData()
    vtk_points = vtkPoints()
    vtk_points.SetData(_vtk_array("Points", points))
    poly.SetPoints(vtk_points)
    poly.SetPolys(cell_array)
    return poly


def _kept_ids(keep: np.ndarray) -> np.ndarray:
    """Map from grid point id to the id among the kept points (meaningless where not kept)."""
    return np.cumsum(keep) - 1


def _point_normals(poly: vtkPolyData) -> np.ndarray:
    """Unit normals (n, 3) at the points of `poly`: its polygon normals averaged, +z side up.

    No splitting (point ids must stay those of the grid) and no reordering of cells (their
    counter-clockwise order already faces +z). A point on no cell gets (0, 0, 1).
    """
    normals = vtkPolyDataNormals()
    normals.SetInputData(poly)
    normals.SplittingOff()
    normals.ConsistencyOff()
    normals.AutoOrientNormalsOff()
    normals.ComputePointNormalsOn()
    normals.ComputeCellNormalsOff()
    normals.Update()
    out = normals.GetOutput()
    if out.GetNumberOfPoints() != poly.GetNumberOfPoints() or out.GetPointData().GetNormals() is None:
        return np.tile([0.0, 0.0, 1.0], (poly.GetNumberOfPoints(), 1))
    n = numpy_support.vtk_to_numpy(out.GetPointData().GetNormals()).astype(np.float64)
    length = np.linalg.norm(n, axis=1)
    lonely = ~(length > 1e-12)
    n[lonely] = (0.0, 0.0, 1.0)
    n[~lonely] /= length[~lonely, None]
    return n


def _add_metadata(
    data: vtkDataObject, surface: Surface, metric: str, *, log: bool, zmax: float | None, flat: bool, zscale: float
) -> None:
    """Record what the height and z mean in the file's field data, so the file explains itself in ParaView."""
    expression = height_expression(metric, log=log, zmax=zmax)
    if flat:
        z_text = "0 (flat: Warp By Scalar with Scalars = height and Scale Factor = zscale)"
    else:
        z_text = f"{zscale:.6g} * {expression}"
    fields = data.GetFieldData()
    texts = (("metric", metric), ("height", expression), ("z", z_text), ("source", str(surface.path or surface.name)))
    preview = preview_title(surface)  # a partial file: what fraction is computed, at which resolution
    for key, text in texts + ((("preview", preview),) if preview else ()):
        text_array = vtkStringArray()
        text_array.SetName(key)
        text_array.InsertNextValue(text)
        fields.AddArray(text_array)
    for key, flag in (("height_is_log10", log), ("flat", flat)):
        flag_array = vtkIntArray()
        flag_array.SetName(key)
        flag_array.InsertNextValue(int(flag))
        fields.AddArray(flag_array)
    for key, value in (("zmax", np.nan if zmax is None else float(zmax)), ("zscale", zscale)):
        number = vtkDoubleArray()
        number.SetName(key)
        number.InsertNextValue(value)
        fields.AddArray(number)


def structured_grid(
    surface: Surface,
    metric: str = "train_loss",
    *,
    log: bool = False,
    zmax: float | None = None,
    flat: bool = False,
    zscale: float = 1.0,
) -> vtkStructuredGrid:
    """The full (nx, ny, 1) grid with z = zscale * height; masked points and their cells are blanked (not when flat)."""
    zscale = check_zscale(zscale)
    points, valid = _grid_points(surface, metric, log=log, zmax=zmax, flat=flat, zscale=zscale)
    ny, nx = valid.shape
    grid = vtkStructuredGrid()
    grid.SetDimensions(nx, ny, 1)
    vtk_points = vtkPoints()
    vtk_points.SetData(_vtk_array("Points", points))
    grid.SetPoints(vtk_points)
    for name, values in point_arrays(surface, metric, log=log, zmax=zmax).items():
        grid.GetPointData().AddArray(_vtk_array(name, values))
    grid.GetPointData().SetActiveScalars(HEIGHT_ARRAY)
    if not flat:
        keep = valid.ravel()
        normals = np.tile([0.0, 0.0, 1.0], (nx * ny, 1))
        normals[keep] = _point_normals(_poly(points[keep], _kept_ids(keep)[_cells(valid, "quad")], 4))
        grid.GetPointData().SetNormals(_vtk_array(NORMALS_ARRAY, normals))
    if not flat and not valid.all():
        # Ghost flags are VTK's blanking: ParaView skips hidden cells, so NaN heights never get drawn.
        # The flat grid has z = 0 everywhere, so it can show every point (pending ones with NaN values).
        ghost_name = vtkDataSetAttributes.GhostArrayName()
        point_ghost = np.where(valid.ravel(), 0, vtkDataSetAttributes.HIDDENPOINT).astype(np.uint8)
        grid.GetPointData().AddArray(_vtk_array(ghost_name, point_ghost))
        cell_ok = valid[:-1, :-1] & valid[:-1, 1:] & valid[1:, :-1] & valid[1:, 1:]
        if cell_ok.size:
            cell_ghost = np.where(cell_ok.ravel(), 0, vtkDataSetAttributes.HIDDENCELL).astype(np.uint8)
            grid.GetCellData().AddArray(_vtk_array(ghost_name, cell_ghost))
    _add_metadata(grid, surface, metric, log=log, zmax=zmax, flat=flat, zscale=zscale)
    return grid


def polydata(
    surface: Surface,
    metric: str = "train_loss",
    *,
    log: bool = False,
    zmax: float | None = None,
    flat: bool = False,
    cells: str = "quad",
    zscale: float = 1.0,
) -> vtkPolyData:
    """The surface as polygons over valid points only (z = zscale * height): a cell is kept when all its corners are valid."""
    if cells not in CELL_KINDS:
        raise SurfaceError(f"unknown cell kind {cells!r}; choose from {', '.join(CELL_KINDS)}")
    zscale = check_zscale(zscale)
    points, valid = _grid_points(surface, metric, log=log, zmax=zmax, flat=flat, zscale=zscale)
    keep = valid.ravel()
    polys = _kept_ids(keep)[_cells(valid, cells)]
    poly = _poly(points[keep], polys, 3 if cells == "tri" else 4)
    for name, values in point_arrays(surface, metric, log=log, zmax=zmax).items():
        poly.GetPointData().AddArray(_vtk_array(name, values[keep]))
    poly.GetPointData().SetActiveScalars(HEIGHT_ARRAY)
    if not flat:
        poly.GetPointData().SetNormals(_vtk_array(NORMALS_ARRAY, _point_normals(poly)))
    _add_metadata(poly, surface, metric, log=log, zmax=zmax, flat=flat, zscale=zscale)
    return poly


def trajectory_polydata(
    surface: Surface,
    trajectory: Trajectory,
    metric: str = "train_loss",
    *,
    log: bool = False,
    zmax: float | None = None,
    flat: bool = False,
    zscale: float = 1.0,
) -> vtkPolyData:
    """The projected optimizer path as one polyline lying on the surface of `polydata`/`structured_grid`.

    Point k is snapshot k at (x, y, zscale * h + lift): h the same height as the surface's (clipped at
    `zmax`, log10 with `log`) interpolated bilinearly at (x, y), `lift` = `PATH_LIFT` times the larger
    x-y extent, so the line is drawn above the surface instead of in it. `flat`: z = lift.
    """
    zscale = check_zscale(zscale)
    y = surface.require_2d("vtk")
    z, _ = surface.height(metric, log=log, zmax=zmax)
    height, exact = interpolate_height(surface.x, y, z, trajectory.x, trajectory.y)
    lift = PATH_LIFT * max(float(np.ptp(surface.x)), float(np.ptp(y)), 1e-12)
    zc = np.zeros_like(height) if flat else zscale * height
    points = np.column_stack([trajectory.x, trajectory.y, zc + lift])
    n = trajectory.size
    lines = vtkCellArray()
    lines.SetData(
        numpy_support.numpy_to_vtkIdTypeArray(np.array([0, n], dtype=np.int64), deep=True),
        numpy_support.numpy_to_vtkIdTypeArray(np.arange(n, dtype=np.int64), deep=True),
    )
    poly = vtkPolyData()
    vtk_points = vtkPoints()
    vtk_points.SetData(_vtk_array("Points", points))
    poly.SetPoints(vtk_points)
    poly.SetLines(lines)
    arrays = {
        "epoch": trajectory.epoch.astype(np.int64), "residual": trajectory.residual, "distance": trajectory.distance,
        HEIGHT_ARRAY: height, "on_surface": exact.astype(np.uint8),
    }
    for name, values in arrays.items():
        poly.GetPointData().AddArray(_vtk_array(name, values))
    poly.GetPointData().SetActiveScalars("epoch")
    _add_metadata(poly, surface, metric, log=log, zmax=zmax, flat=flat, zscale=zscale)
    fields = poly.GetFieldData()
    fields.AddArray(_vtk_array("lift", np.array([lift])))
    if trajectory.explained_variance_ratio.size:
        fields.AddArray(_vtk_array("explained_variance_ratio", trajectory.explained_variance_ratio))
    return poly


def describe_scale(metric: str, *, log: bool, zmax: float | None, flat: bool, zscale: float, auto: bool) -> str:
    """One line for the CLI: "zscale: S (z = S * height formula; how S was chosen)"."""
    expression = height_expression(metric, log=log, zmax=zmax)
    how = "auto: z extent = half the larger x-y extent" if auto else "from --zscale"
    if flat:
        warp = f"Warp By Scalar with Scalars = height = {expression}, Scale Factor = {zscale:.4g}"
        return f"zscale: {zscale:.4g} (flat files, z = 0: {warp}; {how})"
    return f"zscale: {zscale:.4g} (z = {zscale:.4g} * {expression}; {how})"


def write_xml(data: vtkStructuredGrid | vtkPolyData, path: str | Path) -> Path:
    """Write `data` with VTK's XML writer (appended raw binary, zlib-compressed)."""
    path = Path(path)
    writer: vtkXMLWriter = vtkXMLStructuredGridWriter() if isinstance(data, vtkStructuredGrid) else vtkXMLPolyDataWriter()
    writer.SetFileName(str(path))
    writer.SetDataModeToAppended()
    writer.EncodeAppendedDataOff()
    writer.SetCompressorTypeToZLib()
    writer.SetInputData(data)
    if writer.Write() != 1:
        raise OSError(f"VTK could not write {path}")
    return path
