"""The optimizer's path of a surface file's trajectory/ group: over the contours (`trajectory`), as a polyline
lying on the ParaView surface (`vtk`), and in the pyvista render (`render --trajectory`).

The files are written here with h5py straight from docs/surface-format.md ("The `trajectory/` group"), so
the tests check the analysis side against the documented layout, not against the writer's code.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.lines import Line2D

from analysis.cli import main
from analysis.surface import load_surface
from analysis.trajectory import load_trajectory, marker_every, trajectory_figure
from tests.analysis.conftest import demo_like_loss, write_surface_file

EPOCHS = np.arange(31)
RATIO = np.array([0.6234, 0.2104])


def spiral_path(epochs: np.ndarray = EPOCHS, scale: float = 0.8) -> dict[str, np.ndarray]:
    """A path spiralling from (0.8 * scale, 0.5 * scale) at epoch 0 into the origin at the last epoch."""
    t = epochs / epochs[-1]
    r, angle = scale * (1.0 - t) ** 1.5, 0.56 + 2.5 * t
    x, y = r * np.cos(angle), r * np.sin(angle) * 0.66
    residual = 0.05 * r + 0.25 * np.exp(-(((t - 0.4) / 0.1) ** 2))  # leaves the plane most around epoch 12
    residual[-1] = 0.0  # the reference itself: the final epoch
    distance = np.sqrt(x**2 + y**2 + residual**2)  # as for orthonormal directions
    return {"epoch": epochs.astype(np.int64), "x": x, "y": y, "residual": residual, "distance": distance}


def write_trajectory_file(
    path: Path, path_arrays: dict[str, np.ndarray] | None = None, *, done: np.ndarray | None = None
) -> Path:
    """A 25 x 25 surface on [-1, 1]^2 (the demo-like loss) with a documented trajectory/ group."""
    x, loss = demo_like_loss()
    metrics = {"train_loss": loss, "train_acc": 100.0 * np.exp(-loss)}
    if done is not None:
        for values in metrics.values():
            values[~done] = np.nan
    write_surface_file(path, x, x, metrics, done, {"xlabel": "pc1", "ylabel": "pc2"})
    with h5py.File(path, "a") as f:
        f.attrs["directions_source"] = "pca"
        g = f.create_group("trajectory")
        for name, values in (path_arrays or spiral_path()).items():
            g[name] = values
        g.attrs["explained_variance_ratio"] = RATIO
        g.attrs["explained_variance"] = RATIO * 3.0
        g.attrs["singular_values"] = np.sqrt(RATIO * 90.0)
        g.attrs["centered"] = True
        g.attrs["covered"] = "weights"
        g.attrs["method"] = "svd"
        g.attrs["snapshots"] = "runs/demo/snapshots"
    return path


@pytest.fixture
def traj_file(tmp_path: Path) -> Path:
    return write_trajectory_file(tmp_path / "pca.h5")


def _lines(fig) -> dict[str, Line2D]:
    return {line.get_gid(): line for line in fig.axes[0].get_lines() if line.get_gid()}


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def _stdout(capsys) -> tuple[list[str], list[str]]:
    lines = capsys.readouterr().out.splitlines()
    return [line.removeprefix("wrote: ") for line in lines if line.startswith("wrote: ")], lines


# --- the figure -----------------------------------------------------------------------------------------------


def test_path_markers_labels_and_axes_come_from_the_file(traj_file):
    arrays = spiral_path()
    fig = trajectory_figure(load_surface(traj_file), load_trajectory(traj_file), every=5)
    lines = _lines(fig)
    np.testing.assert_array_equal(lines["trajectory-path"].get_xdata(), arrays["x"])
    np.testing.assert_array_equal(lines["trajectory-path"].get_ydata(), arrays["y"])
    every5 = EPOCHS % 5 == 0
    np.testing.assert_array_equal(lines["trajectory-markers"].get_xdata(), arrays["x"][every5])
    np.testing.assert_array_equal(lines["trajectory-markers"].get_ydata(), arrays["y"][every5])
    assert (lines["trajectory-start"].get_xdata()[0], lines["trajectory-start"].get_ydata()[0]) == (arrays["x"][0], arrays["y"][0])
    assert lines["trajectory-end"].get_xdata()[0] == arrays["x"][-1]
    texts = _texts(fig)
    assert any("epoch 0" in t and "start" in t for t in texts), texts
    assert any("epoch 30" in t and "end" in t for t in texts), texts
    ax = fig.axes[0]
    assert ax.get_xlabel() == f"1st PC: {100 * RATIO[0]:.1f} %" == "1st PC: 62.3 %"
    assert ax.get_ylabel() == f"2nd PC: {100 * RATIO[1]:.1f} %" == "2nd PC: 21.0 %"
    # The title says how far the path leaves the plane: the largest residual / the largest distance, and where.
    title = ax.get_title()
    share = arrays["residual"].max() / arrays["distance"].max()
    assert f"{100 * share:.1f} %" in title and f"epoch {int(np.argmax(arrays['residual']))}" in title, title
    assert "outside" not in title
    # The contours underneath are those of `contour`: the paper's levels on this loss.
    contour_levels = [c for c in ax.collections if hasattr(c, "levels")][0].levels
    np.testing.assert_allclose(contour_levels[:3], [0.1, 0.6, 1.1])


@pytest.mark.parametrize("epochs", [np.arange(11), np.arange(31), np.arange(0, 301, 5), np.arange(201)])
def test_default_markers_are_round_and_ten_to_fifteen(epochs):
    every = marker_every(epochs)
    shown = int((epochs % every == 0).sum())
    assert 10 <= shown <= 15, (every, shown)
    assert every % (epochs[1] - epochs[0]) == 0  # every marker sits on a snapshot
    assert str(every)[0] in "123457" and set(str(every)[1:]) <= {"0", "5"}


def test_snapshots_outside_the_scan_are_counted_and_the_axes_keep_the_scan(tmp_path):
    arrays = spiral_path(scale=1.6)  # starts at about (1.3, 0.8): outside the [-1, 1] scan
    outside = (np.abs(arrays["x"]) > 1) | (np.abs(arrays["y"]) > 1)
    assert 0 < outside.sum() < EPOCHS.size
    path = write_trajectory_file(tmp_path / "wide.h5", arrays)
    fig = trajectory_figure(load_surface(path), load_trajectory(path))
    ax = fig.axes[0]
    assert ax.get_xlim() == (-1.0, 1.0) and ax.get_ylim() == (-1.0, 1.0)
    assert f"{outside.sum()} of {EPOCHS.size} snapshots outside" in ax.get_title()
    np.testing.assert_array_equal(_lines(fig)["trajectory-path"].get_xdata(), arrays["x"])  # clipped when drawn


def test_cli_writes_the_figure_and_prints_the_explained_variance(traj_file, tmp_path, capsys):
    assert main(["trajectory", str(traj_file), "--out", str(tmp_path / "out"), "--format", "png", "--format", "pdf"]) == 0
    wrote, lines = _stdout(capsys)
    assert wrote == [str(tmp_path / "out" / f"pca_train_loss_trajectory.{ext}") for ext in ("png", "pdf")]
    assert mpimg.imread(wrote[0]).shape[0] > 300
    assert any("1st PC 62.3 %" in line and "2nd PC 21.0 %" in line and "83.4 %" in line for line in lines), lines


def test_a_file_without_trajectory_is_a_one_line_error(tmp_path, capsys):
    x, loss = demo_like_loss()
    plain = write_surface_file(tmp_path / "plain.h5", x, x, {"train_loss": loss})
    for argv in (["trajectory", str(plain)], ["render", str(plain), "--trajectory"],
                 ["vtk", str(plain), "--only", "trajectory"]):
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has no trajectory/ group" in err[0] and "`effrep trajectory`" in err[0], err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_bad_every_is_a_usage_error(traj_file, capsys):
    assert main(["trajectory", str(traj_file), "--every", "0"]) == 2
    assert "--every" in capsys.readouterr().err


# --- the ParaView polyline ------------------------------------------------------------------------------------


def _read_vtp(path: str):
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    reader = vtkXMLPolyDataReader()
    reader.SetFileName(path)
    reader.Update()
    return reader.GetOutput()


@pytest.mark.parametrize("options", [[], ["--log", "--zmax", "10"], ["--zscale", "0.02"]])
def test_vtp_polyline_lies_on_the_surface_height(traj_file, tmp_path, capsys, options):
    pytest.importorskip("vtkmodules")
    interpolate = pytest.importorskip("scipy.interpolate")
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import VTK_POLY_LINE

    assert main(["vtk", str(traj_file), "--out", str(tmp_path), *options]) == 0
    wrote, _ = _stdout(capsys)
    assert len(wrote) == 3 and wrote[2] == wrote[1].removesuffix(".vtp") + "_trajectory.vtp", wrote
    path, surface = _read_vtp(wrote[2]), _read_vtp(wrote[1])
    arrays = spiral_path()
    assert path.GetNumberOfPoints() == EPOCHS.size
    assert path.GetNumberOfCells() == 1 and path.GetCellType(0) == VTK_POLY_LINE
    ids = path.GetCell(0).GetPointIds()
    assert [ids.GetId(k) for k in range(ids.GetNumberOfIds())] == list(range(EPOCHS.size))  # in epoch order
    points = vtk_to_numpy(path.GetPoints().GetData())
    np.testing.assert_array_equal(points[:, 0], arrays["x"])
    np.testing.assert_array_equal(points[:, 1], arrays["y"])
    np.testing.assert_array_equal(vtk_to_numpy(path.GetPointData().GetArray("epoch")), EPOCHS)
    np.testing.assert_array_equal(vtk_to_numpy(path.GetPointData().GetArray("residual")), arrays["residual"])

    # z: the surface's own height formula, interpolated bilinearly (scipy), times its zscale, plus the lift.
    x, loss = demo_like_loss()
    height = np.log10(np.minimum(loss, 10.0)) if "--log" in options else loss
    zscale = surface.GetFieldData().GetArray("zscale").GetValue(0)
    if "--zscale" in options:
        assert zscale == 0.02
    expected = interpolate.RegularGridInterpolator((x, x), height.T, method="linear")(points[:, :2])
    lift = points[:, 2] - zscale * expected
    np.testing.assert_allclose(lift, lift[0], rtol=0, atol=1e-9)  # one constant offset ...
    assert 0 < lift[0] <= 0.05 * 2.0  # ... small next to the x-y extent of 2, and above
    surface_z = vtk_to_numpy(surface.GetPoints().GetData())[:, 2].reshape(x.size, x.size)
    assert np.all(points[:, 2] > interpolate.RegularGridInterpolator((x, x), surface_z.T)(points[:, :2]))


def test_vtk_skips_the_path_when_asked_and_flat_puts_it_just_above_z0(traj_file, tmp_path, capsys):
    pytest.importorskip("vtkmodules")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    assert main(["vtk", str(traj_file), "--out", str(tmp_path), "--only", "vts", "--only", "vtp"]) == 0
    assert [Path(p).name for p in _stdout(capsys)[0]] == ["pca_train_loss.vts", "pca_train_loss.vtp"]
    assert main(["vtk", str(traj_file), "--out", str(tmp_path), "--flat", "--only", "trajectory"]) == 0
    (flat,) = _stdout(capsys)[0]
    assert Path(flat).name == "pca_train_loss_flat_trajectory.vtp"
    z = vtk_to_numpy(_read_vtp(flat).GetPoints().GetData())[:, 2]
    assert np.all(z > 0) and np.ptp(z) == 0


def test_pending_points_give_a_path_still_whole_and_flagged(tmp_path, capsys):
    pytest.importorskip("vtkmodules")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    done = np.ones((25, 25), dtype=bool)
    done[::2, ::2] = False  # as a progressive scan before its finest level: every other point pending
    path = write_trajectory_file(tmp_path / "partial.h5", done=done)
    assert main(["vtk", str(path), "--out", str(tmp_path), "--only", "trajectory"]) == 0
    data = _read_vtp(_stdout(capsys)[0][0])
    z = vtk_to_numpy(data.GetPoints().GetData())[:, 2]
    assert data.GetNumberOfPoints() == EPOCHS.size and np.isfinite(z).all()
    on_surface = vtk_to_numpy(data.GetPointData().GetArray("on_surface"))
    assert on_surface.min() == 0  # points between pending grid points are flagged as approximate


# --- the pyvista render ---------------------------------------------------------------------------------------


def _red(path: Path) -> np.ndarray:
    rgb = mpimg.imread(str(path))[..., :3].astype(np.float64)
    return (rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.35) & (rgb[..., 2] < 0.35)  # tab:red; viridis has none


def test_render_top_view_draws_the_path_where_it_is(traj_file, tmp_path, capsys):
    pytest.importorskip("pyvista")
    from analysis.render import render_surface

    s = load_surface(traj_file)
    top = render_surface(s, tmp_path / "top.png", view="top", window_size=(480, 480), scalar_bar=False, title=False,
                         trajectory=load_trajectory(traj_file))
    plain = render_surface(s, tmp_path / "plain.png", view="top", window_size=(480, 480), scalar_bar=False, title=False)
    red = _red(top)
    assert not _red(plain).any() and red.sum() > 200
    # Map data to pixels with the surface's drawn box (the map spans [-1, 1]^2, +x right, +y up).
    rgb = mpimg.imread(str(plain))[..., :3]
    rows, cols = np.nonzero(rgb.max(axis=-1) - rgb.min(axis=-1) > 0.15)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    arrays = spiral_path()
    t = np.linspace(0, 1, 400)
    k = np.minimum((t * (EPOCHS.size - 1)).astype(int), EPOCHS.size - 2)
    f = t * (EPOCHS.size - 1) - k
    px = arrays["x"][k] * (1 - f) + arrays["x"][k + 1] * f
    py = arrays["y"][k] * (1 - f) + arrays["y"][k + 1] * f
    pr = np.round(r0 + (1.0 - py) / 2.0 * (r1 - r0)).astype(int)
    pc = np.round(c0 + (px + 1.0) / 2.0 * (c1 - c0)).astype(int)
    near = [red[max(r - 3, 0) : r + 4, max(c - 3, 0) : c + 4].any() for r, c in zip(pr, pc)]
    assert np.mean(near) > 0.8, np.mean(near)  # the labels may cover a little of it
    red_rows, red_cols = np.nonzero(red)
    far = np.min((red_rows[:, None] - pr) ** 2 + (red_cols[:, None] - pc) ** 2, axis=1) > 15**2
    assert far.mean() < 0.02  # no red elsewhere


def test_render_oblique_shows_the_path_above_the_surface(traj_file, tmp_path, capsys):
    pytest.importorskip("pyvista")
    assert main(["render", str(traj_file), "--trajectory", "--size", "480x360", "--out", str(tmp_path)]) == 0
    (png,) = _stdout(capsys)[0]
    assert Path(png).name == "pca_train_loss_render_trajectory.png"
    assert _red(Path(png)).sum() > 150  # not hidden inside the bowl
