"""Previews of partial surfaces: the finest complete level of a coarse-to-fine scan, or an interpolation.

A scan computes its points coarse to fine (issue 15): every 2**L-th point along each axis first, then
the points that halve the spacing, down to the full grid. So a partial file usually holds a complete
coarse grid, and drawing that sub-grid shows the whole picture at a lower resolution instead of a
picture with holes. The level rule is the one the scheduler in effrep_hpc uses (docs: "Progressive
levels of a grid axis"); it is written again here because analysis never imports effrep_hpc:

- axis of n points, level L (step 2**L): indices ``sorted(set(range(0, n, 2**L)) | {n - 1})``, so
  every level spans the whole axis;
- coarsest level ``Lmax = max(0, floor(log2((n - 1) / 2)))`` (at least 3 points on its axis; n <= 2:
  0); a 2D grid uses the same L on both axes and ``Lmax = min(Lmax_x, Lmax_y)``;
- level L of a 2D grid is the product of the two axes' index sets; L = 0 is the whole grid;
- the finest complete level is the smallest L whose points are all done.

Modes (``--partial``), for a partial surface; a complete one is always drawn as it is:

- ``level``: the sub-grid of the finest complete level (an error when no level is complete yet);
- ``interpolate``: the full grid, every point not computed filled in from the computed ones (below),
  with the computed points marked;
- ``mask``: the full grid with the points not computed left out (what analysis always did);
- ``auto`` (the default): ``level`` when a level is complete, else ``mask``, saying so.

Interpolation is hierarchical and numpy-only: start from the finest complete level; for each finer
level, interpolate the coarser grid onto it (linear along x, then along y: bilinear, in coordinate
units) and put back the values computed at that level; the last level is the full grid. Every
computed point is used and keeps its exact value, and a bilinear function is reproduced exactly
everywhere. A computed value that is NaN or inf (a diverged model) leaves its interpolated
neighbours masked rather than guessing past it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from analysis.surface import Surface, SurfaceError

if TYPE_CHECKING:  # matplotlib loads only for the commands that draw
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PARTIAL_MODES = ("auto", "level", "interpolate", "mask")


def coarsest_level(n: int) -> int:
    """Lmax of an axis of ``n`` points: the coarsest level still has at least 3 points (0 for n <= 2)."""
    if n < 1:
        raise ValueError(f"an axis needs at least one point, got {n}")
    if n <= 2:
        return 0
    return max(0, int(np.floor(np.log2((n - 1) / 2))))


def grid_coarsest_level(shape: tuple[int, ...]) -> int:
    """Lmax of a 1D or 2D grid: the smallest of its axes' (both axes share one L)."""
    return min(coarsest_level(n) for n in shape)


def axis_indices(n: int, level: int) -> np.ndarray:
    """The indices of an axis of ``n`` points in level ``level``: every 2**level-th, and always the last."""
    if level < 0:
        raise ValueError(f"a level is >= 0, got {level}")
    return np.union1d(np.arange(0, n, 2**level), [n - 1]).astype(np.int64)


def point_levels(shape: tuple[int, ...]) -> np.ndarray:
    """For each grid point (shape ``(ny, nx)`` or ``(nx,)``), the coarsest level that contains it."""
    top = grid_coarsest_level(shape)
    per_axis = []
    for n in shape:
        levels = np.zeros(n, dtype=np.int64)
        for level in range(1, top + 1):
            levels[axis_indices(n, level)] = level
        per_axis.append(levels)
    if len(per_axis) == 1:
        return per_axis[0]
    return np.minimum.outer(per_axis[0], per_axis[1])


def level_sizes(shape: tuple[int, ...]) -> list[int]:
    """Number of points of each level 0..Lmax (level L holds every point of the coarser levels too)."""
    return [int(np.prod([axis_indices(n, level).size for n in shape])) for level in range(grid_coarsest_level(shape) + 1)]


def finest_complete_level(done: np.ndarray) -> int | None:
    """The smallest level whose points are all done (0: the whole grid), or None when not even the coarsest is."""
    done = np.asarray(done, dtype=bool)
    levels = point_levels(done.shape)
    for level in range(grid_coarsest_level(done.shape) + 1):
        if done[levels >= level].all():
            return level
    return None


def _grid_text(shape: tuple[int, ...]) -> str:
    return f"{shape[0]} points" if len(shape) == 1 else f"{shape[1]} x {shape[0]}"


