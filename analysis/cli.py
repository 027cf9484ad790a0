"""Command line for turning surface files (docs/surface-format.md) into figures and VTK files.

Usage: ``python -m analysis <command> [options] FILE ...`` (or ``effrep analyze <command> ...``).
Every command writes next to its input file, or under ``--out DIR``, and prints one
``wrote: <path>`` line per file it wrote. A file that is not a surface file, a missing dataset or a
1D/2D mismatch is reported as ``error: ...`` on stderr with exit code 2.

Commands and the files they write (``<stem>`` = input file name without ``.h5``; ``[_log]`` is
added with ``--log``; ``<ext>`` is ``png`` unless ``--format`` says ``pdf``/``svg``):

  contour FILE...      labelled contour lines, filled contours and a heatmap of a 2D surface
                       -> <stem>_<metric>_contour[_log].<ext>, <stem>_<metric>_contourf[_log].<ext>,
                          <stem>_<metric>_heatmap[_log].<ext>  (pick some with --kind); levels
                       default to the paper's 0.1:10:0.5 on a loss that spans them (--levels)
      python -m analysis contour scan.h5 --metric test_loss --levels 0.1:10:0.5
      python -m analysis contour scan.h5 --metric test_loss --levels 0.1,0.5,1,2,5 --log

  plot1d FILE...       loss (left axis) and accuracy (right axis) against the step size, train
                       solid and test dashed -> <stem>_plot1d[_log].<ext>; a 2D file needs a
                       slice: --at-y 0 -> <stem>_plot1d_y<value>[_log].<ext> (--at-x: _x<value>)
      python -m analysis plot1d line.h5 --log

  surface3d FILE...    matplotlib 3D surface -> <stem>_<metric>_surface3d[_log].<ext>
      python -m analysis surface3d scan.h5 --zmax 10 --format pdf

  vtk FILE...          ParaView files: <stem>_<metric>[_log][_zmax<v>][_zscale<v>][_flat].vts
                       (vtkStructuredGrid, masked points blanked) and .vtp (vtkPolyData of the valid
                       quads; _tri.vtp with --cells tri). z = zscale * height, zscale chosen so the z
                       extent is half the x-y extent unless --zscale is given; point normals included.
                       Point arrays: every metric, log10_<loss>, done, height, Normals. A file with
                       a trajectory/ group also gives the path as a polyline on the surface:
                       <same name>_trajectory.vtp (point arrays epoch, residual, distance).
      python -m analysis vtk scan.h5 --zmax 10 --log    # -> scan_train_loss_log_zmax10.vts/.vtp

  render FILE...       offscreen pyvista PNG of the lit 3D surface (--trajectory: with the path)
                       -> <stem>_<metric>_render[_top][_trajectory][_log].png
      python -m analysis render scan.h5 --contours 12 --cmap coolwarm

  trajectory FILE...   contours of a PCA-plane scan (`effrep trajectory`) with the optimizer's path:
                       markers every K epochs, start and end labelled, axes with the explained
                       variance -> <stem>_<metric>_trajectory[_log].<ext>
      python -m analysis trajectory pca.h5 --every 5

  compare FILE FILE... shared-colour-scale panels (2D) or overlaid curves (1D) in one figure
                       -> <stem1>_vs_<stem2>..._<metric>_compare[_log].<ext> (or --name NAME),
                       written next to the first file
      python -m analysis compare small_batch.h5 large_batch.h5 --labels "bs=128,bs=8192"

  study STUDY_DIR      the outputs of `effrep study` from its study.json: one panel per variant on one
                       colour scale and one set of levels -> figures/scan2d_<metric>_seed<S>.<ext>,
                       scan1d_ (overlaid), convexity_, trajectory_, interp_ (pairs); and the table of
                       test error beside the sharpness measures -> table.csv, table.json, table.md
      python -m analysis study runs/studies/skip_connections --format png,pdf

Masking: a point is drawn only when it is marked done and its value is finite (and > 0 with
--log); colour ranges come from those points only.

Partial files (a scan still running, or stopped): contour, vtk and render draw the finest complete
level of the coarse-to-fine order (every 2**L-th point in x and y) and say in the title (vtk: the
printed line and field data `preview`) what fraction is computed and at which resolution;
--partial interpolate fills in the full grid from every computed point, --partial mask leaves holes.
``python -m analysis <command> --help`` lists every option.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from analysis.surface import Surface, SurfaceError, load_surface
from analysis.trajectory import MOST_MARKERS

if TYPE_CHECKING:  # matplotlib loads only for the commands that draw
    from matplotlib.figure import Figure

    from analysis.common import Levels

FIGURE_FORMATS = ("png", "pdf", "svg")
CONTOUR_KINDS = ("contour", "contourf", "heatmap")
VTK_OUTPUTS = ("vts", "vtp", "trajectory")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-written layout of descriptions and show each option's default once.

    A default is appended as ``[default: X]`` unless the help text already says its default (in
    words, e.g. "[default: smallest valid value]"), the default is None or False (an absent
    option or an off flag has nothing to show), or the argument is positional.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
            or isinstance(action, (argparse._StoreConstAction, argparse._HelpAction))
        ):
            return text
        shown = "x".join(str(v) for v in default) if isinstance(default, tuple) else "%(default)s"
        return f"{text} [default: {shown}]"


def _log_suffix(log: bool) -> str:
    return "_log" if log else ""


def _value_tag(value: float) -> str:
    """A compact, filename-safe number: 0.25 -> "0.25", -0.5 -> "m0.5"."""
    return f"{value:g}".replace("-", "m").replace("+", "")


def _stem(surface: Surface) -> str:
    """The input file's name without suffix, the start of every output name."""
    return surface.path.stem if surface.path is not None else surface.name


