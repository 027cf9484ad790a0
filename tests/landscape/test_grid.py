"""Progressive (coarse-to-fine) levels and order of a grid, checked against the definition built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from effrep_hpc.landscape.grid import (
    coarsest_level,
    finest_complete_level,
    grid_coarsest_level,
    level_points,
    point_levels,
    progressive_order,
    progressive_rank,
    progressive_tiles,
)


def axis_set(n: int, level: int) -> set[int]:
    """The definition: every 2**level-th index and the last one."""
    return set(range(0, n, 2**level)) | {n - 1}


@pytest.mark.parametrize("n, top", [(1, 0), (2, 0), (3, 0), (4, 0), (5, 1), (9, 2), (25, 3), (51, 4), (65, 5), (129, 6)])
def test_coarsest_level_is_the_last_with_three_evenly_spaced_points(n: int, top: int) -> None:
    assert coarsest_level(n) == top
    if n >= 3:  # 0, s and 2s on the axis (s = 2**top) without counting the appended last index; not so for 2s
        assert {0, 2**top, 2 ** (top + 1)} <= axis_set(n, top)
        assert 2 ** (top + 2) > n - 1


def test_levels_of_the_examples() -> None:
    assert np.flatnonzero(point_levels((65,)) >= 5).tolist() == [0, 32, 64]
    assert np.flatnonzero(point_levels((25,)) >= 3).tolist() == [0, 8, 16, 24]
    assert np.flatnonzero(point_levels((51,)) >= 4).tolist() == [0, 16, 32, 48, 50]
    # 65 x 65, level 3: every 8th point in x and y, 81 points (1.9%)
    eighth = np.zeros((65, 65), bool)
    eighth[::8, ::8] = True
    np.testing.assert_array_equal(level_points((65, 65), 3), np.flatnonzero(eighth))
    assert level_points((65, 65), 3).size == 81


@pytest.mark.parametrize("shape", [(65, 65), (13, 40), (51,), (7, 3), (1, 9), (2, 2), (129, 33)])
def test_level_point_sets_are_products_of_the_axis_sets(shape: tuple[int, ...]) -> None:
    top = grid_coarsest_level(shape)
    assert top == min(coarsest_level(n) for n in shape)
    for level in range(top + 1):
        axes = [sorted(axis_set(n, level)) for n in shape]
        want = np.zeros(shape, bool)
        want[np.ix_(*axes)] = True
        np.testing.assert_array_equal(level_points(shape, level), np.flatnonzero(want))
    with pytest.raises(ValueError, match="level must be"):
        level_points(shape, top + 1)


@pytest.mark.parametrize("shape", [(65, 65), (13, 40), (51,), (9, 17), (1, 1)])
def test_progressive_order_is_coarse_to_fine_and_raster_within_a_level(shape: tuple[int, ...]) -> None:
    order = progressive_order(shape)
    n = int(np.prod(shape))
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    np.testing.assert_array_equal(progressive_rank(shape)[order], np.arange(n))
    top = grid_coarsest_level(shape)
    # every prefix that ends where a level ends is exactly that level's point set, its new points in raster order
    seen = 0
    for level in range(top, -1, -1):
        points = level_points(shape, level)
        np.testing.assert_array_equal(np.sort(order[: points.size]), points)
        assert (np.diff(order[seen : points.size]) > 0).all()
        seen = points.size


def test_finest_complete_level() -> None:
    done = np.zeros((65, 65), bool)
    assert finest_complete_level(done) is None
    done[::32, ::32] = True
    assert finest_complete_level(done) == 5
    done[::8, ::8] = True
    done[1, 1] = True  # a stray finer point changes nothing
    assert finest_complete_level(done) == 3
    done[8, 0] = False
    assert finest_complete_level(done) == 4
    assert finest_complete_level(np.ones((65, 65), bool)) == 0
    line = np.zeros(51, bool)
    line[[0, 16, 32, 48, 50]] = True
    assert finest_complete_level(line) == 4


@pytest.mark.parametrize("shape, tile, workers, k", [((65, 65), 64, 1, 1), ((65, 65), 64, 3, 1), ((33, 47), 32, 2, 4), ((51,), 8, 2, 3)])
def test_progressive_tiles_cover_the_order_without_spanning_levels(shape: tuple[int, ...], tile: int, workers: int, k: int) -> None:
    tiles = progressive_tiles(shape, tile, workers, k)
    order = progressive_order(shape)
    np.testing.assert_array_equal(np.concatenate(tiles), order)
    levels = point_levels(shape)
    rank = progressive_rank(shape)
    top = grid_coarsest_level(shape)
    sizes_by_level: dict[int, list[int]] = {}
    for t in tiles:
        assert np.unique(levels[t]).size == 1, "a tile spans two levels"
        assert 1 <= t.size <= max(tile, k)
        sizes_by_level.setdefault(int(levels[t[0]]), []).append(t.size)
        # a tile starts at a multiple of k in the progressive order unless it starts a level
        start = rank[t[0]]
        assert start % k == 0 or start == 0 or levels[order[start - 1]] != levels[t[0]]
    # the coarsest level is shared out: several tiles, so every worker gets some
    coarse = level_points(shape, top).size
    assert len(sizes_by_level[top]) >= min(workers, -(-coarse // k))


def test_progressive_tiles_reject_bad_sizes() -> None:
    with pytest.raises(ValueError, match="tile must be"):
        progressive_tiles((9, 9), 0)
    with pytest.raises(ValueError, match="a grid shape"):
        progressive_tiles((9, 9, 9), 4)
