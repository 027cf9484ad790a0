"""The optimizer's path over the loss contours of its PCA plane (Li et al., NeurIPS 2018, figs. 9 and 10).

`effrep trajectory` scans the plane of the first two principal directions of a training run's path and
stores the projected path in the surface file's `trajectory/` group (docs/surface-format.md): per
snapshot its epoch, least-squares coordinates (x, y) on the two directions, the residual (how far the
snapshot lies off the plane) and the distance from the centre, plus the explained variance ratios.

- The figure draws the scan's contours with the same levels and colours as `contour` (the paper's
  0.1:10:0.5 on a loss that spans them), the path on top: a line through every snapshot, a marker every
  K epochs (K chosen so that at most `MOST_MARKERS` show), the first and last snapshot labelled with
  their epochs, and the axes labelled with the explained variance, "1st PC: 62.3 %", as the paper.
- Off the plane: a projected path can look close to the minimum while the weights are far from the
  plane. The title gives the largest residual as a fraction of the path's largest distance from the
  centre, ``max(residual) / max(distance)``: 0 for a path lying in the plane, up to 1 for one orthogonal
  to it. (Per snapshot, ``residual / distance`` is dominated by the last snapshots, whose distance from
  a final-epoch reference goes to 0, so it says little about the path as a whole.)
- Outside the scan: the scan range is chosen to cover the path, but an imported or overridden range need
  not. The axes stay those of the scan (the contours are what was computed), the path is clipped to them,
  and the title says how many snapshots fall outside.

This module reads only numpy and h5py at import; matplotlib loads when a figure is drawn, so
`analysis.vtkexport` can use the path and the interpolation without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from analysis.surface import Surface, SurfaceError, open_h5, read_attrs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import QuadMesh
    from matplotlib.colors import Normalize
    from matplotlib.contour import QuadContourSet
    from matplotlib.figure import Figure

    from analysis.common import Levels

GROUP = "trajectory"
DATASETS = ("epoch", "x", "y", "residual", "distance")
MOST_MARKERS = 15  # the automatic marker spacing shows at most this many markers
PATH_COLOUR = "tab:red"  # no colormap of the contour lines (viridis) has it, so the path stands out
ORDINALS = ("1st", "2nd", "3rd")


@dataclass
class Trajectory:
    """The projected optimizer path of a surface file: one entry per snapshot, epochs ascending."""

    epoch: np.ndarray
    x: np.ndarray
    y: np.ndarray
    residual: np.ndarray
    distance: np.ndarray
    explained_variance_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def size(self) -> int:
        """Number of snapshots."""
        return int(self.epoch.size)

    def axis_labels(self, surface: Surface) -> tuple[str, str]:
        """'1st PC: 62.3 %' and '2nd PC: 21.0 %' from the explained variance ratios, else the surface's labels."""
        ratio = self.explained_variance_ratio
        labels = [surface.xlabel, surface.ylabel]
        for k in range(2):
            if ratio.size > k and np.isfinite(ratio[k]):
                labels[k] = f"{ORDINALS[k]} PC: {100.0 * ratio[k]:.1f} %"
        return labels[0], labels[1]

    def largest_residual(self) -> tuple[float, int] | None:
        """(largest residual / largest distance, the index of the snapshot furthest off the plane), or None
        when every distance is 0 (or not finite)."""
        reach = float(np.max(self.distance)) if np.isfinite(self.distance).all() else np.nan
        if not reach > 0 or not np.isfinite(self.residual).all():
            return None
        k = int(np.argmax(self.residual))
        return float(self.residual[k]) / reach, k

    def outside(self, surface: Surface) -> np.ndarray:
        """Bool per snapshot: its (x, y) lies outside the scanned range of `surface`."""
        y = surface.require_2d("trajectory")
        return (self.x < surface.x.min()) | (self.x > surface.x.max()) | (self.y < y.min()) | (self.y > y.max())


def has_trajectory(path: str | Path) -> bool:
    """Whether the HDF5 file at `path` holds a `trajectory/` group."""
    with open_h5(path) as f:
        return isinstance(f.get(GROUP), h5py.Group)


def load_trajectory(path: str | Path) -> Trajectory:
    """Read the `trajectory/` group of a surface file; a SurfaceError names what is missing or inconsistent."""
    path = Path(path)
    with open_h5(path) as f:
        group = f.get(GROUP)
        if not isinstance(group, h5py.Group):
            raise SurfaceError(f"{path} has no {GROUP}/ group: make it with `effrep trajectory`")
        missing = [name for name in DATASETS if not isinstance(group.get(name), h5py.Dataset)]
        if missing:
            raise SurfaceError(f"{path}: {GROUP}/ lacks the datasets {', '.join(missing)} (docs/surface-format.md)")
        arrays = {name: np.asarray(group[name][()]) for name in DATASETS}
        attrs = read_attrs(group)
        source = str(read_attrs(f).get("directions_source", ""))
    sizes = {name: a.shape for name, a in arrays.items()}
    n = arrays["epoch"].size
    if any(shape != (n,) for shape in sizes.values()) or n == 0:
        raise SurfaceError(f"{path}: {GROUP}/ datasets must be 1D of one non-zero length, found {sizes}")
    epoch = arrays["epoch"].astype(np.int64)
    if np.any(np.diff(epoch) <= 0):
        raise SurfaceError(f"{path}: {GROUP}/epoch must be strictly ascending, found {epoch.tolist()}")
    ratio = np.atleast_1d(np.asarray(attrs.get("explained_variance_ratio", []), dtype=np.float64))
    floats = {name: arrays[name].astype(np.float64) for name in DATASETS[1:]}
    return Trajectory(epoch=epoch, **floats, explained_variance_ratio=ratio, attrs=attrs, source=source)


