"""VTK export: files written by the CLI read back through vtk's XML readers with the HDF5 values,
in proportions ParaView shows as a bowl, with normals, and under names that say their options."""

from __future__ import annotations

import numpy as np
import pytest
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkDataSetAttributes
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader, vtkXMLStructuredGridReader

from analysis.cli import main
from analysis.surface import load_surface
from tests.analysis.conftest import demo_like_loss


def _run(capsys, *argv: str) -> tuple[list[str], list[str]]:
    """Run the CLI; (paths from the `wrote:` lines, the other stdout lines)."""
    assert main(list(argv)) == 0
    lines = capsys.readouterr().out.splitlines()
    wrote = [line.removeprefix("wrote: ") for line in lines if line.startswith("wrote: ")]
    return wrote, [line for line in lines if not line.startswith("wrote: ")]


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


def _field(data, name):
    array = data.GetFieldData().GetAbstractArray(name)
    assert array is not None, f"no field data array {name!r}"
    return array.GetValue(0)


def _points(data) -> np.ndarray:
    return vtk_to_numpy(data.GetPoints().GetData())


def _auto_scale(x, y, heights) -> float:
    """The documented default, computed here from the grid: z extent = half the larger x-y extent."""
    return 0.5 * max(np.ptp(x), np.ptp(y)) / np.ptp(heights)


@pytest.fixture
def demo_like_file(make_surface_file):
    """Like the demo's scan: 25 x 25 points on [-1, 1]^2, train loss from 0.003 at the centre to 39 in the corners."""
    x, loss = demo_like_loss()
    y = x
    acc = 100.0 * np.exp(-loss)
    metrics = {"train_loss": loss, "train_acc": acc, "test_loss": 1.1 * loss, "test_acc": acc}
    return make_surface_file("demo.h5", x, y, metrics)


def test_vts_points_and_arrays_equal_the_hdf5_data(holey_file, tmp_path, capsys):
    assert main(["vtk", str(holey_file), "--out", str(tmp_path / "out")]) == 0
    written = _wrote(capsys)
    assert written == [str(tmp_path / "out" / "holey_train_loss.vts"), str(tmp_path / "out" / "holey_train_loss.vtp")]
    assert '<AppendedData encoding="raw">' in open(written[0], "rb").read().decode("latin-1")

    s = load_surface(holey_file)
    grid = _read(written[0])
    assert grid.GetExtent() == (0, 50, 0, 40, 0, 0)  # nx along the first (fastest) index
    points = _points(grid)
    X, Y = np.meshgrid(s.x, s.y)
    valid = s.valid("train_loss").ravel()
    loss = s.metrics["train_loss"].ravel()
    zscale = _auto_scale(s.x, s.y, loss[valid])
    assert _field(grid, "zscale") == pytest.approx(zscale, rel=1e-12)
    np.testing.assert_array_equal(points[:, 0], X.ravel())
    np.testing.assert_array_equal(points[:, 1], Y.ravel())
    np.testing.assert_allclose(points[valid, 2], zscale * loss[valid], rtol=1e-12)
    assert np.isnan(points[~valid, 2]).all()
    np.testing.assert_array_equal(_point_array(grid, "height")[valid], loss[valid])  # height stays in data units
    for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
        got = _point_array(grid, name)
        ok = s.valid(name).ravel()
        np.testing.assert_array_equal(got[ok], s.metrics[name].ravel()[ok])
        assert np.isnan(got[~ok]).all()  # inf and pending garbage never reach ParaView's colour range
    np.testing.assert_allclose(_point_array(grid, "log10_train_loss")[valid], np.log10(loss[valid]))
    np.testing.assert_array_equal(_point_array(grid, "done"), s.done.ravel().astype(np.uint8))
    hidden = _point_array(grid, vtkDataSetAttributes.GhostArrayName()) & vtkDataSetAttributes.HIDDENPOINT
    np.testing.assert_array_equal(hidden != 0, ~valid)
    assert _field(grid, "metric") == "train_loss"


def test_minimum_lands_at_its_x_y_in_the_vtk_points(bowl_file, bowl_spec, tmp_path, capsys):
    assert main(["vtk", str(bowl_file), "--out", str(tmp_path)]) == 0
    for path in _wrote(capsys):
        points = _points(_read(path))
        x, y, _ = points[np.nanargmin(points[:, 2])]
        assert (x, y) == pytest.approx((bowl_spec.x_min, bowl_spec.y_min)), path


