"""Grid axes, the points of a 1D/2D surface, and tiles of pending points (the surface-file layout).

A 2D surface has shape ``(len(y), len(x))`` and element ``[j, i]`` is the point ``(a, b) = (x[i], y[j])``.
Points are numbered in C order of that array (flat index ``j * len(x) + i``), which is the order of
``grid_points``, of ``done.ravel()`` in a surface file, and the ``point_ids`` that ``evaluate_points``
uses to place a point in a fixed slot of its pass.
"""

from __future__ import annotations

import math

import numpy as np


def make_axis(lo: float, hi: float, num: int) -> np.ndarray:
    """``num`` evenly spaced step sizes from ``lo`` to ``hi`` inclusive (``numpy.linspace``; num=1 gives [lo])."""
    if isinstance(num, bool) or int(num) != num:
        raise ValueError(f"the number of points must be an integer (got {num!r})")
    num = int(num)
    lo, hi = float(lo), float(hi)
    if num < 1:
        raise ValueError(f"the grid is empty: the number of points must be >= 1 (got {num})")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"axis bounds must be finite (got lo={lo}, hi={hi})")
    if lo > hi:
        raise ValueError(f"axis bounds must satisfy lo <= hi (got lo={lo}, hi={hi})")
    return np.linspace(lo, hi, num, dtype=np.float64)


def parse_axis(spec: str) -> np.ndarray:
    """Parse ``"lo:hi:num"`` (e.g. ``"-1:1:51"``) into an axis; raise ValueError on a malformed spec."""
    parts = str(spec).split(":")
    if len(parts) != 3:
        raise ValueError(f"expected an axis as lo:hi:num such as -1:1:51 (got {spec!r})")
    try:
        lo, hi = float(parts[0]), float(parts[1])
        num = int(parts[2])
    except ValueError:
        raise ValueError(f"expected numbers in lo:hi:num such as -1:1:51 (got {spec!r})") from None
    return make_axis(lo, hi, num)


def grid_shape(x: np.ndarray, y: np.ndarray | None = None) -> tuple[int, ...]:
    """The shape of the surface datasets: ``(len(x),)`` in 1D, ``(len(y), len(x))`` in 2D."""
    return (len(x),) if y is None else (len(y), len(x))