def marker_every(epoch: np.ndarray, most: int = MOST_MARKERS) -> int:
    """The smallest round K (a multiple of the snapshots' epoch spacing) that marks at most `most` snapshots.

    Round: 1, 2, 3, 4, 5, then 10, 15, 20, 25, 30, 40, 50, 75 times a power of ten, so between about
    two thirds of `most` and `most` markers show (10-15 by default) once the path has that many snapshots.
    """
    epoch = np.asarray(epoch, dtype=np.int64)
    step = int(np.gcd.reduce(np.diff(epoch))) if epoch.size > 1 else 1
    for decade in 10 ** np.arange(12):
        for m in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5):
            if (m * decade) % 1:
                continue
            every = step * int(m * decade)
            if int(marked(epoch, every).sum()) <= most:
                return every
    return max(step, int(epoch[-1] - epoch[0]) or 1)


def marked(epoch: np.ndarray, every: int) -> np.ndarray:
    """Bool per snapshot: its epoch is a multiple of `every` (the marker positions)."""
    if every < 1:
        raise SurfaceError(f"--every {every}: give a number of epochs >= 1")
    return np.asarray(epoch) % every == 0


def interpolate_height(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, px: np.ndarray, py: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(height, exact): z[j, i] at (x[i], y[j]) interpolated bilinearly at the points (px, py).

    `exact` is True where the point lies inside the grid and every corner it is interpolated from (with a
    non-zero weight) is finite. Elsewhere a height is still given, so a path can be drawn whole: outside the
    grid that of the nearest point on its edge; with invalid corners the weighted mean of the valid ones,
    or the nearest valid grid point's when none is.
    """
    x, y, z = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(z, np.float64)
    if np.any(np.diff(x) <= 0) or np.any(np.diff(y) <= 0):
        raise SurfaceError("the path's height needs increasing x and y coordinates")
    px, py = np.asarray(px, np.float64), np.asarray(py, np.float64)
    inside = (px >= x[0]) & (px <= x[-1]) & (py >= y[0]) & (py <= y[-1])

    def cell(c: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if c.size == 1:
            return np.zeros(p.shape, dtype=np.int64), np.zeros(p.shape)
        p = np.clip(p, c[0], c[-1])
        k = np.clip(np.searchsorted(c, p, side="right") - 1, 0, c.size - 2)
        return k, (p - c[k]) / (c[k + 1] - c[k])

    i, tx = cell(x, px)
    j, ty = cell(y, py)
    zp = np.pad(z, ((0, 1 if y.size == 1 else 0), (0, 1 if x.size == 1 else 0)), mode="edge")
    total, weight = np.zeros(px.shape), np.zeros(px.shape)
    complete = np.ones(px.shape, dtype=bool)
    for dj, wy in ((0, 1.0 - ty), (1, ty)):
        for di, wx in ((0, 1.0 - tx), (1, tx)):
            w = wy * wx
            corner = zp[j + dj, i + di]
            ok = np.isfinite(corner)
            complete &= ok | (w == 0)
            total += np.where(ok & (w > 0), w * np.where(ok, corner, 0.0), 0.0)
            weight += np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        height = np.where(weight > 0, total / weight, np.nan)
    lost = ~np.isfinite(height)
    if lost.any():
        valid = np.isfinite(z)
        if not valid.any():
            raise SurfaceError("the surface has no valid point to put the path on")
        X, Y = np.meshgrid(x, y)
        gx, gy, gz = X[valid], Y[valid], z[valid]
        nearest = np.argmin((px[lost, None] - gx) ** 2 + (py[lost, None] - gy) ** 2, axis=1)
        height[lost] = gz[nearest]
    return height, inside & complete


def percent(value: float) -> str:
    """A fraction as a percentage with one decimal: 0.6234 -> '62.3 %'."""
    return f"{100.0 * value:.1f} %"


def describe(trajectory: Trajectory, surface: Surface | None = None) -> str:
    """One line for the CLI: explained variance of the plane, the largest residual, snapshots outside the scan."""
    ratio = trajectory.explained_variance_ratio
    parts = [f"trajectory: {trajectory.size} snapshots, epochs {trajectory.epoch[0]}-{trajectory.epoch[-1]}"]
    if ratio.size >= 2 and np.isfinite(ratio[:2]).all():
        parts.append(f"explained variance: 1st PC {percent(ratio[0])}, 2nd PC {percent(ratio[1])} "
                     f"(together {percent(float(ratio[:2].sum()))})")
    largest = trajectory.largest_residual()
    if largest is not None:
        parts.append(f"largest residual off the plane {percent(largest[0])} of the largest distance "
                     f"(epoch {trajectory.epoch[largest[1]]})")
    if surface is not None:
        out = int(trajectory.outside(surface).sum())
        if out:
            parts.append(f"{out} outside the scanned range")
    return "; ".join(parts)


def title_lines(trajectory: Trajectory, surface: Surface) -> list[str]:
    """The figure title's notes: how far the path leaves the plane, and how many snapshots lie outside the scan."""
    lines = []
    largest = trajectory.largest_residual()
    if largest is not None:
        lines.append(f"largest residual off the plane: {percent(largest[0])} of the path's largest "
                     f"distance from the centre (epoch {trajectory.epoch[largest[1]]})")
    out = int(trajectory.outside(surface).sum())
    if out:
        lines.append(f"{out} of {trajectory.size} snapshots outside the scanned range (cut off at its edge)")
    return lines


def trajectory_figure(
    surface: Surface,
    trajectory: Trajectory,
    metric: str = "train_loss",
    *,
    kind: str = "contour",
    levels: Levels = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    log: bool = False,
    cmap: str = "viridis",
    every: int | None = None,
) -> Figure:
    """Contours of `metric` over the PCA plane with the projected path: markers every `every` epochs, ends labelled."""
    from analysis.common import masked_note, new_figure, resolve_levels
    from analysis.contour import add_colorbar

    lv, norm = resolve_levels([surface], metric, levels, vmin=vmin, vmax=vmax, log=log)
    surface.require_2d("trajectory")
    fig = new_figure(6.4, 5.4)
    ax = fig.add_subplot()
    artist = draw_trajectory(ax, surface, trajectory, metric, kind=kind, norm=norm, levels=lv, log=log, cmap=cmap,
                             every=every)
    add_colorbar(fig, artist, ax, norm, label=metric + (" (log scale)" if log else ""))
    notes = title_lines(trajectory, surface)
    masked = masked_note(surface, metric, log=log)
    if masked:
        notes.append(masked)
    title = f"{surface.name}: {metric} on the plane of the path's first two principal components"
    ax.set_title("\n".join([title, *notes]), fontsize=8)
    return fig


def draw_trajectory(
    ax: Axes,
    surface: Surface,
    trajectory: Trajectory,
    metric: str,
    *,
    kind: str,
    norm: Normalize,
    levels: np.ndarray,
    log: bool = False,
    cmap: str = "viridis",
    every: int | None = None,
) -> QuadMesh | QuadContourSet:
    """Draw the contours (with the given colour scale and levels) and the path onto `ax`; returns the contours' mappable."""
    from analysis.contour import draw

    every = marker_every(trajectory.epoch) if every is None else every
    dots = marked(trajectory.epoch, every)
    artist = draw(ax, surface, metric, kind=kind, norm=norm, levels=levels, log=log, cmap=cmap)
    # As the paper: a square panel whatever the axes' ranges. The first component usually spans several
    # times the second, so equal scales would flatten the panel to a strip.
    ax.set_aspect("auto")
    ax.set_box_aspect(1.0)
    xlabel, ylabel = trajectory.axis_labels(surface)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)

    # The axes keep the scan's range (draw set it): the path is clipped there, the title counts what is cut.
    t = trajectory
    ax.plot(t.x, t.y, "-", color=PATH_COLOUR, linewidth=1.6, zorder=3, gid="trajectory-path", label="_path")
    ax.plot(t.x[dots], t.y[dots], "o", color=PATH_COLOUR, markersize=5, markeredgecolor="white",
            markeredgewidth=0.7, zorder=4, gid="trajectory-markers", label=f"every {every} epochs")
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for word, k, marker in (("start", 0, "s"), ("end", t.size - 1, "*")):
        if word == "end" and t.size == 1:
            break
        ax.plot([t.x[k]], [t.y[k]], marker, color=PATH_COLOUR, markersize=9 if marker == "*" else 6,
                markeredgecolor="black", markeredgewidth=0.7, zorder=5, gid=f"trajectory-{word}", label="_" + word)
        # the label goes towards the inside of the panel, so it is not cut at the border
        right, top = t.x[k] > (x0 + x1) / 2, t.y[k] > (y0 + y1) / 2
        # annotation_clip: a label whose point is outside the axes is not drawn (the title says it is outside).
        ax.annotate(f"epoch {t.epoch[k]} ({word})", (t.x[k], t.y[k]), xytext=(-8 if right else 8, -12 if top else 8),
                    textcoords="offset points", ha="right" if right else "left", va="top" if top else "bottom",
                    fontsize=8, zorder=6, gid=f"trajectory-{word}-label", annotation_clip=True,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    # below the panel, where it covers neither the contours nor the path
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7, frameon=False)
    return artist
