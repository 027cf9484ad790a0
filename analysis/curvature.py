"""Curvature figures: the convexity map of an eigenvalue map (`effrep curvature`) and the spectral density (`effrep hessian`).

- ``convexity FILE``: |lambda_min / lambda_max| over the plane, the landscape paper's convexity maps.
  Near 0 (dark blue) the Hessian is nearly positive semi-definite, the surface locally convex; large
  values (yellow) mean strong negative curvature next to the positive one. Uses the contour module's
  heatmap, so a partial map shows its pending points grey.
- ``spectrum FILE``: the Hessian's eigenvalue density from stochastic Lanczos quadrature on a log
  scale, with the top eigenvalues and the smallest one marked, as in the Hessian-spectrum literature.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from analysis.cli import _figure_out, _formats, _HelpFormatter
from analysis.common import new_figure, output_path, save_figure, stem_for
from analysis.surface import Surface, SurfaceError, load_surface

CONVEXITY_METRIC = "eig_ratio"
DEFAULT_VMAX = 0.5  # the ratio saturates the colour bar above this: the chaotic regions
NEARLY_CONVEX = 0.1  # |lambda_min / lambda_max| below this counts as nearly convex


def convex_fraction(surface: Surface, metric: str = CONVEXITY_METRIC) -> tuple[float, int]:
    """(fraction of the computed, finite points with |lambda_min / lambda_max| < NEARLY_CONVEX, their count); NaN, 0 when none."""
    values = surface.values(metric)
    valid = np.isfinite(values)
    share = float(np.mean(values[valid] < NEARLY_CONVEX)) if valid.any() else float("nan")
    return share, int(valid.sum())


def convexity_figure(
    surface: Surface, *, metric: str = CONVEXITY_METRIC, vmax: float = DEFAULT_VMAX, cmap: str = "viridis"
) -> Figure:
    """Heatmap of |lambda_min / lambda_max| on [0, vmax] (values above take the top colour)."""
    from analysis.contour import contour_figure

    surface.require_2d("convexity")
    surface.require(metric)
    if not vmax > 0:
        raise SurfaceError(f"--vmax {vmax:g}: give an upper end > 0 for the colour scale")
    fig = contour_figure(surface, metric, kind="heatmap", levels=20, vmin=0.0, vmax=vmax, cmap=cmap)
    ax = fig.axes[0]
    share, count = convex_fraction(surface, metric)
    note = f"{share:.0%} of {count} points below {NEARLY_CONVEX:g} (nearly convex)"
    ax.set_title(f"{surface.name}: |λmin / λmax|\n{note}", fontsize=10)
    return fig


def _load_point(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SurfaceError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or "top_eigenvalues" not in data:
        raise SurfaceError(f"{path}: not the result of `effrep hessian` (no top_eigenvalues)")
    if not data.get("density"):
        raise SurfaceError(f"{path} holds no spectral density; run `effrep hessian` with hessian.density_probes >= 1")
    return data


def spectrum_figure(result: dict[str, Any], name: str = "") -> Figure:
    """The eigenvalue density (log y) with the top eigenvalues and the smallest marked."""
    grid = np.asarray(result["density"]["grid"], dtype=float)
    density = np.asarray(result["density"]["values"], dtype=float)
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    floor = max(float(np.nanmax(density)) * 1e-8, np.finfo(float).tiny)
    ax.semilogy(grid, np.maximum(density, floor), color="C0", linewidth=1.2, label="density (SLQ)")
    tops = [v for v in result["top_eigenvalues"] if v is not None]
    for i, value in enumerate(tops):
        ax.axvline(value, color="C3", linestyle="--", linewidth=0.8, label="top eigenvalues (Lanczos)" if i == 0 else None)
    if result.get("min_eigenvalue") is not None:
        ax.axvline(result["min_eigenvalue"], color="C2", linestyle=":", linewidth=1.0, label="smallest eigenvalue")
    ax.set_ylim(floor, None)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    trace = result.get("trace")
    stderr = result.get("trace_stderr")
    title = f"{name}: Hessian spectrum" if name else "Hessian spectrum"
    if trace is not None:
        title += f"\ntrace {trace:.4g}" + (f" ± {stderr:.2g}" if stderr is not None else "")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    return fig


def _cmd_convexity(args: argparse.Namespace) -> Iterator[Path]:
    for file in args.files:
        surface = load_surface(file)
        fig = convexity_figure(surface, metric=args.metric, vmax=args.vmax, cmap=args.cmap)
        for ext in _formats(args):
            yield save_figure(fig, output_path(surface.path, args.out, f"{stem_for(surface)}_convexity.{ext}"), dpi=args.dpi)


def _cmd_spectrum(args: argparse.Namespace) -> Iterator[Path]:
    for file in args.files:
        path = Path(file)
        fig = spectrum_figure(_load_point(path), path.stem)
        for ext in _formats(args):
            yield save_figure(fig, output_path(path, args.out, f"{path.stem}_spectrum.{ext}"), dpi=args.dpi)


def add_commands(sub: Any) -> None:
    """Add convexity and spectrum to the analysis parser (``sub`` from add_subparsers)."""
    p = sub.add_parser("convexity", help="the convexity map |λmin/λmax| of an eigenvalue map (effrep curvature)",
                       description="Heatmap of |lambda_min / lambda_max| over the plane of an eigenvalue map written by\n"
                       "`effrep curvature` (the landscape paper's convexity maps): dark blue where the Hessian is\n"
                       "nearly positive semi-definite, yellow where negative curvature is strong. Pending points are\n"
                       "grey. Writes <stem>_convexity.<ext>.", formatter_class=_HelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="eigenvalue map files (.h5)")
    p.add_argument("--out", metavar="DIR", default=None, help="write here instead of next to each input file")
    p.add_argument("--metric", default=CONVEXITY_METRIC, help="value to map (eig_ratio, max_eig, min_eig)")
    p.add_argument("--vmax", type=float, default=DEFAULT_VMAX, help="top of the colour scale")
    p.add_argument("--cmap", default="viridis", help="matplotlib colour map")
    _figure_out(p)
    p.set_defaults(run=_cmd_convexity)

    p = sub.add_parser("spectrum", help="the Hessian's spectral density (effrep hessian's JSON)",
                       description="The eigenvalue density of `effrep hessian` (stochastic Lanczos quadrature) on a log\n"
                       "scale, with the top eigenvalues and the smallest one marked. Writes <stem>_spectrum.<ext>.",
                       formatter_class=_HelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="hessian.json files")
    p.add_argument("--out", metavar="DIR", default=None, help="write here instead of next to each input file")
    _figure_out(p)
    p.set_defaults(run=_cmd_spectrum)
