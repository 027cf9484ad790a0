"""Previews of partial surfaces: the finest complete level of the coarse-to-fine order, or an interpolation."""

from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from analysis.cli import main
from analysis.contour import contour_figure
from analysis.preview import (
    axis_indices,
    coarsest_level,
    finest_complete_level,
    partial_view,
    point_levels,
)
from analysis.surface import Surface, SurfaceError, load_surface

N = 65  # the grid: level 3 = every 8th point, 9 x 9 of 4225
X65 = np.linspace(-1.0, 1.0, N)
Y65 = np.linspace(-0.5, 1.5, N)


def loss65() -> np.ndarray:
    X, Y = np.meshgrid(X65, Y65)
    return 0.1 + 2.0 * X**2 + 3.0 * (Y - 0.5) ** 2 + X * Y


def every(step: int, shape: tuple[int, int] = (N, N)) -> np.ndarray:
    """Done mask of every `step`-th point in x and y plus the last row and column, built by hand."""
    done = np.zeros(shape, dtype=bool)
    rows = sorted(set(range(0, shape[0], step)) | {shape[0] - 1})
    cols = sorted(set(range(0, shape[1], step)) | {shape[1] - 1})
    done[np.ix_(rows, cols)] = True
    return done


def partial_file(make_surface_file, name: str, done: np.ndarray, values: np.ndarray | None = None):
    values = loss65() if values is None else values
    metrics = {"train_loss": np.where(done, values, np.nan), "train_acc": np.where(done, 100.0 - values, np.nan)}
    return make_surface_file(name, X65, Y65, metrics, done)


def test_axis_levels_follow_the_shared_definition():
    # The examples of the definition (docs: "Progressive levels of a grid axis").
    assert coarsest_level(65) == 5 and axis_indices(65, 5).tolist() == [0, 32, 64]
    assert coarsest_level(25) == 3 and axis_indices(25, 3).tolist() == [0, 8, 16, 24]
    assert coarsest_level(51) == 4 and axis_indices(51, 4).tolist() == [0, 16, 32, 48, 50]
    assert coarsest_level(2) == 0 and coarsest_level(3) == 0 and coarsest_level(5) == 1
    assert axis_indices(65, 3).tolist() == list(range(0, 65, 8))
    # a point belongs to the coarsest level that holds it; a 2D grid takes the smaller Lmax of its axes
    levels = point_levels((25, 65))
    assert levels.max() == 3 and levels[0, 0] == levels[24, 64] == 3
    assert levels[8, 32] == 3 and levels[4, 32] == 2 and levels[8, 1] == 0 and levels[1, 64] == 0
    assert int((levels >= 3).sum()) == 4 * 9  # y: 0, 8, 16, 24; x: every 8th of 65


def test_exactly_the_eighth_points_give_level_3_as_a_9_by_9_subgrid(make_surface_file):
    done = every(8)
    assert done.sum() == 81  # 1.9% of 4225
    s = load_surface(partial_file(make_surface_file, "eighth.h5", done))
    assert finest_complete_level(s.done_mask) == 3
    view = partial_view(s, "level")
    assert view.shape == (9, 9)
    np.testing.assert_array_equal(view.x, X65[::8])
    np.testing.assert_array_equal(view.y, Y65[::8])
    np.testing.assert_array_equal(view.metrics["train_loss"], loss65()[::8, ::8])
    np.testing.assert_array_equal(view.metrics["train_acc"], 100.0 - loss65()[::8, ::8])
    assert view.done_mask.all()
    # One more point of a finer level changes nothing; the whole of level 2 makes it level 2 (17 x 17).
    done[4, 4] = True
    assert finest_complete_level(done) == 3
    assert finest_complete_level(every(4)) == 2 and partial_view(Surface(X65, Y65, {"l": loss65()}, every(4)), "level").shape == (17, 17)


def test_finest_level_misses_one_point(make_surface_file):
    done = every(4)
    done[8, 4] = False  # a level-2 point that is not on level 3
    assert finest_complete_level(done) == 3
    done[8, 8] = False  # a level-3 point
    assert finest_complete_level(done) == 4


def test_title_states_fraction_and_resolution(make_surface_file):
    done = every(4)
    rng = np.random.default_rng(0)
    done |= rng.random(done.shape) < 0.2  # plus some points of level 1 and 0
    path = partial_file(make_surface_file, "part.h5", done)
    view = partial_view(load_surface(path))  # auto = level
    pct = f"{100.0 * done.sum() / done.size:.1f}%"
    expected = f"preview: {pct} of 4225 points computed; 1/4 resolution (17 x 17)"
    title = contour_figure(view, "train_loss", kind="contourf").axes[0].get_title()
    assert title.splitlines() == ["part: train_loss", expected]


