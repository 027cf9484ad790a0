"""Figures that read like the papers': contour levels that resolve the basin, legible ticks and labels,
a smooth flat cap at --zmax. Each test measures the drawn figure, not the code that draws it."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.contour import ContourSet

from analysis.cli import main
from analysis.common import LevelRange, parse_levels
from analysis.compare import compare_figure
from analysis.contour import contour_figure
from analysis.plot1d import plot1d_figure
from analysis.surface import Surface, load_surface
from analysis.surface3d import drawn_grid, surface3d_figure

# Like the demo's scan (configs/demo/digits.yaml): 25 x 25 points on [-1, 1]^2, minimum loss 0.003 at the
# centre, about 7.5 at the middle of each border and about 40 in the corners; steep walls, flat basin.
GRID = np.linspace(-1.0, 1.0, 25)


def demo_like_loss(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A bowl with the demo's loss range: 0.003 + 3 r^2 + 4.5 r^6."""
    r2 = x**2 + y**2
    return 0.003 + 3.0 * r2 + 4.5 * r2**3


@pytest.fixture
def demo_like_file(bowl_spec, tmp_path) -> Path:
    X, Y = np.meshgrid(GRID, GRID)
    loss = demo_like_loss(X, Y)
    metrics = {"train_loss": loss, "test_loss": 1.1 * loss + 0.02, "train_acc": 100 * np.exp(-loss), "test_acc": 95 * np.exp(-loss)}
    return bowl_spec.write(tmp_path / "demo_like.h5", GRID, GRID, metrics)


def _contour_set(fig) -> ContourSet:
    return next(c for c in fig.axes[0].collections if isinstance(c, ContourSet))