def _out(surface: Surface, args: argparse.Namespace, name: str) -> Path:
    from analysis.common import output_path

    return output_path(surface.path, args.out, name)


def _formats(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys(args.format or ["png"]))


def _save(fig: Figure, paths: Iterator[Path] | Sequence[Path], dpi: int) -> Iterator[Path]:
    from analysis.common import save_figure

    for path in paths:
        yield save_figure(fig, path, dpi=dpi)


def _parse_levels(text: str) -> Levels:
    from analysis.common import parse_levels

    try:
        return parse_levels(text)
    except SurfaceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_every(text: str) -> int:
    try:
        every = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of epochs, e.g. 5") from None
    if every < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of epochs >= 1")
    return every


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the size as WIDTHxHEIGHT, e.g. 1200x900") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be at least 16 pixels")
    return width, height


def _partial(surface: Surface, args: argparse.Namespace) -> Surface:
    """What to draw of a partial surface under --partial (a complete one as it is); prints the preview line."""
    from analysis.preview import partial_view, preview_title

    view = partial_view(surface, args.partial)
    if preview_title(view):
        print(f"{surface.describe()}: {preview_title(view)}", flush=True)
    return view


# --- commands: each yields the paths it wrote ---------------------------------------------------


def _cmd_contour(args: argparse.Namespace) -> Iterator[Path]:
    from analysis.contour import contour_figure

    kinds = list(dict.fromkeys(args.kind or CONTOUR_KINDS))
    for file in args.files:
        surface = _partial(load_surface(file), args)
        surface.require_2d("contour")
        surface.require(args.metric)
        for kind in kinds:
            fig = contour_figure(
                surface, args.metric, kind=kind, levels=args.levels, vmin=args.vmin, vmax=args.vmax,
                log=args.log, cmap=args.cmap,
            )
            names = [f"{_stem(surface)}_{args.metric}_{kind}{_log_suffix(args.log)}.{ext}" for ext in _formats(args)]
            yield from _save(fig, [_out(surface, args, n) for n in names], args.dpi)


def _cmd_plot1d(args: argparse.Namespace) -> Iterator[Path]:
    from analysis.plot1d import plot1d_figure

    if args.at_x is not None and args.at_y is not None:
        raise SurfaceError("give at most one of --at-x and --at-y")
    for file in args.files:
        surface = load_surface(file)
        tag = ""
        if surface.ndim == 2 and (args.at_x is not None or args.at_y is not None):
            line = surface.slice_at(x=args.at_x, y=args.at_y)
            if args.at_y is not None:
                axis, coords, wanted = "y", surface.require_2d("plot1d"), args.at_y
            else:
                axis, coords, wanted = "x", surface.x, args.at_x
            tag = f"_{axis}{_value_tag(float(coords[abs(coords - wanted).argmin()]))}"
            surface = line
        elif surface.ndim == 1 and (args.at_x is not None or args.at_y is not None):
            raise SurfaceError(f"{file} is already a 1D surface; drop --at-x/--at-y")
        fig = plot1d_figure(surface, log=args.log)
        names = [f"{_stem(surface)}_plot1d{tag}{_log_suffix(args.log)}.{ext}" for ext in _formats(args)]
        yield from _save(fig, [_out(surface, args, n) for n in names], args.dpi)