def test_vtp_keeps_only_valid_points_and_fully_valid_cells(holey_file, tmp_path, capsys):
    assert main(["vtk", str(holey_file), "--out", str(tmp_path), "--only", "vtp"]) == 0
    (path,) = _wrote(capsys)
    s = load_surface(holey_file)
    poly = _read(path)
    valid = s.valid("train_loss")
    points = _points(poly)
    assert len(points) == valid.sum()
    X, Y = np.meshgrid(s.x, s.y)
    zscale = _field(poly, "zscale")
    assert zscale == pytest.approx(_auto_scale(s.x, s.y, s.metrics["train_loss"][valid]), rel=1e-12)
    expected = np.column_stack([X[valid], Y[valid], zscale * s.metrics["train_loss"][valid]])
    np.testing.assert_allclose(points, expected, rtol=1e-12)
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
    assert vts.endswith("bowl_train_loss_log_zmax1.vts") and vtp.endswith("bowl_train_loss_log_zmax1_tri.vtp")
    height = np.log10(np.minimum(loss, 1.0))
    zscale = _auto_scale(s.x, s.y, height)
    grid = _read(vts)
    z = _points(grid)[:, 2]
    np.testing.assert_allclose(z, zscale * height, rtol=1e-12)
    np.testing.assert_allclose(_point_array(grid, "height"), height, rtol=1e-12)
    np.testing.assert_array_equal(_point_array(grid, "train_loss"), loss)  # arrays keep the raw values
    assert _field(grid, "height_is_log10") == 1 and _field(grid, "zmax") == 1.0
    assert _field(grid, "height") == "log10(min(train_loss, 1))"
    poly = _read(vtp)
    assert poly.GetNumberOfPolys() == 2 * 50 * 40
    assert (np.diff(vtk_to_numpy(poly.GetPolys().GetOffsetsArray())) == 3).all()

    assert main(["vtk", str(bowl_file), "--out", str(tmp_path), "--flat", "--only", "vts"]) == 0
    (flat,) = _wrote(capsys)
    assert flat.endswith("bowl_train_loss_flat.vts")
    grid = _read(flat)
    assert (_points(grid)[:, 2] == 0).all()
    np.testing.assert_array_equal(_point_array(grid, "height"), loss)
    # The scale Warp By Scalar needs is in the file; a flat plane's normals would shade the warped surface flat.
    assert _field(grid, "zscale") == pytest.approx(_auto_scale(s.x, s.y, loss), rel=1e-12)
    assert grid.GetPointData().GetNormals() is None


@pytest.mark.parametrize("options", [[], ["--zmax", "10", "--log"]], ids=["plain", "zmax10_log"])
def test_default_height_is_half_the_xy_extent_and_printed(demo_like_file, tmp_path, capsys, options):
    wrote, other = _run(capsys, "vtk", str(demo_like_file), "--out", str(tmp_path), *options)
    assert len(wrote) == 2
    for path in wrote:
        data = _read(path)
        bounds = np.array(data.GetBounds())
        x_extent, y_extent, z_extent = bounds[1] - bounds[0], bounds[3] - bounds[2], bounds[5] - bounds[4]
        assert 0.3 <= z_extent / max(x_extent, y_extent) <= 0.7, (path, z_extent)
        assert z_extent == pytest.approx(0.5 * max(x_extent, y_extent), rel=1e-9)  # the documented default
        zscale = _field(data, "zscale")
        np.testing.assert_allclose(_points(data)[:, 2], zscale * _point_array(data, "height"), rtol=1e-12)
    (line,) = other  # one line besides the `wrote:` lines
    assert line.startswith(f"zscale: {zscale:.4g} ")
    assert ("log10(min(train_loss, 10))" in line) == bool(options)