def test_complete_file_is_drawn_exactly_as_before(make_surface_file, tmp_path, capsys):
    path = make_surface_file("full.h5", X65, Y65, {"train_loss": loss65()})
    s = load_surface(path)
    assert finest_complete_level(s.done_mask) == 0
    for mode in ("auto", "level", "interpolate", "mask"):
        assert partial_view(s, mode) is s
    assert contour_figure(s, "train_loss").axes[0].get_title() == "full: train_loss"
    # Byte for byte the same image whatever --partial says (mask is the old behaviour).
    images = {}
    for mode in ("mask", "auto", "level", "interpolate"):
        out = tmp_path / mode
        assert main(["contour", str(path), "--kind", "heatmap", "--partial", mode, "--out", str(out)]) == 0
        images[mode] = (out / "full_train_loss_heatmap.png").read_bytes()
    assert len(set(images.values())) == 1
    assert "preview" not in capsys.readouterr().out


def test_no_complete_level_is_one_line_exit_2_in_level_mode(make_surface_file, tmp_path, capsys):
    done = np.ones((N, N), dtype=bool)
    done[-1, -1] = False  # the corner is in every level: nothing is complete, although 99.98% is done
    path = partial_file(make_surface_file, "nolevel.h5", done)
    for mode in ("level", "interpolate"):
        assert main(["contour", str(path), "--partial", mode, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "no level of the grid is complete yet (4224 of 4225 points computed" in err
        assert "misses 1" in err and "--partial mask" in err
    assert not list(tmp_path.glob("*.png"))
    # The default falls back to the computed points and says so in the title.
    s = load_surface(path)
    view = partial_view(s, "auto")
    assert view.shape == s.shape and view.preview is not None
    title = contour_figure(view, "train_loss").axes[0].get_title()
    assert "preview: 99.9% of 4225 points computed; no complete level yet, computed points only" in title
    with pytest.raises(SurfaceError, match="no level of the grid is complete"):
        partial_view(s, "level")


def test_interpolation_reproduces_a_bilinear_function(make_surface_file):
    # Uneven coordinates, so the interpolation must work in coordinate units, not indices.
    x = np.sort(np.concatenate([[-1.0, 1.0], np.random.default_rng(1).uniform(-1, 1, N - 2)]))
    y = np.linspace(2.0, -1.0, N)  # decreasing: still a valid axis
    X, Y = np.meshgrid(x, y)
    f = 1.5 - 2.0 * X + 0.7 * Y + 3.0 * X * Y
    done = every(8)
    done |= np.random.default_rng(2).random(done.shape) < 0.25
    s = Surface(x, y, {"train_loss": np.where(done, f, np.nan)}, done)
    view = partial_view(s, "interpolate")
    z = view.metrics["train_loss"]
    assert view.shape == (N, N) and view.done_mask.all()
    np.testing.assert_array_equal(z[done], f[done])  # computed points keep their exact values
    np.testing.assert_allclose(z[~done], f[~done], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(view.preview.computed, done)


def test_interpolation_of_a_curved_surface_is_within_the_bilinear_error(make_surface_file):
    done = every(8)
    done |= np.random.default_rng(3).random(done.shape) < 0.3
    s = load_surface(partial_file(make_surface_file, "curved.h5", done))
    z = partial_view(s, "interpolate").metrics["train_loss"]
    truth = loss65()
    # Bilinear interpolation over cells of the complete level (spacing H) errs by at most H^2/8 times the
    # second derivatives along x and y (4 and 6 here; the xy term is bilinear, exact), reached at a cell's
    # centre when no finer point near it is computed; finer computed points only bring it closer.
    hx, hy = 8 * (X65[1] - X65[0]), 8 * (Y65[1] - Y65[0])
    bound = (hx**2 / 8 * 4.0 + hy**2 / 8 * 6.0) * (1 + 1e-9)
    err = np.abs(z - truth)
    assert err[done].max() == 0.0
    assert 0 < err.max() <= bound
    # The computed finer points help: closer on average than bilinear from the 9 x 9 level alone (np.interp).
    rows = np.array([np.interp(X65, X65[::8], r) for r in truth[::8, ::8]])
    coarse = np.array([np.interp(Y65, Y65[::8], c) for c in rows.T]).T
    assert err.mean() < 0.8 * np.abs(coarse - truth).mean()


def test_interpolated_contour_marks_the_computed_points(make_surface_file):
    done = every(4)
    done[10:20, 30:50] = True
    s = load_surface(partial_file(make_surface_file, "marks.h5", done))
    fig = contour_figure(partial_view(s, "interpolate"), "train_loss", kind="contour")
    ax = fig.axes[0]
    dots = [line for line in ax.get_lines() if line.get_marker() == "."]
    assert len(dots) == 1
    X, Y = np.meshgrid(X65, Y65)
    drawn = set(zip(dots[0].get_xdata().tolist(), dots[0].get_ydata().tolist()))
    assert drawn == set(zip(X[done].tolist(), Y[done].tolist()))
    assert "computed (dots), the rest interpolated" in ax.get_title()


def test_one_dimensional_levels_and_interpolation():
    x = np.linspace(-1, 1, 51)  # Lmax 4: 0, 16, 32, 48, 50
    f = 2.0 - 3.0 * x
    done = np.zeros(51, dtype=bool)
    done[[0, 8, 16, 24, 32, 40, 48, 50]] = True  # level 3
    done[5] = True
    s = Surface(x, None, {"train_loss": np.where(done, f, np.nan)}, done)
    view = partial_view(s, "level")
    np.testing.assert_array_equal(view.x, x[[0, 8, 16, 24, 32, 40, 48, 50]])
    assert view.preview.describe().endswith("1/8 resolution (8 points)")
    interp = partial_view(s, "interpolate")
    np.testing.assert_allclose(interp.metrics["train_loss"], f, rtol=0, atol=1e-12)


def test_contour_cli_draws_the_level_and_prints_it(make_surface_file, tmp_path, capsys):
    done = every(8)
    path = partial_file(make_surface_file, "cli.h5", done)
    assert main(["contour", str(path), "--kind", "contourf", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: preview: 1.9% of 4225 points computed; 1/8 resolution (9 x 9)"
    image = mpimg.imread(str(tmp_path / "cli_train_loss_contourf.png"))
    assert image.ndim == 3 and image.shape[0] > 100


def test_vtk_of_a_preview_holds_the_level_and_says_so(make_surface_file, tmp_path, capsys):
    pytest.importorskip("vtkmodules")
    from vtkmodules.vtkIOXML import vtkXMLStructuredGridReader

    done = every(4)
    done[0:3, :] = True
    path = partial_file(make_surface_file, "vtk.h5", done)
    assert main(["vtk", str(path), "--only", "vts", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    pct = f"{100.0 * done.sum() / done.size:.1f}%"
    line = f"preview: {pct} of 4225 points computed; 1/4 resolution (17 x 17)"
    assert f"{path}: {line}" in printed
    reader = vtkXMLStructuredGridReader()
    reader.SetFileName(str(tmp_path / "vtk_train_loss.vts"))
    reader.Update()
    from vtkmodules.util.numpy_support import vtk_to_numpy

    grid = reader.GetOutput()
    points = vtk_to_numpy(grid.GetPoints().GetData())
    np.testing.assert_array_equal(points[:17, 0], X65[::4])  # x fastest: the first row of the 17 x 17 level
    np.testing.assert_array_equal(points[::17, 1], Y65[::4])
    assert grid.GetFieldData().GetAbstractArray("preview").GetValue(0) == line
    # interpolated: the whole grid, with `done` saying which points were computed
    assert main(["vtk", str(path), "--only", "vts", "--partial", "interpolate", "--out", str(tmp_path / "i")]) == 0
    reader.SetFileName(str(tmp_path / "i" / "vtk_train_loss.vts"))
    reader.Update()
    grid = reader.GetOutput()
    assert grid.GetNumberOfPoints() == N * N
    np.testing.assert_array_equal(vtk_to_numpy(grid.GetPointData().GetArray("done")), done.ravel().astype(np.uint8))


def test_render_of_a_level_covers_the_whole_plane(make_surface_file, tmp_path, capsys):
    pytest.importorskip("pyvista")
    done = every(8)
    full = make_surface_file("whole.h5", X65, Y65, {"train_loss": loss65()})
    part = partial_file(make_surface_file, "part8.h5", done)
    boxes = []
    for path in (full, part):
        argv = ["render", str(path), "--view", "top", "--size", "240x180", "--no-scalar-bar", "--out", str(tmp_path)]
        assert main(argv) == 0
        rgb = mpimg.imread(str(tmp_path / f"{path.stem}_train_loss_render_top.png"))[..., :3]
        hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
        rows, cols = np.nonzero((hi - lo) / np.maximum(hi, 1e-9) > 0.3)
        boxes.append((rows.min(), rows.max(), cols.min(), cols.max()))
    assert re.search(r"preview: 1\.9% of 4225 points computed; 1/8 resolution \(9 x 9\)", capsys.readouterr().out)
    # the 1/8 level spans the full extent, so the map fills the same box as the complete scan's (to a pixel or two)
    assert np.abs(np.subtract(boxes[0], boxes[1])).max() <= 3
