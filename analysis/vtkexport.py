"""Surfaces as VTK XML files for ParaView: a `.vts` structured grid and a `.vtp` polygon surface.

Point `i + nx*j` of both files is the grid point `(x[i], y[j])` (x varies fastest), so a C-order
ravel of any `(ny, nx)` value array lines up with the points. The height z is the chosen metric
(clipped at `zmax`, then log10 with `log`); `flat=True` writes z = 0 for the Warp By Scalar workflow.
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
from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter, vtkXMLStructuredGridWriter, vtkXMLWriter

from analysis.surface import Surface, SurfaceError

HEIGHT_ARRAY = "height"
CELL_KINDS = ("quad", "tri")


def _grid_points(surface: Surface, metric: str, *, log: bool, zmax: float | None, flat: bool) -> tuple[np.ndarray, np.ndarray]:
    """(points (ny*nx, 3), valid (ny, nx)) with x fastest; invalid points get z = NaN (0 when flat)."""
    y = surface.require_2d("vtk")
    z, valid = surface.height(metric, log=log, zmax=zmax)
    X, Y = np.meshgrid(surface.x, y)
    zc = np.zeros_like(z) if flat else z
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
    arrays["done"] = surface.done_mask.astype(np.uint8).ravel()
    arrays[HEIGHT_ARRAY] = surface.height(metric, log=log, zmax=zmax)[0].ravel()
    return arrays


def _vtk_array(name: str, values: np.ndarray) -> vtkDataArray:
    """A named VTK array holding a copy of `values`."""
    array = numpy_support.numpy_to_vtk(np.ascontiguousarray(values), deep=True)
    array.SetName(name)
    return array


def _add_metadata(data: vtkDataObject, surface: Surface, metric: str, *, log: bool, zmax: float | None, flat: bool) -> None:
    """Record what the height means in the file's field data, so the file explains itself in ParaView."""
    fields = data.GetFieldData()
    for key, text in (("metric", metric), ("source", str(surface.path or surface.name))):
        text_array = vtkStringArray()
        text_array.SetName(key)
        text_array.InsertNextValue(text)
        fields.AddArray(text_array)
    for key, flag in (("height_is_log10", log), ("flat", flat)):
        flag_array = vtkIntArray()
        flag_array.SetName(key)
        flag_array.InsertNextValue(int(flag))
        fields.AddArray(flag_array)
    zmax_array = vtkDoubleArray()
    zmax_array.SetName("zmax")
    zmax_array.InsertNextValue(np.nan if zmax is None else float(zmax))
    fields.AddArray(zmax_array)


def structured_grid(
    surface: Surface, metric: str = "train_loss", *, log: bool = False, zmax: float | None = None, flat: bool = False
) -> vtkStructuredGrid:
    """The full (nx, ny, 1) grid; masked points and the cells touching them are blanked (hidden)."""
    points, valid = _grid_points(surface, metric, log=log, zmax=zmax, flat=flat)
    ny, nx = valid.shape
    grid = vtkStructuredGrid()
    grid.SetDimensions(nx, ny, 1)
    vtk_points = vtkPoints()
    vtk_points.SetData(_vtk_array("Points", points))
    grid.SetPoints(vtk_points)
    for name, values in point_arrays(surface, metric, log=log, zmax=zmax).items():
        grid.GetPointData().AddArray(_vtk_array(name, values))
    grid.GetPointData().SetActiveScalars(HEIGHT_ARRAY)
    if not valid.all():
        # Ghost flags are VTK's blanking: ParaView skips hidden cells, so NaN heights never get drawn.
        ghost_name = vtkDataSetAttributes.GhostArrayName()
        point_ghost = np.where(valid.ravel(), 0, vtkDataSetAttributes.HIDDENPOINT).astype(np.uint8)
        grid.GetPointData().AddArray(_vtk_array(ghost_name, point_ghost))
        cell_ok = valid[:-1, :-1] & valid[:-1, 1:] & valid[1:, :-1] & valid[1:, 1:]
        if cell_ok.size:
            cell_ghost = np.where(cell_ok.ravel(), 0, vtkDataSetAttributes.HIDDENCELL).astype(np.uint8)
            grid.GetCellData().AddArray(_vtk_array(ghost_name, cell_ghost))
    _add_metadata(grid, surface, metric, log=log, zmax=zmax, flat=flat)
    return grid


def polydata(
    surface: Surface,
    metric: str = "train_loss",
    *,
    log: bool = False,
    zmax: float | None = None,
    flat: bool = False,
    cells: str = "quad",
) -> vtkPolyData:
    """The surface as polygons over valid points only: a cell is kept when all its corners are valid."""
    if cells not in CELL_KINDS:
        raise SurfaceError(f"unknown cell kind {cells!r}; choose from {', '.join(CELL_KINDS)}")
    points, valid = _grid_points(surface, metric, log=log, zmax=zmax, flat=flat)
    ny, nx = valid.shape
    keep = valid.ravel()
    new_index = np.cumsum(keep) - 1  # old point id -> id among kept points
    ids = np.arange(ny * nx).reshape(ny, nx)
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]  # counter-clockwise seen from +z
    cell_ok = (valid[:-1, :-1] & valid[:-1, 1:] & valid[1:, 1:] & valid[1:, :-1]).ravel()
    quads = np.stack([a.ravel(), b.ravel(), c.ravel(), d.ravel()], axis=1)[cell_ok]
    if cells == "tri":
        polys = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=0)
    else:
        polys = quads
    polys = new_index[polys]
    per_cell = polys.shape[1] if polys.size else (4 if cells == "quad" else 3)
    offsets = np.arange(0, (len(polys) + 1) * per_cell, per_cell, dtype=np.int64)
    cell_array = vtkCellArray()
    cell_array.SetData(
        numpy_support.numpy_to_vtkIdTypeArray(offsets, deep=True),
        numpy_support.numpy_to_vtkIdTypeArray(polys.astype(np.int64).ravel(), deep=True),
    )
    poly = vtkPolyData()
    vtk_points = vtkPoints()
    vtk_points.SetData(_vtk_array("Points", points[keep]))
    poly.SetPoints(vtk_points)
    poly.SetPolys(cell_array)
    for name, values in point_arrays(surface, metric, log=log, zmax=zmax).items():
        poly.GetPointData().AddArray(_vtk_array(name, values[keep]))
    poly.GetPointData().SetActiveScalars(HEIGHT_ARRAY)
    _add_metadata(poly, surface, metric, log=log, zmax=zmax, flat=flat)
    return poly


def write_xml(data: vtkStructuredGrid | vtkPolyData, path: str | Path) -> Path:
    """Write `data` with VTK's XML writer (appended raw binary, zlib-compressed)."""
    path = Path(path)
    writer: vtkXMLWriter = vtkXMLStructuredGridWriter() if isinstance(data, vtkStructuredGrid) else vtkXMLPolyDataWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(data)
    writer.SetDataModeToAppended()
    writer.EncodeAppendedDataOff()
    writer.SetCompressorTypeToZLib()
    if writer.Write() != 1:
        raise OSError(f"VTK could not write {path}")
    return path
