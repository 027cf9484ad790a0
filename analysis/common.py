"""Helpers shared by the figure commands: colour scales, contour levels, output names, saving."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure

from analysis.surface import Surface, SurfaceError

IMAGE_FORMATS = ("png", "pdf", "svg")


# The loss-landscape paper's contour levels (plot_2D.py: vmin=0.1, vmax=10, vlevel=0.5 on the loss).
PAPER_LEVELS = (0.1, 10.0, 0.5)
# The paper's levels are the default for a loss when at least this many of them fall inside the data.
PAPER_LEVELS_MIN_INSIDE = 8
DEFAULT_COUNT = 20


@dataclass(frozen=True)
class LevelRange:
    """Levels ``lo, lo + step, ...`` up to ``hi`` (`--levels lo:hi:step`); colours span lo..hi."""

    lo: float
    hi: float
    step: float

    def values(self) -> np.ndarray:
        """The levels; ``hi`` itself is included when it lies on the step grid."""
        count = int(np.floor((self.hi - self.lo) / self.step * (1 + 1e-9) + 1e-9)) + 1
        return self.lo + self.step * np.arange(count)


PAPER_RANGE = LevelRange(*PAPER_LEVELS)
Levels = Union[str, int, Sequence[float], LevelRange]
"""What `--levels` asks for: "auto", a count, an explicit increasing list, or a `LevelRange`."""


def parse_levels(text: str) -> Levels:
    """Parse `--levels`: "auto", a count ("20"), a list ("0.1,0.5,1,5") or a range ("0.1:10:0.5")."""
    text = text.strip()
    if text.lower() == "auto":
        return "auto"
    hint = "give auto, a count (e.g. 20), a list (e.g. 0.1,0.5,1) or lo:hi:step (e.g. 0.1:10:0.5)"
    try:
        if ":" in text:
            lo, hi, step = (float(v) for v in text.split(":"))
            if not (np.isfinite([lo, hi, step]).all() and step > 0 and hi > lo):
                raise SurfaceError(f"--levels {text}: lo:hi:step needs hi > lo and step > 0")
            if (hi - lo) / step > 1000:
                raise SurfaceError(f"--levels {text}: more than 1000 levels; take a larger step")
            return LevelRange(lo, hi, step)
        if "," not in text:
            count = int(text)
            if count < 2:
                raise SurfaceError(f"--levels {text}: a level count must be at least 2")
            return count
        values = [float(v) for v in text.split(",") if v.strip()]
    except SurfaceError:
        raise
    except ValueError:
        raise SurfaceError(f"--levels {text!r}: {hint}") from None
    if not values or any(b <= a for a, b in zip(values, values[1:])):
        raise SurfaceError(f"--levels {text!r}: explicit levels must be strictly increasing")
    return values


def paper_levels_fit(metric: str, lo: float, hi: float) -> bool:
    """Whether the paper's loss levels (0.1 to 10 by 0.5) suit data spanning lo..hi of `metric`.

    They suit a loss whose valid values cover at least `PAPER_LEVELS_MIN_INSIDE` of them: then the
    basin gets the paper's evenly spaced lines and figures of different files share the same lines.
    """
    inside = PAPER_RANGE.values()
    inside = inside[(inside > lo) & (inside < hi)]
    return "loss" in metric and inside.size >= PAPER_LEVELS_MIN_INSIDE


def resolve_levels(
    surfaces: Sequence[Surface],
    metric: str,
    levels: Levels = "auto",
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    log: bool = False,
) -> tuple[np.ndarray, Normalize]:
    """Contour levels and the colour scale they are drawn with, over the valid points of `surfaces`.

    - "auto": the paper's levels (0.1 to 10 by 0.5, coloured over 0.1..10) for a loss they fit (see
      `paper_levels_fit`); otherwise 20 levels spread evenly over the data (geometrically with `log`,
      i.e. log-spaced from the minimum). With --vmin/--vmax, 20 levels over that range.
    - a count N: N levels spread evenly (geometrically with `log`) over the data or --vmin..--vmax.
    - a list or a `LevelRange`: exactly those levels, coloured over their own range (lo..hi), not the
      data's, so the colours mean the same values in every figure drawn with these levels.
    --vmin/--vmax always set the colour range when given.
    """
    if isinstance(levels, str):
        if levels != "auto":
            raise SurfaceError(f"--levels {levels!r}: the only named choice is auto")
        if vmin is None and vmax is None and not log:
            data = color_norm(surfaces, metric)
            if paper_levels_fit(metric, *norm_range(data)):
                levels = PAPER_RANGE
        if isinstance(levels, str):
            levels = DEFAULT_COUNT
    if isinstance(levels, int):
        norm = color_norm(surfaces, metric, vmin=vmin, vmax=vmax, log=log)
        return make_levels(norm, levels, log=log), norm
    if isinstance(levels, LevelRange):
        values, lo, hi = levels.values(), levels.lo, levels.hi
    else:
        values = np.asarray(levels, dtype=np.float64)
        lo, hi = float(values[0]), float(values[-1])
    if log and values[0] <= 0:
        raise SurfaceError(f"--levels: with --log every level must be > 0 (lowest is {values[0]:g})")
    if lo == hi:  # a single explicit level: widen the colour range around it
        lo, hi = (lo / 2, hi * 2) if log else (lo - 0.5, hi + 0.5)
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    if not hi > lo:
        raise SurfaceError(f"colour range is empty: vmin {lo:g} >= vmax {hi:g}")
    if log and lo <= 0:
        raise SurfaceError(f"--vmin {lo:g}: a log colour scale needs vmin > 0")
    return values, (LogNorm(lo, hi) if log else Normalize(lo, hi))


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


def make_levels(norm: Normalize, levels: int | Sequence[float] | np.ndarray, *, log: bool = False) -> np.ndarray:
    """Contour levels: `levels` values spaced evenly (geometrically with `log`) over the norm's range."""
    if not isinstance(levels, int):
        return np.asarray(levels, dtype=np.float64)
    lo, hi = norm_range(norm)
    if log:
        return np.geomspace(lo, hi, levels)
    return np.linspace(lo, hi, levels)