def test_zscale_option_is_used_stored_and_named(demo_like_file, tmp_path, capsys):
    s = load_surface(demo_like_file)
    wrote, other = _run(capsys, "vtk", str(demo_like_file), "--out", str(tmp_path), "--zscale", "0.125", "--log")
    assert [p.rsplit("/", 1)[1] for p in wrote] == ["demo_train_loss_log_zscale0.125.vts", "demo_train_loss_log_zscale0.125.vtp"]
    height = np.log10(s.metrics["train_loss"].ravel())
    for path in wrote:
        data = _read(path)
        assert _field(data, "zscale") == 0.125
        np.testing.assert_allclose(_points(data)[:, 2], 0.125 * height, rtol=1e-12)
    assert other == ["zscale: 0.125 (z = 0.125 * log10(train_loss); from --zscale)"]


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf"])
def test_a_bad_zscale_is_a_one_line_error(demo_like_file, tmp_path, capsys, bad):
    assert main(["vtk", str(demo_like_file), "--out", str(tmp_path), f"--zscale={bad}"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "--zscale" in captured.err and "> 0" in captured.err
    assert not list(tmp_path.glob("*.vt?"))


def _finite_difference_normals(x, y, z):
    """Unit normals of the graph z(x, y) from central differences, shape (ny, nx, 3)."""
    dz_dy, dz_dx = np.gradient(z, y, x)
    n = np.stack([-dz_dx, -dz_dy, np.ones_like(z)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def test_normals_are_unit_and_match_the_scaled_surface(demo_like_file, holey_file, tmp_path, capsys):
    wrote, _ = _run(capsys, "vtk", str(demo_like_file), "--out", str(tmp_path))
    s = load_surface(demo_like_file)
    vts, vtp = (_read(p) for p in wrote)
    loss = s.metrics["train_loss"]
    expected = _finite_difference_normals(s.x, s.y, _field(vts, "zscale") * loss)
    for data in (vts, vtp):
        assert data.GetPointData().GetNormals().GetName() == "Normals"
        normals = vtk_to_numpy(data.GetPointData().GetNormals()).reshape(25, 25, 3)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-6)
        cosine = np.sum(normals[1:-1, 1:-1] * expected[1:-1, 1:-1], axis=-1)
        assert cosine.min() > 0.99, cosine.min()  # smooth shading: each normal is the surface's own
    # Normals of the scaled surface, not of the raw heights (those are nearly horizontal on the walls).
    raw = _finite_difference_normals(s.x, s.y, loss)
    steep = raw[..., 2] < 0.1
    assert steep.sum() > 100
    assert (vtk_to_numpy(vts.GetPointData().GetNormals()).reshape(25, 25, 3)[steep][:, 2] > 0.5).all()

    # Log height with a clip, and a surface with holes: unit vectors, all facing up.
    for path in [
        *_run(capsys, "vtk", str(demo_like_file), "--out", str(tmp_path), "--zmax", "10", "--log")[0],
        *_run(capsys, "vtk", str(holey_file), "--out", str(tmp_path))[0],
    ]:
        normals = vtk_to_numpy(_read(path).GetPointData().GetNormals())
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
        assert (normals[:, 2] > 0).all(), path


def test_different_options_give_different_documented_names(demo_like_file, tmp_path, capsys):
    cases = {
        (): "demo_train_loss",
        ("--log",): "demo_train_loss_log",
        ("--zmax", "10"): "demo_train_loss_zmax10",
        ("--zmax", "10", "--log"): "demo_train_loss_log_zmax10",
        ("--zmax", "0.5", "--zscale", "2"): "demo_train_loss_zmax0.5_zscale2",
        ("--flat",): "demo_train_loss_flat",
        ("--metric", "test_loss", "--log"): "demo_test_loss_log",
    }
    seen: set[str] = set()
    for options, stem in cases.items():
        wrote, _ = _run(capsys, "vtk", str(demo_like_file), "--out", str(tmp_path), *options)
        names = [p.rsplit("/", 1)[1] for p in wrote]
        assert names == [f"{stem}.vts", f"{stem}.vtp"]
        assert not seen & set(names)
        seen |= set(names)
    wrote, _ = _run(capsys, "vtk", str(demo_like_file), "--out", str(tmp_path), "--cells", "tri", "--only", "vtp")
    assert [p.rsplit("/", 1)[1] for p in wrote] == ["demo_train_loss_tri.vtp"]
    assert {p.name for p in tmp_path.glob("*.vt?")} == seen | {"demo_train_loss_tri.vtp"}  # nothing overwritten


def test_flat_grid_shows_every_point_so_done_has_two_colours(holey_file, tmp_path, capsys):
    wrote, _ = _run(capsys, "vtk", str(holey_file), "--out", str(tmp_path), "--flat", "--only", "vts")
    s = load_surface(holey_file)
    grid = _read(wrote[0])
    assert grid.GetPointData().GetArray(vtkDataSetAttributes.GhostArrayName()) is None
    assert grid.GetCellData().GetArray(vtkDataSetAttributes.GhostArrayName()) is None
    assert np.isfinite(_points(grid)).all()  # every point can be drawn
    done = _point_array(grid, "done")
    np.testing.assert_array_equal(done, s.done.ravel())
    assert set(np.unique(done)) == {0, 1}
    assert np.isnan(_point_array(grid, "height")[done == 0]).all()  # pending: ParaView's NaN colour


def test_vtk_of_a_1d_file_is_a_clear_error(line_file, capsys):
    assert main(["vtk", str(line_file)]) == 2
    err = capsys.readouterr().err
    assert "line.h5 is a 1D surface" in err and "plot1d" in err