def grid_points(x: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every point of the surface in C order: ``(indices, coords)``.

    2D: ``indices[p] = (j, i)`` and ``coords[p] = (x[i], y[j])``, shapes (P, 2); 1D: ``indices[p] = (i,)``
    and ``coords[p] = (x[i],)``, shapes (P, 1). Row p is the flat index p of ``done.ravel()``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0 or (y is not None and np.asarray(y).size == 0):
        raise ValueError("the grid is empty: every axis needs at least one point")
    if y is None:
        idx = np.arange(x.size, dtype=np.int64)[:, None]
        return idx, x[:, None].copy()
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    jj, ii = np.meshgrid(np.arange(y.size), np.arange(x.size), indexing="ij")
    indices = np.stack([jj.ravel(), ii.ravel()], axis=1).astype(np.int64)
    coords = np.stack([x[indices[:, 1]], y[indices[:, 0]]], axis=1)
    return indices, coords


def make_tiles(pending_indices: np.ndarray, tile_size: int) -> list[np.ndarray]:
    """Split pending points (flat indices (P,) or index rows (P, d)) into consecutive tiles of <= tile_size."""
    if isinstance(tile_size, bool) or int(tile_size) != tile_size or tile_size < 1:
        raise ValueError(f"tile_size must be an integer >= 1 (got {tile_size!r})")
    pending = np.asarray(pending_indices)
    tile_size = int(tile_size)
    return [pending[s : s + tile_size] for s in range(0, len(pending), tile_size)]


# Progressive (coarse-to-fine) order. Level L of an axis of n points holds the indices 0, s, 2s, ... (s = 2**L)
# and always the last one, n - 1, so every level spans the whole extent. The coarsest level is the largest L
# whose axis still has at least 3 points; a 2D grid uses the smaller of its two axes' coarsest levels, and
# level L of the grid is the product of its axes' level-L indices. A point belongs to the coarsest level
# that contains it. Progressive order: the points of the coarsest level, then those new at each finer level,
# raster order within each; so any prefix of it that ends at a level's end holds a complete grid of
# spacing 2**L (e.g. on 65 x 65 points, level 3 = every 8th point in x and y = 81 points, 1.9%).


def coarsest_level(n: int) -> int:
    """The coarsest level of an axis of ``n`` points: ``max(0, floor(log2((n - 1) / 2)))`` (0 for n <= 2)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"an axis needs an integer number of points >= 1 (got {n!r})")
    return max(0, (int(n) - 1).bit_length() - 2)  # floor(log2(m)) = m.bit_length() - 1


def _shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 2) or min(shape) < 1:
        raise ValueError(f"a grid shape is (nx,) or (ny, nx) with every axis >= 1 point (got {shape})")
    return shape


def grid_coarsest_level(shape: tuple[int, ...]) -> int:
    """The coarsest level of a grid of ``shape`` ((nx,) or (ny, nx)): the smallest of its axes' coarsest levels."""
    return min(coarsest_level(n) for n in _shape(shape))


def axis_levels(n: int, top: int) -> np.ndarray:
    """The level of each index of an axis of ``n`` points with levels 0..``top``: the largest L <= top holding it."""
    i = np.arange(n)
    levels = np.zeros(n, dtype=np.int64)
    for level in range(1, top + 1):
        levels[(i % (1 << level) == 0) | (i == n - 1)] = level
    return levels


def point_levels(shape: tuple[int, ...]) -> np.ndarray:
    """The level of every point of the grid, by flat index (C order of ``shape``)."""
    shape = _shape(shape)
    top = grid_coarsest_level(shape)
    if len(shape) == 1:
        return axis_levels(shape[0], top)
    ly, lx = (axis_levels(n, top) for n in shape)
    return np.minimum(ly[:, None], lx[None, :]).reshape(-1)


def level_points(shape: tuple[int, ...], level: int) -> np.ndarray:
    """Flat indices (ascending) of the points of ``level``: every ``2**level``-th index per axis, and each axis's last."""
    top = grid_coarsest_level(shape)
    if isinstance(level, bool) or int(level) != level or not 0 <= level <= top:
        raise ValueError(f"level must be an integer in 0..{top} for a grid of shape {tuple(shape)} (got {level!r})")
    return np.flatnonzero(point_levels(shape) >= level)


def progressive_order(shape: tuple[int, ...]) -> np.ndarray:
    """Every flat index of the grid, coarsest level first, then the points new at each finer level (raster within)."""
    return np.argsort(-point_levels(shape), kind="stable")


def progressive_rank(shape: tuple[int, ...]) -> np.ndarray:
    """The position of each flat index in :func:`progressive_order` (its inverse permutation)."""
    order = progressive_order(shape)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank


def finest_complete_level(done: np.ndarray) -> int | None:
    """The smallest level whose points are all done in the mask ``done`` (shape (nx,) or (ny, nx)); None if none is."""
    done = np.asarray(done, dtype=bool)
    levels = point_levels(done.shape)
    missing = levels[~done.reshape(-1)]
    top = grid_coarsest_level(done.shape)
    # a level is complete when no point of it (level >= L) is missing
    finest = (int(missing.max()) + 1) if missing.size else 0
    return finest if finest <= top else None


def progressive_tiles(shape: tuple[int, ...], tile: int, workers: int = 1, k: int = 1, per_worker: int = 4) -> list[np.ndarray]:
    """Tiles of flat indices in progressive order, none spanning two levels, for ``workers`` processes.

    A level's new points are cut into tiles of at most ``tile`` points, fewer where the level is small, so
    that it splits into about ``per_worker`` tiles per worker: a coarse level is shared by all workers and
    finishes before the next one starts (as far as the queue hands tiles out in order). Cuts fall at
    multiples of ``k`` positions of the progressive order (the tile size is rounded up to a multiple of
    ``k``), so that with points placed in pass slots by their progressive rank (see runners.landscape) every
    pass of ``k`` points is full except at a level's ends.
    """
    for name, value in (("tile", tile), ("workers", workers), ("k", k), ("per_worker", per_worker)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1 (got {value!r})")
    order = progressive_order(shape)
    levels = point_levels(shape)[order]
    # level boundaries in the progressive order: levels are descending there
    bounds = np.flatnonzero(np.diff(levels)) + 1
    tiles: list[np.ndarray] = []
    for start, stop in zip([0, *bounds.tolist()], [*bounds.tolist(), order.size]):
        size = min(int(tile), -(-(stop - start) // (int(per_worker) * int(workers))))
        size = max(k, -(-size // k) * k)
        cuts = [start, *range(start + (-start) % k, stop, size), stop]
        tiles.extend(order[a:b] for a, b in zip(cuts, cuts[1:]) if b > a)
    return tiles