def log_ticks(lo: float, hi: float, *, max_ticks: int = 8) -> np.ndarray:
    """At least three round tick values in [lo, hi] (0 < lo < hi) for a log axis or colour bar.

    Whole decades when the range spans enough of them, else 1-3, 1-2-5 or 1..9 times a power of ten,
    and evenly spaced round numbers when the range is too narrow even for those (under a factor ~2).
    """
    if not 0 < lo < hi:
        raise ValueError(f"log ticks need 0 < lo < hi, got {lo:g}, {hi:g}")
    inside = lo * (1 - 1e-9), hi * (1 + 1e-9)
    decades = np.arange(np.floor(np.log10(lo)) - 1, np.ceil(np.log10(hi)) + 1)
    for subs in ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), tuple(float(m) for m in range(1, 10))):
        ticks = np.array([m * 10.0**d for d in decades for m in subs])
        ticks = ticks[(ticks >= inside[0]) & (ticks <= inside[1])]
        if ticks.size > max_ticks and subs == (1.0,):
            ticks = ticks[:: int(np.ceil(ticks.size / max_ticks))]
        if 3 <= ticks.size <= max_ticks or (ticks.size > max_ticks and subs != (1.0,)):
            return ticks
    from matplotlib.ticker import MaxNLocator

    even = np.asarray(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi))
    return even[(even >= inside[0]) & (even <= inside[1])]


def plain_number(value: float, _pos: object = None) -> str:
    """A tick label without scientific notation where a plain number reads well: 0.01, 2.5, 40."""
    return f"{value:.6g}" if 1e-4 <= abs(value) < 1e6 or value == 0 else f"{value:.3g}"


def tidy_log_axis(axis: Axis, lo: float, hi: float) -> None:
    """Several plainly labelled ticks on a log axis spanning lo..hi (also under a decade), minor unlabelled."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis.set_major_locator(FixedLocator(log_ticks(lo, hi).tolist()))
    axis.set_major_formatter(FuncFormatter(plain_number))
    axis.set_minor_formatter(NullFormatter())


def tidy_colorbar(cbar: Colorbar, norm: Normalize) -> None:
    """Round, plainly labelled colour-bar ticks: several on a log scale, at most ~10 on a linear one."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

    # The bar's own extent: a contour set's bar ends at its outermost levels, inside the norm's range.
    lo, hi = sorted(cbar.ax.get_ylim() if cbar.orientation == "vertical" else cbar.ax.get_xlim())
    if isinstance(norm, LogNorm):
        ticks = log_ticks(lo, hi)
    else:
        ticks = np.asarray(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi))
        ticks = ticks[(ticks >= lo - 1e-9 * (hi - lo)) & (ticks <= hi + 1e-9 * (hi - lo))]
    cbar.set_ticks(FixedLocator(ticks.tolist()))
    cbar.minorticks_off()
    cbar.formatter = FuncFormatter(plain_number)
    cbar.update_ticks()


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
