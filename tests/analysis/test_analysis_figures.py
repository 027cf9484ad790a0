"""matplotlib figures: where the minimum lands, what gets masked, shared scales, non-blank PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.colors import LogNorm
from matplotlib.contour import ContourSet
from matplotlib.path import Path as MplPath

from analysis.compare import compare_figure
from analysis.contour import contour_data, contour_figure
from analysis.plot1d import plot1d_figure
from analysis.surface import Surface, SurfaceError, load_surface
from analysis.surface3d import surface3d_figure


def _artist(fig, kind):
    return next(c for c in fig.axes[0].collections if isinstance(c, kind))


def test_contour_data_puts_the_minimum_at_its_x_y(bowl_file, bowl_spec):
    X, Y, Z = contour_data(load_surface(bowl_file), "train_loss")
    assert X.shape == Y.shape == Z.shape == (41, 51)
    k = np.unravel_index(np.argmin(Z), Z.shape)
    assert (X[k], Y[k]) == pytest.approx((bowl_spec.x_min, bowl_spec.y_min))


def test_lowest_filled_contour_surrounds_the_minimum_only(bowl_file, bowl_spec):
    fig = contour_figure(load_surface(bowl_file), kind="contourf", levels=20)
    cs = _artist(fig, ContourSet)
    lowest = [MplPath(seg) for seg in cs.allsegs[0] if len(seg) > 2]
    assert lowest

    def inside(px, py):
        return any(p.contains_point((px, py)) for p in lowest)

    assert inside(bowl_spec.x_min, bowl_spec.y_min)
    # The mirror images a flipped or transposed plot would put the minimum at.
    assert not inside(-bowl_spec.x_min, bowl_spec.y_min)
    assert not inside(bowl_spec.x_min, 0.7)
    assert not inside(bowl_spec.y_min, bowl_spec.x_min)


def test_heatmap_cell_of_the_minimum_is_centred_on_it(bowl_file, bowl_spec):
    fig = contour_figure(load_surface(bowl_file), kind="heatmap")
    mesh = _artist(fig, QuadMesh)
    values = np.ma.asarray(mesh.get_array()).reshape(41, 51)
    corners = mesh.get_coordinates()  # (ny + 1, nx + 1, 2) cell corners
    j, i = np.unravel_index(np.argmin(values), values.shape)
    centre = corners[j : j + 2, i : i + 2].reshape(4, 2).mean(axis=0)
    assert tuple(centre) == pytest.approx((bowl_spec.x_min, bowl_spec.y_min), abs=1e-9)


def test_masked_points_are_holes_and_do_not_stretch_the_colour_scale(holey_file):
    s = load_surface(holey_file)
    lo, hi = s.value_range("train_loss")
    for kind in ("heatmap", "contourf", "contour"):
        fig = contour_figure(s, kind=kind, levels=20)  # a count spreads over the data (auto may pick fixed levels)
        artist = fig.axes[0].collections[0]
        assert (artist.norm.vmin, artist.norm.vmax) == pytest.approx((lo, hi)), kind
    mesh = _artist(contour_figure(s, kind="heatmap"), QuadMesh)
    mask = np.ma.getmaskarray(mesh.get_array()).reshape(s.shape)
    np.testing.assert_array_equal(mask, ~s.valid("train_loss"))
    assert "26 of 2091 points masked" in contour_figure(s).axes[0].get_title()


def test_explicit_levels_vmin_vmax_and_log(bowl_file):
    s = load_surface(bowl_file)
    cs = _artist(contour_figure(s, kind="contour", levels=[0.2, 0.5, 1.0, 2.0]), ContourSet)
    np.testing.assert_allclose(cs.levels, [0.2, 0.5, 1.0, 2.0])
    mesh = _artist(contour_figure(s, kind="heatmap", vmin=0.5, vmax=1.5), QuadMesh)
    assert (mesh.norm.vmin, mesh.norm.vmax) == (0.5, 1.5)
    cs = _artist(contour_figure(s, kind="contourf", levels=5, log=True), ContourSet)
    assert isinstance(cs.norm, LogNorm)
    ratios = np.asarray(cs.levels[1:]) / np.asarray(cs.levels[:-1])
    np.testing.assert_allclose(ratios, ratios[0])  # geometric spacing


def test_contour_of_a_1d_file_points_to_plot1d(line_file):
    with pytest.raises(SurfaceError, match=r"line\.h5 is a 1D surface.*use `plot1d`"):
        contour_figure(load_surface(line_file))
    with pytest.raises(SurfaceError, match="plot1d"):
        surface3d_figure(load_surface(line_file))


def test_plot1d_draws_train_and_test_on_twin_axes_with_gaps(line_file):
    s = load_surface(line_file)
    fig = plot1d_figure(s)
    loss_ax, acc_ax = fig.axes
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert set(lines) == {"train_loss", "test_loss", "train_acc", "test_acc"}
    assert {ln.get_label() for ln in loss_ax.get_lines()} == {"train_loss", "test_loss"}
    assert {ln.get_label() for ln in acc_ax.get_lines()} == {"train_acc", "test_acc"}
    y = np.asarray(lines["test_acc"].get_ydata(), dtype=float)
    np.testing.assert_allclose(y[:-2], s.metrics["test_acc"][:-2])
    assert np.isnan(y[-2:]).all()
    assert plot1d_figure(s, log=True).axes[0].get_yscale() == "log"


def test_plot1d_of_a_2d_file_suggests_contour_or_a_slice(bowl_file):
    with pytest.raises(SurfaceError, match=r"bowl\.h5 is a 2D surface.*use `contour`.*--at-y"):
        plot1d_figure(load_surface(bowl_file))


def test_surface3d_has_a_registered_3d_axes_with_the_surface(holey_file):
    fig = surface3d_figure(load_surface(holey_file), zmax=2.0)
    ax3d = fig.axes[0]
    assert ax3d.name == "3d" and ax3d.collections
    zlo, zhi = ax3d.get_zlim()
    assert zhi <= 2.0 + 0.2 * (2.0 - zlo)  # clipped at zmax (plus matplotlib's margin), not at inf or 1e9


def test_compare_uses_one_colour_scale_across_files(make_surface_file, bowl_spec):
    metrics = bowl_spec.metrics(bowl_spec.x, bowl_spec.y)
    small = Surface(bowl_spec.x, bowl_spec.y, metrics, attrs={"title": "small"})
    big = Surface(bowl_spec.x, bowl_spec.y, {k: 3 * v + 1 for k, v in metrics.items()}, attrs={"title": "big"})
    fig = compare_figure([small, big], kind="heatmap", levels=20)  # a count: the scale spans the data
    meshes = [next(c for c in ax.collections if isinstance(c, QuadMesh)) for ax in fig.axes[:2]]
    expected = (metrics["train_loss"].min(), 3 * metrics["train_loss"].max() + 1)
    for mesh in meshes:
        assert (mesh.norm.vmin, mesh.norm.vmax) == pytest.approx(expected)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["small", "big"]


def test_compare_rejects_mixed_dimensions(bowl_file, line_file):
    with pytest.raises(SurfaceError, match="all 1D or all 2D"):
        compare_figure([load_surface(bowl_file), load_surface(line_file)])