def _border_midpoint_loss(values: np.ndarray) -> float:
    """The lowest loss at the middle of the four borders of the scan."""
    ny, nx = values.shape
    return float(min(values[0, nx // 2], values[-1, nx // 2], values[ny // 2, 0], values[ny // 2, -1]))


def _drawn(fig) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()


def _inside_figure(fig, artist) -> bool:
    """Whether the artist's drawn extent lies inside the figure (nothing clipped at the edge)."""
    box = artist.get_window_extent(fig.canvas.get_renderer())
    return box.x0 >= -1 and box.y0 >= -1 and box.x1 <= fig.bbox.width + 1 and box.y1 <= fig.bbox.height + 1


def _visible_tick_labels(axis) -> list[tuple[float, str]]:
    """(value, text) of the labelled ticks inside the axis' view interval."""
    lo, hi = sorted(axis.get_view_interval())
    out = []
    for tick in axis.get_major_ticks():
        value, text = tick.get_loc(), tick.label1.get_text()
        if text and lo - 1e-12 * abs(hi) <= value <= hi + 1e-12 * abs(hi):
            out.append((value, text))
    return out


def _as_number(text: str) -> float:
    return float(text.replace("\u2212", "-"))


# --- (6) contour levels ------------------------------------------------------------------------


def test_default_levels_put_at_least_8_lines_in_the_basin_of_a_demo_like_scan(demo_like_file):
    s = load_surface(demo_like_file)
    loss = s.metrics["train_loss"]
    border = _border_midpoint_loss(loss)
    assert loss.min() == pytest.approx(0.003) and 35 < loss.max() < 45 and 5 < border < 10
    # What an even spread over the data's range gives: the basin gets hardly any line.
    assert (np.linspace(loss.min(), loss.max(), 20) < border).sum() < 8
    cs = _contour_set(contour_figure(s, kind="contour"))
    drawn_below = [lv for lv, segs in zip(cs.levels, cs.allsegs) if lv < border and any(len(seg) > 1 for seg in segs)]
    assert len(drawn_below) >= 8, cs.levels
    filled = _contour_set(contour_figure(s, kind="contourf"))
    assert (np.asarray(filled.levels) < border).sum() >= 8


def test_default_levels_are_the_papers_when_they_fit_and_even_otherwise(demo_like_file):
    s = load_surface(demo_like_file)
    cs = _contour_set(contour_figure(s, kind="contourf"))
    np.testing.assert_allclose(cs.levels, np.arange(0.1, 10.0, 0.5))  # plot_2D.py: arange(vmin, vmax, vlevel)
    assert (cs.norm.vmin, cs.norm.vmax) == (0.1, 10.0)
    # Accuracy is not a loss: its levels spread over its own range.
    acc = s.metrics["train_acc"]
    cs = _contour_set(contour_figure(s, "train_acc", kind="contourf"))
    np.testing.assert_allclose(cs.levels, np.linspace(acc.min(), acc.max(), 20))
    # A loss that covers too few of the paper's levels (here 0.1 .. 1.3): an even spread over the data.
    small = Surface(GRID, GRID, {"train_loss": 0.1 + 0.2 * demo_like_loss(*np.meshgrid(GRID, GRID)) / 7.5})
    cs = _contour_set(contour_figure(small, kind="contour"))
    values = small.metrics["train_loss"]
    np.testing.assert_allclose(cs.levels, np.linspace(values.min(), values.max(), 20))


def test_levels_lo_hi_step_are_coloured_over_their_own_range(demo_like_file):
    s = load_surface(demo_like_file)
    levels = parse_levels("1:5:1")
    assert levels == LevelRange(1.0, 5.0, 1.0)
    cs = _contour_set(contour_figure(s, kind="contourf", levels=levels))
    np.testing.assert_allclose(cs.levels, [1, 2, 3, 4, 5])  # hi included when on the step grid
    assert (cs.norm.vmin, cs.norm.vmax) == (1.0, 5.0)  # not the data's 0.003 .. 40
    viridis = matplotlib.colormaps["viridis"]
    faces = cs.get_facecolor()  # extend="both": under-band, [1,2], [2,3], [3,4], [4,5], over-band
    np.testing.assert_allclose(faces[1], viridis((1.5 - 1.0) / 4.0), atol=1e-6)
    np.testing.assert_allclose(faces[4], viridis((4.5 - 1.0) / 4.0), atol=1e-6)
    heat = contour_figure(s, kind="heatmap", levels=levels).axes[0].collections[0]
    assert (heat.norm.vmin, heat.norm.vmax) == (1.0, 5.0)
    # An explicit list, too, spans its own first..last level.
    cs = _contour_set(contour_figure(s, kind="contour", levels=[0.5, 1.0, 2.0]))
    assert (cs.norm.vmin, cs.norm.vmax) == (0.5, 2.0)


def test_levels_count_still_spreads_over_the_data(demo_like_file):
    s = load_surface(demo_like_file)
    loss = s.metrics["train_loss"]
    cs = _contour_set(contour_figure(s, kind="contourf", levels=parse_levels("12")))
    np.testing.assert_allclose(cs.levels, np.linspace(loss.min(), loss.max(), 12))


@pytest.mark.parametrize(
    "spec, message",
    [("5:1:1", "hi > lo"), ("0:1:0", "step > 0"), ("0:1", "lo:hi:step"), ("1:2:x", "lo:hi:step"), ("0:1e6:1e-3", "1000")],
)
def test_bad_level_ranges_exit_2_with_a_message(demo_like_file, spec, message, capsys):
    assert main(["contour", str(demo_like_file), "--levels", spec]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_levels_range_draws_the_papers_levels(demo_like_file, tmp_path, capsys):
    assert main(["contour", str(demo_like_file), "--kind", "contour", "--levels", "0.1:10:0.5", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote: {tmp_path / 'demo_like_train_loss_contour.png'}"


# --- (7) colour bars, labels and ticks ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["contour", "contourf", "heatmap"])
def test_log_colour_bar_has_several_plain_ticks_and_no_label_is_clipped(demo_like_file, kind):
    s = load_surface(demo_like_file)
    fig = contour_figure(s, kind=kind, log=True)
    _drawn(fig)
    ax, cbar_ax = fig.axes[0], fig.axes[-1]
    ticks = _visible_tick_labels(cbar_ax.yaxis)
    assert len(ticks) >= 3, ticks
    for value, text in ticks:
        assert "times" not in text and _as_number(text) == pytest.approx(value)
    for label in (ax.xaxis.label, ax.yaxis.label, cbar_ax.yaxis.label, ax.title):
        assert _inside_figure(fig, label), label.get_text()


def test_compare_log_colour_bar_has_several_ticks_and_labels_fit(demo_like_file):
    s = load_surface(demo_like_file)
    other = Surface(s.x, s.y, {"train_loss": 2.0 * s.metrics["train_loss"]}, attrs={"title": "other"})
    fig = compare_figure([s, other], log=True)
    _drawn(fig)
    cbar_ax = fig.axes[-1]
    ticks = _visible_tick_labels(cbar_ax.yaxis)
    assert len(ticks) >= 3 and not any("times" in t for _, t in ticks), ticks
    for ax in fig.axes[:2]:
        assert _inside_figure(fig, ax.yaxis.label) and _inside_figure(fig, ax.xaxis.label)
    assert _inside_figure(fig, cbar_ax.yaxis.label)


def test_plot1d_legend_is_outside_the_plotted_data(line_file):
    fig = plot1d_figure(load_surface(line_file))
    _drawn(fig)
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    assert len(legends) == 1
    legend = legends[0]
    assert {t.get_text() for t in legend.get_texts()} == {"train_loss", "test_loss", "train_acc", "test_acc"}
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:  # the loss axes and its accuracy twin: no curve can run under the legend
        assert not box.overlaps(ax.get_window_extent(renderer))
    assert _inside_figure(fig, legend)


def _sub_decade_line(tmp_path, bowl_spec) -> Path:
    x = np.linspace(-1.0, 1.0, 41)
    loss = 2.3 + 0.6 * x**2  # 2.3 .. 2.9: under one decade
    return bowl_spec.write(tmp_path / "flat.h5", x, None, {"train_loss": loss, "train_acc": 50 + 10 * x})


def test_log_axis_under_one_decade_has_plain_labelled_ticks(tmp_path, bowl_spec):
    s = load_surface(_sub_decade_line(tmp_path, bowl_spec))
    fig = plot1d_figure(s, log=True)
    _drawn(fig)
    ticks = _visible_tick_labels(fig.axes[0].yaxis)
    assert len(ticks) >= 3, ticks
    for value, text in ticks:
        assert "times" not in text and "10^" not in text
        assert _as_number(text) == pytest.approx(value)
    other = Surface(s.x, None, {"train_loss": s.metrics["train_loss"] * 1.05}, attrs={"title": "other"})
    fig = compare_figure([s, other], log=True)
    _drawn(fig)
    ticks = _visible_tick_labels(fig.axes[0].yaxis)
    assert len(ticks) >= 3 and all(_as_number(t) == pytest.approx(v) for v, t in ticks), ticks


# --- (7) surface3d ---------------------------------------------------------------------------------


def test_surface3d_zmax_is_a_flat_cap_without_holes_following_the_true_rim(demo_like_file):
    s = load_surface(demo_like_file)
    zmax = 10.0
    x, y, z = drawn_grid(s, zmax=zmax)
    assert x.size >= 100 and y.size >= 100  # finer than the 25-point scan
    assert not np.isnan(z).any()  # the clipped walls are capped, not cut away
    assert np.nanmax(z) == zmax
    # The scan's own points keep their (clipped) values.
    step = (x.size - 1) // (GRID.size - 1)
    np.testing.assert_allclose(z[::step, ::step], np.minimum(s.metrics["train_loss"], zmax))
    # The cap's rim follows the true zmax contour: points at the cap are those the bowl puts above zmax,
    # up to the interpolation's error in a thin band along the rim.
    X, Y = np.meshgrid(x, y)
    capped, above = z >= zmax, demo_like_loss(X, Y) >= zmax
    assert capped.sum() > 0.1 * z.size
    assert np.mean(capped != above) < 0.01


def test_surface3d_keeps_holes_where_the_scan_has_them(holey_file):
    s = load_surface(holey_file)
    x, y, z = drawn_grid(s, zmax=2.0)
    step = (x.size - 1) // (s.x.size - 1)
    np.testing.assert_array_equal(np.isnan(z[::step, ::step]), ~s.valid("train_loss"))
    # A hole grows by less than one scan cell: every NaN lies in a cell with an invalid corner.
    bad = ~s.valid("train_loss")
    rows, cols = np.nonzero(np.isnan(z))
    j, i = np.minimum(rows // step, bad.shape[0] - 2), np.minimum(cols // step, bad.shape[1] - 2)
    assert (bad[j, i] | bad[j + 1, i] | bad[j, i + 1] | bad[j + 1, i + 1]).all()
    assert np.isnan(z).sum() < 4 * step**2 * bad.sum()


def test_surface3d_tick_labels_do_not_collide(demo_like_file):
    fig = surface3d_figure(load_surface(demo_like_file), zmax=10.0)
    _drawn(fig)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        lo, hi = sorted(axis.get_view_interval())
        labels = [t.label1 for t in axis.get_major_ticks() if t.label1.get_text() and lo <= t.get_loc() <= hi]
        assert 3 <= len(labels) <= 6, [t.get_text() for t in labels]
        boxes = [t.get_window_extent(renderer) for t in labels]
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                assert not boxes[a].overlaps(boxes[b]), (labels[a].get_text(), labels[b].get_text())


def test_help_texts_show_each_default_once_and_never_none(capsys):
    import argparse

    from analysis.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"contour", "plot1d", "surface3d", "render", "compare", "vtk"} <= set(sub.choices)
    for name in sub.choices:
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert "default: None" not in text and "default: False" not in text, name
        blocks = re.split(r"\n(?=  -)", text.split("options:", 1)[1])
        for block in blocks:
            assert len(re.findall(r"default", block, flags=re.IGNORECASE)) <= 1, (name, block)
    main(["render", "--help"])
    text = capsys.readouterr().out
    assert "[default: 1200x900]" in text and "[default: 150]" not in text  # render has no --dpi
    main(["contour", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[default: 150]" in text and "[default: auto]" in text and "0.1:10:0.5" in text