def _cmd_surface3d(args: argparse.Namespace) -> Iterator[Path]:
    from analysis.surface3d import surface3d_figure

    for file in args.files:
        surface = load_surface(file)
        fig = surface3d_figure(
            surface, args.metric, log=args.log, zmax=args.zmax, vmin=args.vmin, vmax=args.vmax,
            elev=args.elev, azim=args.azim, cmap=args.cmap,
        )
        names = [f"{_stem(surface)}_{args.metric}_surface3d{_log_suffix(args.log)}.{ext}" for ext in _formats(args)]
        yield from _save(fig, [_out(surface, args, n) for n in names], args.dpi)


def _vtk_base(surface: Surface, args: argparse.Namespace) -> str:
    """<stem>_<metric>[_log][_zmax<v>][_zscale<v>][_flat]: every option that changes the file is in its name."""
    parts = [f"{_stem(surface)}_{args.metric}{_log_suffix(args.log)}"]
    if args.zmax is not None:
        parts.append(f"_zmax{_value_tag(args.zmax)}")
    if args.zscale is not None:
        parts.append(f"_zscale{_value_tag(args.zscale)}")
    if args.flat:
        parts.append("_flat")
    return "".join(parts)


def _cmd_vtk(args: argparse.Namespace) -> Iterator[Path]:
    from analysis.trajectory import has_trajectory, load_trajectory
    from analysis.vtkexport import (
        auto_zscale,
        check_zscale,
        describe_scale,
        polydata,
        structured_grid,
        trajectory_polydata,
        write_xml,
    )

    kinds = list(dict.fromkeys(args.only or VTK_OUTPUTS))
    if args.zscale is not None:
        check_zscale(args.zscale)
    for file in args.files:
        surface = _partial(load_surface(file), args)
        surface.require_2d("vtk")
        base = _vtk_base(surface, args)
        auto = args.zscale is None
        zscale = auto_zscale(surface, args.metric, log=args.log, zmax=args.zmax) if auto else args.zscale
        options = {"log": args.log, "zmax": args.zmax, "flat": args.flat, "zscale": zscale}
        print(describe_scale(args.metric, auto=auto, **options), flush=True)
        if "vts" in kinds:
            yield write_xml(structured_grid(surface, args.metric, **options), _out(surface, args, base + ".vts"))
        if "vtp" in kinds:
            poly = polydata(surface, args.metric, cells=args.cells, **options)
            yield write_xml(poly, _out(surface, args, base + (".vtp" if args.cells == "quad" else "_tri.vtp")))
        # The path goes along whenever the file has one; asked for by --only, its absence is an error.
        if "trajectory" in kinds and (args.only or has_trajectory(file)):
            path = trajectory_polydata(surface, load_trajectory(file), args.metric, **options)
            yield write_xml(path, _out(surface, args, base + "_trajectory.vtp"))


def _cmd_render(args: argparse.Namespace) -> Iterator[Path]:
    from analysis.render import render_surface
    from analysis.trajectory import load_trajectory

    for file in args.files:
        surface = _partial(load_surface(file), args)
        surface.require_2d("render")
        trajectory = load_trajectory(file) if args.trajectory else None
        view = "_top" if args.view == "top" else ""
        path_tag = "_trajectory" if args.trajectory else ""
        name = f"{_stem(surface)}_{args.metric}_render{view}{path_tag}{_log_suffix(args.log)}.png"
        yield render_surface(
            surface, _out(surface, args, name), args.metric, log=args.log, zmax=args.zmax, zscale=args.zscale,
            cmap=args.cmap, contours=args.contours, view=args.view, elev=args.elev, azim=args.azim,
            window_size=args.size, scalar_bar=not args.no_scalar_bar, title=not args.no_title, trajectory=trajectory,
        )