@dataclass(frozen=True)
class Preview:
    """What a drawing of a partial surface shows: which mode, which level, how much of the grid is computed."""

    mode: str  # "level", "interpolate" or "mask" (auto resolved)
    done: int  # points computed in the whole grid
    total: int  # points of the whole grid
    grid: tuple[int, ...]  # shape of the whole grid
    level: int | None  # the level drawn ("level") or interpolated from ("interpolate"); None: none complete
    shape: tuple[int, ...]  # shape of what is drawn
    computed: np.ndarray | None = None  # "interpolate": which drawn points were computed (the others are filled in)

    @property
    def percent(self) -> str:
        """The computed fraction in percent, never shown as 100 before the last point."""
        pct = 100.0 * self.done / self.total
        if self.done < self.total:
            pct = min(pct, 99.9)
        return f"{pct:.1f}" if pct >= 0.1 or pct == 0 else f"{pct:.2g}"

    def describe(self) -> str:
        """One line for a title, e.g. "preview: 23.4% of 4225 points computed; 1/4 resolution (17 x 17)"."""
        head = f"preview: {self.percent}% of {self.total} points computed"
        if self.mode == "level" and self.level is not None:
            return f"{head}; 1/{2**self.level} resolution ({_grid_text(self.shape)})"
        if self.mode == "interpolate" and self.level is not None:
            return f"{head} (dots), the rest interpolated"
        return f"{head}; no complete level yet, computed points only"

    def summary(self) -> str:
        """The level and fraction for a printed line, e.g. "level 2: 1/4 resolution (17 x 17); 23.4% of 4225 points computed"."""
        tail = f"{self.percent}% of {self.total} points computed"
        if self.mode == "level" and self.level is not None:
            return f"level {self.level}: 1/{2**self.level} resolution ({_grid_text(self.shape)}); {tail}"
        if self.mode == "interpolate" and self.level is not None:
            return (
                f"full resolution ({_grid_text(self.shape)}) interpolated from the computed points, starting at "
                f"level {self.level} (1/{2**self.level} resolution); {tail}"
            )
        top = grid_coarsest_level(self.grid)
        return f"no complete level (level {top} needs {level_sizes(self.grid)[top]} points); computed points only; {tail}"


def no_level_message(surface: Surface) -> str:
    """One line saying that no level is complete, how much is computed and what the coarsest level needs."""
    done = surface.done_mask
    top = grid_coarsest_level(done.shape)
    levels = point_levels(done.shape)
    needed = int((levels >= top).sum())
    missing = int((~done[levels >= top]).sum())
    return (
        f"{surface.describe()}: no level of the grid is complete yet ({int(done.sum())} of {done.size} points "
        f"computed; the coarsest level, 1/{2**top} resolution, has {needed} points and misses {missing}); "
        "draw the computed points with --partial mask"
    )


