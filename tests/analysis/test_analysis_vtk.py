"""VTK export: files written by the CLI read back through vtk's XML readers with the HDF5 values."""

from __future__ import annotations

import numpy as np
import pytest
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkDataSetAttributes
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader, vtkXMLStructuredGridReader

from analysis.cli import main
from analysis.surface import load_surface


def _wrote(capsys) -> list[str]:
    return [line.removeprefix("wrote: ") for line in capsys.readouterr().out.splitlines() if line.startswith("wrote: ")]


def _read(path):
    reader = vtkXMLStructuredGridReader() if str(path).endswith(".vts") else vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    return reader.GetOutput()


def _point_array(data, name):
    array = data.GetPointData().GetArray(name)
    assert array is not None, f"no point array {name!r}"
    return vtk_to_numpy(array)


def test_vts_points_and_arrays_equal_the_hdf5_data(holey_file, tmp_path, capsys):
    assert main(["vtk", str(holey_file), "--out", str(tmp_path / "out")]) == 0
    written = _wrote(capsys)
    assert written == [str(tmp_path / "out" / "holey_train_loss.vts"), str(tmp_path / "out" / "holey_train_loss.vtp")]
    assert "<AppendedData encoding=\"raw\">" in open(written[0], "rb").read().decode("latin-1")

    s = load_surface(holey_file)
    grid = _read(written[0])
    assert grid.GetExtent() == (0, 50, 0, 40, 0, 0)  # nx along the first (fastest) index
    points = vtk_to_numpy(grid.GetPoints().GetData())
    X, Y = np.meshgrid(s.x, s.y)
    valid = s.valid("train_loss").ravel()
    np.testing.assert_array_equal(points[:, 0], X.ravel())
    np.testing.assert_array_equal(points[:, 1], Y.ravel())
    np.testing.assert_array_equal(points[valid, 2], s.metrics["train_loss"].ravel()[valid])
    assert np.isnan(points[~valid, 2]).all()
    for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
        got = _point_array(grid, name)
        ok = s.valid(name).ravel()
        np.testing.assert_array_equal(got[ok], s.metrics[name].ravel()[ok])
        assert np.isnan(got[~ok]).all()  # inf and pending garbage never reach ParaView's colour range
    np.testing.assert_allclose(_point_array(grid, "log10_train_loss")[valid], np.log10(s.metrics["train_loss"].ravel()[valid]))
    np.testing.assert_array_equal(_point_array(grid, "done"), s.done.ravel().astype(np.uint8))
    hidden = _point_array(grid, vtkDataSetAttributes.GhostArrayName()) & vtkDataSetAttributes.HIDDENPOINT
    np.testing.assert_array_equal(hidden != 0, ~valid)
    assert grid.GetFieldData().GetAbstractArray("metric").GetValue(0) == "train_loss"


def test_minimum_lands_at_its_x_y_in_the_vtk_points(bowl_file, bowl_spec, tmp_path, capsys):
    assert main(["vtk", str(bowl_file), "--out", str(tmp_path)]) == 0
    for path in _wrote(capsys):
        points = vtk_to_numpy(_read(path).GetPoints().GetData())
        x, y, _ = points[np.nanargmin(points[:, 2])]
        assert (x, y) == pytest.approx((bowl_spec.x_min, bowl_spec.y_min)), path


def test_vtp_keeps_only_valid_points_and_fully_valid_cells(holey_file, tmp_path, capsys):
    assert main(["vtk", str(holey_file), "--out", str(tmp_path), "--only", "vtp"]) == 0
    (path,) = _wrote(capsys)
    s = load_surface(holey_file)
    poly = _read(path)
    valid = s.valid("train_loss")
    points = vtk_to_numpy(poly.GetPoints().GetData())
    assert len(points) == valid.sum()
    X, Y = np.meshgrid(s.x, s.y)
    expected = np.column_stack([X[valid], Y[valid], s.metrics["train_loss"][valid]])
    np.testing.assert_array_equal(points, expected)
    np.testing.assert_array_equal(_point_array(poly, "train_acc"), s.metrics["train_acc"][valid])
    cells_ok = valid[:-1, :-1] & valid[:-1, 1:] & valid[1:, :-1] & valid[1:, 1:]
    assert poly.GetNumberOfPolys() == cells_ok.sum()
    sizes = np.diff(vtk_to_numpy(poly.GetPolys().GetOffsetsArray()))
    assert (sizes == 4).all()
    # Each quad's corners form a unit step in x and in y of the grid.
    conn = vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 4)
    corners = points[conn[0], :2]
    assert np.ptp(corners[:, 0]) == pytest.approx(s.x[1] - s.x[0])
    assert np.ptp(corners[:, 1]) == pytest.approx(s.y[1] - s.y[0])


def test_triangles_zmax_log_and_flat(bowl_file, tmp_path, capsys):
    s = load_surface(bowl_file)
    loss = s.metrics["train_loss"].ravel()
    assert main(["vtk", str(bowl_file), "--out", str(tmp_path), "--cells", "tri", "--zmax", "1.0", "--log"]) == 0
    vts, vtp = _wrote(capsys)
    assert vts.endswith("bowl_train_loss_log.vts")
    z = vtk_to_numpy(_read(vts).GetPoints().GetData())[:, 2]
    np.testing.assert_allclose(z, np.log10(np.minimum(loss, 1.0)))
    np.testing.assert_array_equal(_point_array(_read(vts), "train_loss"), loss)  # arrays keep the raw values
    poly = _read(vtp)
    assert poly.GetNumberOfPolys() == 2 * 50 * 40
    assert (np.diff(vtk_to_numpy(poly.GetPolys().GetOffsetsArray())) == 3).all()

    assert main(["vtk", str(bowl_file), "--out", str(tmp_path), "--flat", "--only", "vts"]) == 0
    (flat,) = _wrote(capsys)
    assert flat.endswith("bowl_train_loss_flat.vts")
    grid = _read(flat)
    assert (vtk_to_numpy(grid.GetPoints().GetData())[:, 2] == 0).all()
    np.testing.assert_array_equal(_point_array(grid, "height"), loss)


def test_vtk_of_a_1d_file_is_a_clear_error(line_file, capsys):
    assert main(["vtk", str(line_file)]) == 2
    err = capsys.readouterr().err
    assert "line.h5 is a 1D surface" in err and "plot1d" in err