def _cmd_trajectory(args: argparse.Namespace) -> Iterator[Path]:
    from analysis.trajectory import describe, load_trajectory, trajectory_figure

    for file in args.files:
        surface = load_surface(file)
        surface.require_2d("trajectory")
        surface.require(args.metric)
        trajectory = load_trajectory(file)
        print(describe(trajectory, surface), flush=True)
        fig = trajectory_figure(
            surface, trajectory, args.metric, kind=args.kind, levels=args.levels, vmin=args.vmin, vmax=args.vmax,
            log=args.log, cmap=args.cmap, every=args.every,
        )
        names = [f"{_stem(surface)}_{args.metric}_trajectory{_log_suffix(args.log)}.{ext}" for ext in _formats(args)]
        yield from _save(fig, [_out(surface, args, n) for n in names], args.dpi)


def _cmd_compare(args: argparse.Namespace) -> Iterator[Path]:
    from analysis.compare import compare_figure

    if len(args.files) < 2:
        raise SurfaceError("compare needs at least two surface files")
    surfaces = [load_surface(f) for f in args.files]
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    fig = compare_figure(
        surfaces, args.metric, labels=labels, kind=args.kind, levels=args.levels, vmin=args.vmin,
        vmax=args.vmax, log=args.log, cmap=args.cmap,
    )
    if args.name:
        base = args.name
    else:
        stems = [_stem(s) for s in surfaces]
        joined = "_vs_".join(stems) if len(stems) <= 4 else f"{stems[0]}_and_{len(stems) - 1}_more"
        base = f"{joined}_{args.metric}_compare{_log_suffix(args.log)}"
    yield from _save(fig, [_out(surfaces[0], args, f"{base}.{ext}") for ext in _formats(args)], args.dpi)


# --- parser ------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, *, files: str = "one or more surface files (.h5)") -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help=files)
    p.add_argument(
        "--out", metavar="DIR", default=None, help="write here instead of next to each input file (created if missing)"
    )


def _metric(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metric", default="train_loss", help="value dataset to show: train_loss, train_acc, test_loss, test_acc, ..."
    )


def _figure_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", action="append", choices=FIGURE_FORMATS, default=None,
                   help="image format; repeat for several (--format png --format pdf) [default: png]")
    p.add_argument("--dpi", type=int, default=150, help="resolution of raster images")


def _colour(p: argparse.ArgumentParser, *, levels: bool = True) -> None:
    p.add_argument("--vmin", type=float, default=None, help="lower end of the colour scale [default: smallest valid value]")
    p.add_argument("--vmax", type=float, default=None, help="upper end of the colour scale [default: largest valid value]")
    if levels:
        p.add_argument("--levels", type=_parse_levels, default="auto", metavar="LEVELS",
                       help="contour levels: auto; a count N spread over the data (or --vmin..--vmax); an explicit "
                            "list (0.1,0.5,1,5); or lo:hi:step (0.1:10:0.5). Explicit levels are coloured over their "
                            "own range lo..hi. auto = the paper's 0.1:10:0.5 for a loss when at least 8 of those "
                            "lie inside the data (they resolve the low-loss basin and are the same in every "
                            "figure), else 20 spread over the data; with --log, 20 log-spaced from the minimum")
    p.add_argument("--cmap", default="viridis", help="matplotlib colormap name (coolwarm gives the paper's blue-red look)")


def _height(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", action="store_true", help="height is log10(value); non-positive values are masked")
    p.add_argument("--zmax", type=float, default=None, help="clip values above this (data units, applied before --log)")


def _partial_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partial", choices=("auto", "level", "interpolate", "mask"), default="auto",
                   help="a partial file (a scan still running or stopped): level = the finest complete level of the "
                        "coarse-to-fine order (every 2**L-th point; an error when none is complete yet); interpolate "
                        "= the full grid filled in from every computed point, which are marked; mask = only the "
                        "computed points, holes elsewhere; auto = level, or mask when no level is complete. The "
                        "title says what fraction is computed and at which resolution. A complete file is drawn "
                        "as it is")


