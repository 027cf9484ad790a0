"""Grid axes, point layout ([j, i] = (y[j], x[i])) and tiles."""

from __future__ import annotations

import numpy as np
import pytest

from effrep_hpc.landscape.grid import grid_points, grid_shape, make_axis, make_tiles, parse_axis


def test_make_axis_is_inclusive_and_evenly_spaced():
    np.testing.assert_allclose(make_axis(-1, 1, 5), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_array_equal(make_axis(0, 0, 1), [0.0])
    np.testing.assert_array_equal(make_axis(0, 2, 3), [0.0, 1.0, 2.0])
    assert make_axis(-1, 1, 3).dtype == np.float64


@pytest.mark.parametrize(
    "lo,hi,num,match",
    [(0, 1, 0, "empty"), (1, -1, 5, "lo <= hi"), (0, 1, 2.5, "integer"), (0, float("inf"), 3, "finite")],
)
def test_make_axis_rejects_bad_input(lo, hi, num, match):
    with pytest.raises(ValueError, match=match):
        make_axis(lo, hi, num)


def test_parse_axis():
    np.testing.assert_allclose(parse_axis("-0.5:1.5:5"), [-0.5, 0, 0.5, 1, 1.5])
    for bad in ("-1:1", "a:1:3", "-1:1:x", "-1:1:0"):
        with pytest.raises(ValueError, match="lo:hi:num|empty"):
            parse_axis(bad)


def test_grid_points_follow_the_surface_layout():
    x, y = make_axis(-1, 1, 4), make_axis(0, 2, 3)
    indices, coords = grid_points(x, y)
    assert indices.shape == coords.shape == (12, 2)
    assert grid_shape(x, y) == (3, 4)
    # Element [j, i] of a surface is (x[i], y[j]) and flat index p = j * nx + i.
    surface = (coords[:, 0] * 10 + coords[:, 1]).reshape(grid_shape(x, y))
    for j in range(3):
        for i in range(4):
            assert surface[j, i] == x[i] * 10 + y[j]
            p = j * 4 + i
            assert tuple(indices[p]) == (j, i)
            assert tuple(coords[p]) == (x[i], y[j])


def test_grid_points_1d():
    x = make_axis(-1, 1, 5)
    indices, coords = grid_points(x)
    assert indices.shape == coords.shape == (5, 1)
    np.testing.assert_array_equal(coords[:, 0], x)
    np.testing.assert_array_equal(indices[:, 0], np.arange(5))
    with pytest.raises(ValueError, match="empty"):
        grid_points(np.zeros(0))


def test_make_tiles_cover_pending_points_in_order():
    pending = np.array([0, 1, 5, 6, 7, 9, 12])
    tiles = make_tiles(pending, 3)
    assert [len(t) for t in tiles] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(tiles), pending)
    rows = make_tiles(np.arange(10).reshape(5, 2), 2)
    assert [t.shape for t in rows] == [(2, 2), (2, 2), (1, 2)]
    assert make_tiles(np.zeros(0, dtype=int), 4) == []
    with pytest.raises(ValueError, match="tile_size"):
        make_tiles(pending, 0)
