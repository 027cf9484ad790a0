"""Helpers shared by the figure commands: colour scales, contour levels, output names, saving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure

from analysis.surface import Surface, SurfaceError

IMAGE_FORMATS = ("png", "pdf", "svg")


def parse_levels(text: str) -> int | list[float]:
    """Parse `--levels`: a count ("20") or an explicit comma-separated list ("0.1,0.5,1,5")."""
    text = text.strip()
    try:
        if "," not in text:
            count = int(text)
            if count < 2:
                raise SurfaceError(f"--levels {text}: a level count must be at least 2")
            return count
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SurfaceError(f"--levels {text!r}: give a count (e.g. 20) or a comma-separated list (e.g. 0.1,0.5,1)") from None
    if not values or any(b <= a for a, b in zip(values, values[1:])):
        raise SurfaceError(f"--levels {text!r}: explicit levels must be strictly increasing")
    return values


def color_norm(
    surfaces: Sequence[Surface], metric: str, *, vmin: float | None = None, vmax: float | None = None, log: bool = False
) -> Normalize:
    """One colour scale over the valid (computed, finite) points of all `surfaces`; NaN/inf never widen it."""
    ranges = [s.value_range(metric, log=log) for s in surfaces]
    lo = min(r[0] for r in ranges) if vmin is None else float(vmin)
    hi = max(r[1] for r in ranges) if vmax is None else float(vmax)
    if log and lo <= 0:
        raise SurfaceError(f"--vmin {lo:g}: a log colour scale needs vmin > 0")
    if hi < lo:
        raise SurfaceError(f"colour range is empty: vmin {lo:g} > vmax {hi:g}")
    if hi == lo:
        # A flat surface still needs a non-degenerate scale to draw.
        pad = abs(lo) * 0.01 if lo else 1.0
        lo, hi = (lo / 1.1, hi * 1.1) if log else (lo - pad, hi + pad)
    return LogNorm(lo, hi) if log else Normalize(lo, hi)


def make_levels(norm: Normalize, levels: int | Sequence[float], *, log: bool = False) -> np.ndarray:
    """Contour levels: `levels` values spaced evenly (geometrically with `log`) over the norm's range."""
    if not isinstance(levels, int):
        return np.asarray(levels, dtype=np.float64)
    lo, hi = norm_range(norm)
    if log:
        return np.geomspace(lo, hi, levels)
    return np.linspace(lo, hi, levels)


def norm_range(norm: Normalize) -> tuple[float, float]:
    """(vmin, vmax) of a colour scale whose range is set (as `color_norm` returns it)."""
    if norm.vmin is None or norm.vmax is None:
        raise ValueError("the colour scale has no range yet: set vmin and vmax")
    return float(norm.vmin), float(norm.vmax)


def extend_for(values: np.ndarray, levels: np.ndarray) -> str:
    """Which ends of a filled contour must extend so values outside the levels are still coloured."""
    finite = values[np.isfinite(values)]
    below = bool(finite.size and finite.min() < levels[0])
    above = bool(finite.size and finite.max() > levels[-1])
    return {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[(below, above)]


def with_bad(cmap: str | Colormap, bad: str = "0.85") -> Colormap:
    """The colormap with masked points drawn in grey, so a hole is not mistaken for a value."""
    import matplotlib

    base = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return base.with_extremes(bad=bad)


def masked_note(surface: Surface, metric: str, *, log: bool = False) -> str:
    """A short note such as "12 of 2091 points masked" (empty when every point is shown)."""
    hidden = int((~surface.valid(metric, log=log)).sum())
    return f"{hidden} of {surface.done_mask.size} points masked" if hidden else ""


def output_path(source: Path | None, out_dir: str | Path | None, name: str) -> Path:
    """Where an output file goes: under `out_dir` when given, else next to the source file."""
    if out_dir is not None:
        directory = Path(out_dir)
    elif source is not None:
        directory = source.parent
    else:
        directory = Path.cwd()
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def stem_for(surface: Surface) -> str:
    """The base of output file names: the source file's stem (or the surface's name)."""
    return surface.path.stem if surface.path is not None else surface.name


def save_figure(fig: Figure, path: Path, *, dpi: int = 150) -> Path:
    """Write a figure (format from the suffix) and return its path."""
    fig.savefig(path, dpi=dpi)
    return path


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A pyplot-free figure: no global figure registry to leak memory or need closing."""
    return Figure(figsize=(width, height), layout="constrained")


def set_plane_aspect(ax: Axes, x: np.ndarray, y: np.ndarray) -> None:
    """Equal x/y scale when the ranges are comparable, so a plane scan is not stretched."""
    dx = float(np.ptp(x)) or 1.0
    dy = float(np.ptp(y)) or 1.0
    if 0.2 <= dx / dy <= 5.0:
        ax.set_aspect("equal", adjustable="box")