PLUGIN_MODULES = ("analysis.sensitivity", "analysis.quant", "analysis.curvature", "analysis.study")
VIZ_MODULES = ("vtkmodules", "vtk", "pyvista")  # the [viz] extra (vtk and render)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error: ...`` line (exit 2) that points to --help, instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        """Print the problem on one line and exit 2."""
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser for all commands (exposed so `effrep analyze` can embed the same help)."""
    parser = OneLineParser(
        prog=prog or "python -m analysis", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    def command(
        name: str, summary: str, description: str, run: Callable[[argparse.Namespace], Iterator[Path]]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=description, formatter_class=_HelpFormatter)
        p.set_defaults(run=run)
        return p

    p = command("contour", "contour lines, filled contours and heatmap of a 2D surface",
                "Labelled contour lines, filled contours and a heatmap of one metric of a 2D surface, one image each.\n"
                "Masked points (not done, NaN, inf) are grey and never stretch the colour scale.\n"
                "Writes <stem>_<metric>_<kind>[_log].<ext>.", _cmd_contour)
    _common(p)
    _metric(p)
    _partial_option(p)
    p.add_argument("--kind", action="append", choices=CONTOUR_KINDS, default=None,
                   help="which views to draw; repeat for several [default: all three]")
    _colour(p)
    p.add_argument("--log", action="store_true", help="logarithmic colour scale and geometrically spaced levels")
    _figure_out(p)

    p = command("plot1d", "loss and accuracy of a 1D surface against the step size",
                "Loss (left axis) and accuracy (right axis) against the step size; train solid, test dashed.\n"
                "A 2D file needs a slice: --at-y VALUE takes the row nearest y = VALUE (x along the axis),\n"
                "--at-x VALUE the column nearest x = VALUE.\n"
                "Writes <stem>_plot1d[_y<v>|_x<v>][_log].<ext>.", _cmd_plot1d)
    _common(p)
    p.add_argument("--log", action="store_true", help="logarithmic loss axis")
    p.add_argument("--at-y", type=float, default=None, metavar="Y", help="for a 2D file: plot the row nearest this y")
    p.add_argument("--at-x", type=float, default=None, metavar="X", help="for a 2D file: plot the column nearest this x")
    _figure_out(p)

    p = command("surface3d", "matplotlib 3D surface of a 2D surface (PNG/PDF)",
                "A matplotlib 3D surface of one metric, coloured by height; masked points leave holes.\n"
                "Writes <stem>_<metric>_surface3d[_log].<ext>.", _cmd_surface3d)
    _common(p)
    _metric(p)
    _height(p)
    _colour(p, levels=False)
    p.add_argument("--elev", type=float, default=30.0, help="camera elevation in degrees")
    p.add_argument("--azim", type=float, default=-60.0, help="camera azimuth in degrees")
    _figure_out(p)

    p = command("vtk", "ParaView files (.vts structured grid, .vtp polygon surface)",
                "VTK XML files (appended binary, zlib) for ParaView. Point (x[i], y[j]) has z = zscale * height,\n"
                "height = the metric clipped at --zmax, log10 with --log; the default zscale makes the z extent\n"
                "half the larger x-y extent (printed, and stored as field data `zscale`). Point arrays: every\n"
                "metric, log10_<loss>, done, height, Normals (of the scaled surface, for smooth shading). The\n"
                ".vts keeps the whole grid with masked points blanked; the .vtp holds only cells whose corners\n"
                "are all valid. --flat: z = 0, no normals, and the .vts draws every point (colour it by done),\n"
                "for Warp By Scalar.\n"
                "Writes <stem>_<metric>[_log][_zmax<v>][_zscale<v>][_flat].vts and .vtp (_tri.vtp with\n"
                "--cells tri), e.g. scan_train_loss_log_zmax10.vtp. A file with a trajectory/ group (made by\n"
                "`effrep trajectory`) also gives the optimizer's path as one polyline lying on the surface, at the\n"
                "same z plus a small lift, point arrays epoch, residual, distance: <same name>_trajectory.vtp.",
                _cmd_vtk)
    _common(p)
    _metric(p)
    _partial_option(p)
    _height(p)
    p.add_argument("--zscale", type=float, default=None, metavar="S",
                   help="z = S * height [default: z extent = half the larger x-y extent]")
    p.add_argument("--flat", action="store_true",
                   help="z = 0 everywhere and no normals, for ParaView's Warp By Scalar (Scale Factor = the printed zscale)")
    p.add_argument("--cells", choices=("quad", "tri"), default="quad", help="polygon type of the .vtp")
    p.add_argument("--only", action="append", choices=VTK_OUTPUTS, default=None,
                   help="write only this output (trajectory: the path's _trajectory.vtp); repeat for several "
                        "[default: vts and vtp, and trajectory when the file has a trajectory/ group]")

    p = command("render", "offscreen pyvista PNG of the lit 3D surface",
                "An offscreen pyvista render: smooth-shaded surface coloured by height, camera at an elevated\n"
                "oblique angle (or straight down with --view top: +x right, +y up), optional contour lines.\n"
                "--trajectory draws the path of the file's trajectory/ group on the surface.\n"
                "Writes <stem>_<metric>_render[_top][_trajectory][_log].png.", _cmd_render)
    _common(p)
    _metric(p)
    _partial_option(p)
    _height(p)
    p.add_argument("--cmap", default="viridis", help="colormap (coolwarm gives the paper's blue-red look)")
    p.add_argument("--contours", type=int, default=0, help="number of contour lines drawn on the surface")
    p.add_argument("--zscale", type=float, default=None,
                   help="height scale factor [default: z extent = half the larger x/y extent]")
    p.add_argument("--view", choices=("oblique", "top"), default="oblique", help="camera placement")
    p.add_argument("--elev", type=float, default=35.0, help="oblique view: camera elevation in degrees")
    p.add_argument("--azim", type=float, default=-60.0, help="oblique view: camera azimuth in degrees (matplotlib's convention)")
    p.add_argument("--size", type=_parse_size, default=(1200, 900), metavar="WxH", help="image size in pixels")
    p.add_argument("--no-scalar-bar", action="store_true", help="leave out the colour bar")
    p.add_argument("--no-title", action="store_true", help="leave out the title text")
    p.add_argument("--trajectory", action="store_true",
                   help="draw the optimizer's path of the file's trajectory/ group (`effrep trajectory`) on the "
                        "surface, start and end labelled; adds _trajectory to the name")

    p = command("trajectory", "the optimizer's path over the contours of its PCA-plane scan",
                "The loss contours of a scan made by `effrep trajectory` (the plane of the first two principal\n"
                "components of the training path) with the projected path on top: a line through every snapshot,\n"
                "a marker every K epochs, start and end labelled with their epochs, the axes labelled with the\n"
                "explained variance (1st PC: 62.3 %), as in Li et al. 2018, figs. 9-10. The title gives the largest\n"
                "residual off the plane relative to the snapshot's distance from the centre, and how many\n"
                "snapshots lie outside the scanned range (the axes keep the scan's range). Levels and colours as\n"
                "for `contour`. Prints the explained variance. Writes <stem>_<metric>_trajectory[_log].<ext>.",
                _cmd_trajectory)
    _common(p, files="one or more surface files (.h5) with a trajectory/ group")
    _metric(p)
    p.add_argument("--every", type=_parse_every, default=None, metavar="K",
                   help="a marker on every snapshot whose epoch is a multiple of K "
                        f"[default: the smallest round K that shows at most {MOST_MARKERS} markers]")
    p.add_argument("--kind", choices=CONTOUR_KINDS, default="contour", help="view of the surface under the path")
    _colour(p)
    p.add_argument("--log", action="store_true", help="logarithmic colour scale and geometrically spaced levels")
    _figure_out(p)

    p = command("compare", "several surfaces in one figure on one colour scale",
                "Panels of one metric from several 2D surfaces side by side on one shared colour scale\n"
                "(or, for 1D surfaces, their curves overlaid on one axis). The scale spans the valid points\n"
                "of all files. Writes <stem1>_vs_<stem2>..._<metric>_compare[_log].<ext> next to the first\n"
                "file (or --name NAME.<ext>).", _cmd_compare)
    _common(p, files="two or more surface files (.h5), all 1D or all 2D")
    _metric(p)
    p.add_argument("--labels", default=None, help="comma-separated panel titles, one per file [default: file names]")
    p.add_argument("--kind", choices=CONTOUR_KINDS, default="contourf", help="view drawn in each panel")
    _colour(p)
    p.add_argument("--log", action="store_true", help="logarithmic colour scale")
    p.add_argument("--name", default=None, help="output file name without extension")
    _figure_out(p)

    # Commands for other file kinds (pruning sensitivity, quantization sweeps) live in their own modules.
    for module_name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run one analysis command; returns the exit code (0 ok, 2 bad input) instead of exiting."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and usage errors: argparse has already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        for path in args.run(args):
            print(f"wrote: {path}", flush=True)
    except SurfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unreadable, foreign or unwritable files: the user's to fix
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # vtk/pyvista are the optional [viz] extra; anything else is a bug
        if (exc.name or "").split(".")[0] not in VIZ_MODULES:
            raise
        print(f"error: `{args.command}` needs vtk and pyvista, the [viz] extra: pip install 'effrep-analysis[viz]' "
              "(from a clone: pip install './analysis[viz]')", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
