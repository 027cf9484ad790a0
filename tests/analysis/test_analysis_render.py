"""Offscreen pyvista renders: the image is not blank and shows the surface the right way round."""

from __future__ import annotations

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest

from analysis.cli import main
from analysis.render import render_surface
from analysis.surface import load_surface

pytest.importorskip("pyvista")


def _surface_pixels(path):
    """(rgb, mask of surface pixels, bbox rows/cols) of a render on a white background."""
    rgb = mpimg.imread(str(path))[..., :3].astype(np.float64)
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    surface = np.where(hi > 0.05, (hi - lo) / np.maximum(hi, 1e-9), 0.0) > 0.3
    rows, cols = np.nonzero(surface)
    return rgb, surface, (rows.min(), rows.max(), cols.min(), cols.max())


def _colormap_index(rgb: np.ndarray, cmap: str) -> np.ndarray:
    """Nearest colormap entry (0-255) by chromaticity, which shading scales but does not change."""
    lut = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]

    def chroma(a):
        return a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-9)

    d = ((chroma(rgb)[:, None, :] - chroma(lut)[None, :, :]) ** 2).sum(axis=-1)
    return d.argmin(axis=1)


def test_top_view_shows_minimum_and_hole_where_they_are(holey_file, bowl_spec, tmp_path):
    s = load_surface(holey_file)
    path = render_surface(s, tmp_path / "top.png", view="top", window_size=(400, 300), scalar_bar=False, title=False)
    rgb, surface, (r0, r1, c0, c1) = _surface_pixels(path)
    rows, cols = np.nonzero(surface)

    def to_data(r, c):
        # Top view: +x to the right, +y up; the surface's bounding box spans the whole grid.
        return s.x[0] + (c - c0) / (c1 - c0) * np.ptp(s.x), s.y[-1] - (r - r0) / (r1 - r0) * np.ptp(s.y)

    def to_pixel(x, y):
        return int(round(r0 + (s.y[-1] - y) / np.ptp(s.y) * (r1 - r0))), int(round(c0 + (x - s.x[0]) / np.ptp(s.x) * (c1 - c0)))

    index = _colormap_index(rgb[surface], "viridis")
    low = index <= np.percentile(index, 3)
    x, y = to_data(rows[low].mean(), cols[low].mean())
    assert (x, y) == pytest.approx((bowl_spec.x_min, bowl_spec.y_min), abs=0.12)
    # The pending block sits at high y, low x: top-left in the image is background, top-right is surface.
    assert not surface[to_pixel(-0.95, 0.97)]
    assert surface[to_pixel(0.95, 0.97)]


def test_oblique_render_via_cli_is_not_blank(bowl_file, tmp_path, capsys, image_checks):
    colourful_fraction, pixel_std = image_checks
    rc = main(["render", str(bowl_file), "--out", str(tmp_path), "--contours", "6", "--size", "480x360", "--cmap", "coolwarm"])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"wrote: {tmp_path / 'bowl_train_loss_render.png'}"]
    png = tmp_path / "bowl_train_loss_render.png"
    assert mpimg.imread(str(png)).shape[:2] == (360, 480)
    assert colourful_fraction(png) > 0.1 and pixel_std(png) > 0.05


def test_render_of_a_1d_file_is_a_clear_error(line_file, capsys):
    assert main(["render", str(line_file)]) == 2
    assert "plot1d" in capsys.readouterr().err


def test_top_view_pixels_have_the_colour_bar_colours_and_axes(bowl_spec, tmp_path):
    # Three plateaus along x at 1, 2 and 3: unlit, the middle one must be exactly the colour bar's middle.
    x, y = np.linspace(-1.0, 1.0, 61), np.linspace(-0.6, 0.6, 37)
    X, _ = np.meshgrid(x, y)
    loss = np.where(X < -0.4, 1.0, np.where(X > 0.4, 3.0, 2.0))
    s = load_surface(bowl_spec.write(tmp_path / "steps.h5", x, y, {"train_loss": loss}))
    path = render_surface(s, tmp_path / "top.png", view="top", window_size=(480, 360), scalar_bar=False, title=False)
    rgb, surface, (r0, r1, c0, c1) = _surface_pixels(path)
    viridis = matplotlib.colormaps["viridis"]
    centre = rgb[(r0 + r1) // 2 - 3 : (r0 + r1) // 2 + 4, (c0 + c1) // 2 - 3 : (c0 + c1) // 2 + 4].reshape(-1, 3)
    np.testing.assert_allclose(centre, np.broadcast_to(viridis(0.5)[:3], centre.shape), atol=0.02)
    left = rgb[(r0 + r1) // 2, c0 + (c1 - c0) // 8]
    np.testing.assert_allclose(left, viridis(0.0)[:3], atol=0.02)
    # Axes: dark tick labels and titles left of and below the map, on the white background.
    dark = rgb.max(axis=-1) < 0.4
    assert dark[r0:r1, : max(c0 - 2, 0)].sum() > 30
    assert dark[r1 + 2 :, c0:c1].sum() > 30
