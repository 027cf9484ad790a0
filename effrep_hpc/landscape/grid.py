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
