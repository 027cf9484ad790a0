"""The surface reader: what it returns, what it masks, and how it fails."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from analysis.surface import Surface, SurfaceError, load_surface


def test_load_surface_returns_the_file_contents_in_y_x_order(bowl_file, bowl_spec):
    s = load_surface(bowl_file)
    assert s.ndim == 2 and s.shape == (41, 51)
    np.testing.assert_array_equal(s.x, bowl_spec.x)
    np.testing.assert_array_equal(s.y, bowl_spec.y)
    X, Y = np.meshgrid(bowl_spec.x, bowl_spec.y)
    np.testing.assert_allclose(s.metrics["train_loss"], bowl_spec.bowl(X, Y))
    assert set(s.metrics) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    assert s.done.all() and s.done.dtype == bool
    assert s.attrs["kind"] == "surface" and s.attrs["config"] == "model: tiny\n"
    j, i = np.unravel_index(np.argmin(s.metrics["train_loss"]), s.shape)
    assert (s.x[i], s.y[j]) == pytest.approx((bowl_spec.x_min, bowl_spec.y_min))


def test_load_1d_surface_has_no_y(line_file):
    s = load_surface(line_file)
    assert s.ndim == 1 and s.y is None and s.shape == (51,)
    assert s.done.sum() == 49


def test_file_declaring_x_y_axes_is_transposed_to_y_x(make_surface_file, bowl_spec):
    X, Y = np.meshgrid(bowl_spec.x, bowl_spec.y)
    loss = bowl_spec.bowl(X, Y)
    path = make_surface_file("t.h5", bowl_spec.x, bowl_spec.y, {"train_loss": loss.T}, np.ones((51, 41), bool), {"axes": "x,y"})
    np.testing.assert_allclose(load_surface(path).metrics["train_loss"], loss)


def test_masking_drops_nan_inf_and_pending_points(holey_file):
    s = load_surface(holey_file)
    valid = s.valid("train_loss")
    assert not valid[-4:, :6].any()  # pending block, including the 1e9 garbage
    assert not valid[0, -1]  # inf
    assert not valid[20, 20]  # done but NaN
    assert valid.sum() == s.done.size - 24 - 2
    values = s.values("train_loss")
    assert np.isnan(values[~valid]).all() and np.isfinite(values[valid]).all()
    lo, hi = s.value_range("train_loss")
    finite_done = s.metrics["train_loss"][valid]
    assert (lo, hi) == (finite_done.min(), finite_done.max())
    assert hi < 10  # neither inf nor the 1e9 at a pending point stretched the range
    assert s.masked("train_loss").mask.sum() == 26


def test_log_masking_also_drops_non_positive_values(bowl_spec):
    loss = np.array([1.0, 0.0, -1.0, 2.0])
    s = Surface(np.arange(4.0), None, {"train_loss": loss})
    np.testing.assert_array_equal(s.valid("train_loss", log=True), [True, False, False, True])
    assert s.value_range("train_loss", log=True) == (1.0, 2.0)


def test_fully_masked_surface_is_a_clear_error(make_surface_file, bowl_spec):
    nan = np.full((41, 51), np.nan)
    path = make_surface_file("empty.h5", bowl_spec.x, bowl_spec.y, {"train_loss": nan}, np.zeros((41, 51), bool))
    s = load_surface(path)
    with pytest.raises(SurfaceError, match=r"empty\.h5.*'train_loss' has no computed, finite points"):
        s.value_range("train_loss")


def test_hdf5_without_surface_kind_is_rejected_naming_file_and_datasets(tmp_path):
    path = tmp_path / "sweep.h5"
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "sweep"
        f["xcoordinates"] = np.zeros(3)
        f["runs"] = np.zeros(2)
    with pytest.raises(SurfaceError) as err:
        load_surface(path)
    msg = str(err.value)
    assert "sweep.h5 is not a surface file" in msg and "kind == 'surface'" in msg and "'sweep'" in msg
    assert "runs" in msg and "xcoordinates" in msg


def test_hdf5_without_xcoordinates_is_rejected(tmp_path):
    path = tmp_path / "noaxis.h5"
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "surface"
        f["train_loss"] = np.zeros((2, 2))
    with pytest.raises(SurfaceError, match=r"noaxis\.h5 is not a surface file: missing dataset 'xcoordinates'.*train_loss"):
        load_surface(path)


def test_non_hdf5_and_missing_files_are_clear_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SurfaceError, match=r"notes\.txt: not an HDF5 file"):
        load_surface(text)
    with pytest.raises(SurfaceError, match=r"nothere\.h5: no such file"):
        load_surface(tmp_path / "nothere.h5")


def test_missing_metric_names_the_datasets_present(make_surface_file, bowl_spec):
    X, Y = np.meshgrid(bowl_spec.x, bowl_spec.y)
    path = make_surface_file("trainonly.h5", bowl_spec.x, bowl_spec.y, {"train_loss": bowl_spec.bowl(X, Y)})
    with pytest.raises(SurfaceError, match=r"trainonly\.h5 has no dataset 'test_loss'; value datasets present: train_loss"):
        load_surface(path).require("test_loss")


def test_2d_file_without_ycoordinates_is_rejected(tmp_path):
    path = tmp_path / "noy.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(kind="surface", ndim=2)
        f["xcoordinates"] = np.zeros(3)
        f["train_loss"] = np.zeros((2, 3))
    with pytest.raises(SurfaceError, match=r"noy\.h5: ndim is 2 but dataset 'ycoordinates' is missing"):
        load_surface(path)


def test_surface_from_arrays_validates_shapes():
    x, y = np.linspace(0, 1, 4), np.linspace(0, 1, 3)
    s = Surface(x, y, {"train_loss": np.ones((3, 4))})
    assert s.shape == (3, 4) and s.done.all() and s.name == "surface"
    with pytest.raises(SurfaceError, match=r"'train_loss' has shape \(4, 3\), expected \(3, 4\)"):
        Surface(x, y, {"train_loss": np.ones((4, 3))})
    with pytest.raises(SurfaceError, match="at least one metric"):
        Surface(x, y, {})


def test_surface_from_arrays_without_done_treats_nan_as_pending():
    s = Surface(np.arange(3.0), None, {"train_loss": [1.0, np.nan, np.inf]})
    np.testing.assert_array_equal(s.done, [True, False, True])
    np.testing.assert_array_equal(s.valid("train_loss"), [True, False, False])


def test_slice_at_takes_the_nearest_row_and_column(bowl_file, bowl_spec):
    s = load_surface(bowl_file)
    row = s.slice_at(y=-0.21)
    assert row.ndim == 1 and row.attrs["slice"] == "y = -0.2"
    np.testing.assert_array_equal(row.x, bowl_spec.x)
    np.testing.assert_array_equal(row.metrics["train_loss"], s.metrics["train_loss"][bowl_spec.j_min])
    col = s.slice_at(x=0.41)
    np.testing.assert_array_equal(col.x, bowl_spec.y)
    np.testing.assert_array_equal(col.metrics["train_loss"], s.metrics["train_loss"][:, bowl_spec.i_min])
    assert col.xlabel == "y"


def test_a_file_open_for_writing_elsewhere_can_still_be_read(bowl_file):
    import subprocess
    import sys

    # Another process holds the file open for writing (HDF5 takes an exclusive flock), as a running scan does.
    hold = "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r+'); print('open', flush=True); time.sleep(60)"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(bowl_file)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(OSError):
            h5py.File(bowl_file, "r")  # a default reader is locked out
        assert load_surface(bowl_file).shape == (41, 51)
    finally:
        holder.kill()
        holder.wait()