def _sub(surface: Surface, index: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """Coordinates of a sub-grid given by one index array per axis (in shape order: y, x)."""
    if surface.y is None:
        return surface.x[index[0]], None
    return surface.x[index[1]], surface.y[index[0]]


def level_surface(surface: Surface, level: int) -> Surface:
    """The sub-grid of ``level`` (its coordinates, values and done mask), with a `Preview` saying what it is."""
    done = surface.done_mask
    index = tuple(axis_indices(n, level) for n in done.shape)
    grid = np.ix_(*index)
    x, y = _sub(surface, index)
    metrics = {name: values[grid] for name, values in surface.metrics.items()}
    sub = Surface(x, y, metrics, done[grid], surface.attrs, surface.path)
    sub.preview = Preview("level", int(done.sum()), done.size, done.shape, level, sub.shape)
    return sub


def _positions(coords: np.ndarray) -> np.ndarray:
    """Coordinates to interpolate in: the axis's own when strictly monotone (flipped to increase), else indices."""
    steps = np.diff(coords)
    if np.all(steps > 0):
        return coords
    if np.all(steps < 0):
        return -coords
    return np.arange(coords.size, dtype=np.float64)


def _refine(values: np.ndarray, source: np.ndarray, target: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``values`` along ``axis`` from positions ``source`` to ``target`` (both increasing, same span).

    A target that coincides with a source position takes its value exactly (also NaN or inf there);
    between two sources, a non-finite one makes the result NaN or inf, which the drawing masks.
    """
    right = np.clip(np.searchsorted(source, target, side="right"), 1, source.size - 1) if source.size > 1 else None
    moved = np.moveaxis(values, axis, -1)
    if right is None:
        out = np.repeat(moved, target.size, axis=-1)
    else:
        left = right - 1
        w = (target - source[left]) / (source[right] - source[left])
        a, b = moved[..., left], moved[..., right]
        exact_left, exact_right = target == source[left], target == source[right]
        with np.errstate(invalid="ignore"):
            out = a + (b - a) * w
        out = np.where(exact_left, a, np.where(exact_right, b, out))
    return np.moveaxis(out, -1, axis)


def interpolated_surface(surface: Surface, level: int) -> Surface:
    """The full grid with every point not computed filled in from the computed ones, starting at complete ``level``."""
    done = surface.done_mask
    positions = [_positions(surface.x)] if surface.y is None else [_positions(surface.y), _positions(surface.x)]
    metrics = {}
    for name, values in surface.metrics.items():
        index = [axis_indices(n, level) for n in done.shape]
        current = values[np.ix_(*index)].copy()
        for finer in range(level - 1, -1, -1):
            new = [axis_indices(n, finer) for n in done.shape]
            for axis in range(done.ndim):
                current = _refine(current, positions[axis][index[axis]], positions[axis][new[axis]], axis)
            grid = np.ix_(*new)
            computed = done[grid]
            current[computed] = values[grid][computed]
            index = new
        metrics[name] = current
    out = Surface(surface.x, surface.y, metrics, np.ones_like(done), surface.attrs, surface.path)
    out.preview = Preview("interpolate", int(done.sum()), done.size, done.shape, level, out.shape, done.copy())
    return out


def partial_view(surface: Surface, mode: str = "auto") -> Surface:
    """What to draw of ``surface`` under ``--partial mode`` (see the module docstring); a complete surface as it is."""
    if mode not in PARTIAL_MODES:
        raise SurfaceError(f"--partial {mode!r}: choose from {', '.join(PARTIAL_MODES)}")
    done = surface.done_mask
    if done.all() or mode == "mask":
        return surface
    level = finest_complete_level(done)
    if level is None:
        if mode != "auto":
            raise SurfaceError(no_level_message(surface))
        view = replace(surface)
        view.preview = Preview("mask", int(done.sum()), done.size, done.shape, None, surface.shape)
        return view
    if mode == "interpolate":
        return interpolated_surface(surface, level)
    return level_surface(surface, level)


def preview_title(surface: Surface) -> str:
    """The preview line of a drawn partial surface ("" for a complete one or --partial mask)."""
    return surface.preview.describe() if surface.preview is not None else ""


def computed_points(surface: Surface) -> np.ndarray | None:
    """Interpolated views: the bool mask of points that were computed (to mark them); else None."""
    return surface.preview.computed if surface.preview is not None else None


def mark_computed(ax: Axes, surface: Surface) -> None:
    """On an interpolated view, a small dot at every computed point (the rest of the picture is filled in)."""
    computed = computed_points(surface)
    if computed is None or surface.y is None:
        return
    X, Y = np.meshgrid(surface.x, surface.y)
    # Small enough that a dense corner still shows the colours under it.
    size = float(np.clip(120.0 / max(surface.shape), 0.8, 3.0))
    ax.plot(X[computed], Y[computed], linestyle="none", marker=".", markersize=size, color="black", alpha=0.6)


def summary_line(view: Surface) -> str:
    """What a drawn view shows, for a printed line: the level and fraction (see `Preview.summary`)."""
    if view.preview is not None:
        return view.preview.summary()
    done = view.done_mask
    if done.all():
        return f"level 0: full resolution ({_grid_text(done.shape)}); complete"
    return f"computed points only (--partial mask); {100.0 * done.sum() / done.size:.1f}% of {done.size} points computed"


def preview_figure(view: Surface, metric: str = "train_loss") -> Figure:
    """One figure of a (partial) view: filled contours of a 2D surface, the curves of a 1D one; the title says what it shows."""
    if view.y is not None:
        from analysis.contour import contour_figure

        return contour_figure(view, metric, kind="contourf")
    from analysis.plot1d import plot1d_figure

    fig = plot1d_figure(view)
    if preview_title(view):
        ax = fig.axes[0]
        ax.set_title(f"{ax.get_title()}\n{preview_title(view)}", fontsize=10)
    return fig
