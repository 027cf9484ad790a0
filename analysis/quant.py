"""Quantized-training results: sweep files (`effrep quant sweep`) and Markov-chain JSON (`effrep quant markov`).

numpy, h5py and matplotlib only (no torch, no effrep_hpc). Commands (``python -m analysis <command>``):

  quant-table FILE      final test error (100 - test accuracy at the last epoch) and final training loss per
                        (algorithm, bits), mean and std over seeds (other swept parameters that vary get their
                        own rows); failed and unfinished runs are counted, not averaged. --csv PATH also writes it.
      python -m analysis quant-table runs/demo/quant/sweep.h5
  quant-plots FILE      <stem>_curves_train_loss.<ext>, <stem>_curves_test_error.<ext> (mean over seeds per
                        algorithm, one panel per bit width), <stem>_error_vs_<param>.<ext> for every swept
                        parameter of bits, lr and batch_size, and <stem>_hist.<ext> (weights at the end of
                        training in grid units: BC's float copy against its quantized weights, SR's quantized
                        weights, FP's float weights).
  quant-markov FILE     <stem>.<ext>: stationary excess loss against learning rate from the JSON of
                        `effrep quant markov --json`.

Sweep file layout: see effrep_hpc/store/sweep.py (kind "quant_sweep").
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from matplotlib.figure import Figure

from analysis.common import new_figure, output_path, save_figure
from analysis.surface import SurfaceError, attr_value, open_h5, read_attrs

KIND = "quant_sweep"
KEYS = ("algorithm", "bits", "lr", "batch_size", "seed")
FLOAT_BITS = 32
FIGURE_FORMATS = ("png", "pdf", "svg")


@dataclass
class SweepRun:
    """One run of a sweep file: grid values, status, per-epoch curves (done rows only), histograms."""

    name: str
    algorithm: str
    bits: int
    lr: float
    batch_size: int
    seed: int
    status: str
    error: str
    curves: dict[str, np.ndarray]
    hist_float: np.ndarray
    hist_quant: np.ndarray

    def final(self, metric: str) -> float:
        """The metric at the last finished epoch (``test_error``/``train_error`` = 100 - accuracy); NaN if none."""
        source = {"test_error": "test_acc", "train_error": "train_acc"}.get(metric, metric)
        values = self.curves.get(source)
        if values is None or len(values) == 0:
            return math.nan
        value = float(values[-1])
        return 100.0 - value if metric.endswith("_error") else value

    def series(self, metric: str) -> np.ndarray:
        """Per-epoch values of ``metric`` (``*_error`` derived from accuracy)."""
        source = {"test_error": "test_acc", "train_error": "train_acc"}.get(metric, metric)
        values = np.asarray(self.curves.get(source, np.empty(0)), dtype=np.float64)
        return 100.0 - values if metric.endswith("_error") else values


@dataclass
class Sweep:
    """A sweep file in memory."""

    path: Path
    runs: list[SweepRun]
    hist_edges: np.ndarray
    epochs: int
    attrs: dict[str, Any] = field(default_factory=dict)

    def varying(self, keys: Sequence[str] = KEYS) -> list[str]:
        """The grid keys that take more than one value in this sweep."""
        return [k for k in keys if len({getattr(r, k) for r in self.runs}) > 1]


def _attr(obj: h5py.HLObject, key: str, default: Any = None) -> Any:
    return attr_value(obj.attrs[key]) if key in obj.attrs else default


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file; SurfaceError (analysis' user-error type) when it is not one."""
    path = Path(path)
    with open_h5(path) as f:
        if _attr(f, "kind") != KIND:
            raise SurfaceError(
                f"{path} is not a quantization sweep file (kind={_attr(f, 'kind')!r}); make one with `effrep quant sweep`"
            )
        groups = f["runs"]
        runs = []
        for name in sorted(groups, key=lambda n: int(_attr(groups[n], "index"))):
            g = groups[name]
            curves_group = g["curves"]
            done = curves_group["done"][()]
            fields = [k for k in str(_attr(curves_group, "fields", "")).split(",") if k]
            runs.append(
                SweepRun(
                    name=name,
                    algorithm=str(_attr(g, "algorithm")),
                    bits=int(_attr(g, "bits")),
                    lr=float(_attr(g, "lr")),
                    batch_size=int(_attr(g, "batch_size")),
                    seed=int(_attr(g, "seed")),
                    status=g["status"][()].decode(),
                    error=g["error"][()].decode("utf-8", errors="replace"),
                    curves={k: curves_group[k][()][done] for k in fields},
                    hist_float=g["hist_float"][()],
                    hist_quant=g["hist_quant"][()],
                )
            )
        return Sweep(path, runs, f["hist_edges"][()], int(_attr(f, "epochs", 0)), read_attrs(f))


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarize(sweep: Sweep, by: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Final test error and training loss (mean, sample std over done runs) per (algorithm, bits, varying lr/batch)."""
    if by is None:
        by = ["algorithm", "bits"] + [k for k in sweep.varying(("lr", "batch_size"))]
    groups: dict[tuple, list[SweepRun]] = defaultdict(list)
    for run in sweep.runs:
        groups[tuple(getattr(run, k) for k in by)].append(run)
    rows = []
    for key, runs in groups.items():
        done = [r for r in runs if r.status == "done"]
        err_mean, err_std = _mean_std([r.final("test_error") for r in done])
        loss_mean, loss_std = _mean_std([r.final("train_loss") for r in done])
        rows.append(
            {
                **dict(zip(by, key)),
                "runs": len(runs),
                "done": len(done),
                "failed": sum(r.status == "failed" for r in runs),
                "test_error_mean": err_mean,
                "test_error_std": err_std,
                "train_loss_mean": loss_mean,
                "train_loss_std": loss_std,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`summarize` rows (bits 32 shown as "float")."""
    if not rows:
        return "(no runs)"
    keys = [k for k in rows[0] if k in KEYS]
    header = [*keys, "done", "failed", "test error % (mean ± std)", "train loss (mean ± std)"]
    lines = []
    for r in rows:
        cells = []
        for k in keys:
            v = r[k]
            cells.append("float" if k == "bits" and v == FLOAT_BITS else f"{v:g}" if isinstance(v, float) else str(v))
        cells += [f"{r['done']}/{r['runs']}", str(r["failed"])]
        cells.append("-" if math.isnan(r["test_error_mean"]) else f"{r['test_error_mean']:.2f} ± {r['test_error_std']:.2f}")
        cells.append("-" if math.isnan(r["train_loss_mean"]) else f"{r['train_loss_mean']:.4f} ± {r['train_loss_std']:.4f}")
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*c) for c in lines)])


def _label(run: SweepRun, keys: Sequence[str]) -> str:
    parts = []
    for k in keys:
        v = getattr(run, k)
        if k == "algorithm":
            parts.append(str(v).upper())
        elif k == "bits":
            parts.append("float" if v == FLOAT_BITS else f"{v} bit")
        else:
            parts.append(f"{k}={v:g}")
    return ", ".join(parts)


def _groups(runs: Sequence[SweepRun], keys: Sequence[str]) -> dict[tuple, list[SweepRun]]:
    out: dict[tuple, list[SweepRun]] = defaultdict(list)
    for r in runs:
        if r.status == "done":
            out[tuple(getattr(r, k) for k in keys)].append(r)
    return out


def curves_figure(sweep: Sweep, metric: str = "train_loss", *, log: bool | None = None) -> Figure:
    """Per-epoch ``metric`` per algorithm (mean over seeds, band min..max), one panel per bit width, FP in each."""
    quant_bits = sorted({r.bits for r in sweep.runs if r.bits != FLOAT_BITS}) or [FLOAT_BITS]
    extra = [k for k in sweep.varying(("lr", "batch_size"))]
    fig = new_figure(4.2 * len(quant_bits), 3.6)
    axes = fig.subplots(1, len(quant_bits), squeeze=False)[0]
    log = metric.endswith("loss") if log is None else log
    for ax, bits in zip(axes, quant_bits):
        runs = [r for r in sweep.runs if r.bits in (bits, FLOAT_BITS)]
        for _key, group in sorted(_groups(runs, ["algorithm", "bits", *extra]).items(), key=lambda kv: str(kv[0])):
            series = [r.series(metric) for r in group]
            n = min(len(s) for s in series)
            if n == 0:
                continue
            stack = np.stack([s[:n] for s in series])
            epochs = np.arange(1, n + 1)
            line = ax.plot(epochs, stack.mean(0), label=_label(group[0], ["algorithm", "bits", *extra]))[0]
            if len(group) > 1:
                ax.fill_between(epochs, stack.min(0), stack.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title("float" if bits == FLOAT_BITS else f"{bits} bit")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " ") + (" (%)" if metric.endswith(("_error", "_acc")) else ""))
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def error_vs_figure(sweep: Sweep, param: str, metric: str = "test_error") -> Figure:
    """Final ``metric`` against one swept parameter (bits, lr or batch_size), mean ± std over seeds per line."""
    if param not in ("bits", "lr", "batch_size"):
        raise SurfaceError(f"can plot against bits, lr or batch_size, not {param!r}")
    others = [k for k in sweep.varying(("algorithm", "bits", "lr", "batch_size")) if k != param]
    if "algorithm" not in others:
        others.insert(0, "algorithm")
    runs = [r for r in sweep.runs if not (param == "bits" and r.bits == FLOAT_BITS)]
    fig = new_figure(5.2, 3.8)
    ax = fig.subplots()
    for _key, group in sorted(_groups(runs, others).items(), key=lambda kv: str(kv[0])):
        xs = sorted({getattr(r, param) for r in group})
        stats = [_mean_std([r.final(metric) for r in group if getattr(r, param) == x]) for x in xs]
        ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3, label=_label(group[0], others))
    for r_key, group in _groups([r for r in sweep.runs if r.bits == FLOAT_BITS], ["algorithm"]).items():
        if param == "bits":  # FP has no bit width: draw it as a reference level
            mean, _ = _mean_std([r.final(metric) for r in group])
            ax.axhline(mean, linestyle="--", color="grey", label=f"{r_key[0].upper()} (float)")
    values = sorted({getattr(r, param) for r in runs})
    if param in ("lr", "batch_size"):
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.set_xlabel({"lr": "learning rate", "batch_size": "batch size", "bits": "bits"}[param])
    ax.set_ylabel(metric.replace("_", " ") + (" (%)" if metric.endswith("_error") else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def histogram_figure(sweep: Sweep) -> Figure:
    """Weights at the end of training in grid units, per (algorithm, bits), summed over that group's runs."""
    groups = _groups(sweep.runs, ["algorithm", "bits"])
    if not groups:
        raise SurfaceError(f"{sweep.path} has no finished runs to draw histograms of")
    keys = sorted(groups, key=lambda k: (k[1], k[0]))
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig = new_figure(3.4 * cols, 2.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    edges = sweep.hist_edges
    centres = 0.5 * (edges[:-1] + edges[1:])
    width = float(edges[1] - edges[0])
    for ax, key in zip(axes, keys):
        group = groups[key]
        quant = np.nansum([r.hist_quant for r in group], axis=0) if any(np.isfinite(r.hist_quant).any() for r in group) else None
        flt = np.nansum([r.hist_float for r in group], axis=0) if any(np.isfinite(r.hist_float).any() for r in group) else None
        if quant is not None:
            ax.bar(centres, quant / max(quant.sum(), 1), width=width, color="tab:orange", alpha=0.8, label="quantized")
        if flt is not None:
            label = "float copy" if key[1] != FLOAT_BITS else "float"
            ax.step(centres, flt / max(flt.sum(), 1), where="mid", color="tab:blue", label=label)
        ax.set_yscale("log")
        ax.set_title(_label(group[0], ["algorithm", "bits"]), fontsize="medium")
        ax.set_xlabel("weight / outermost level" if key[1] != FLOAT_BITS else "weight / one-bit scale")
        ax.legend(fontsize="x-small")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    return fig


def markov_figure(result: dict[str, Any]) -> Figure:
    """Stationary excess loss against learning rate for SR and BC (log-log), from `quant markov --json`."""
    try:
        problem = result["problem"]
        excess = result["excess"]
    except (KeyError, TypeError):
        raise SurfaceError("not the JSON of `effrep quant markov --json` (needs 'problem' and 'excess')") from None
    fig = new_figure(5.2, 3.8)
    ax = fig.subplots()
    styles = {"sr": ("SR (no float copy)", "o-", "tab:red"), "bc": ("BC (float copy)", "s-", "tab:blue")}
    for alg, (label, marker, color) in styles.items():
        if alg not in excess:
            continue
        pts = sorted((float(lr), float(v)) for lr, v in excess[alg].items())
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        positive = [(x, y) for x, y in zip(xs, ys) if y > 0]
        if positive:
            ax.plot([p[0] for p in positive], [p[1] for p in positive], marker, color=color, label=label)
    limit = float(problem.get("bc_limit", 0.0))
    if limit > 0:
        ax.axhline(limit, linestyle=":", color="tab:blue", label="BC limit (w* off the grid)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("stationary E[f(w)] - f(w*)")
    ax.set_title(
        f"f = {problem['mu']:g}/2 (w - {problem.get('wstar', 0):g})², noise ±{problem['sigma']:g}, grid {problem['delta']:g}",
        fontsize="medium",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig


# --- commands -----------------------------------------------------------------------------------


def _formats(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys(args.format or ["png"]))


def _save_all(fig: Figure, source: Path, args: argparse.Namespace, stem: str) -> Iterator[Path]:
    for ext in _formats(args):
        yield save_figure(fig, output_path(source, args.out, f"{stem}.{ext}"), dpi=args.dpi)


def _cmd_table(args: argparse.Namespace) -> Iterator[Path]:
    sweep = load_sweep(args.file)
    rows = summarize(sweep)
    print(format_table(rows), flush=True)
    failed = [r for r in sweep.runs if r.status == "failed"]
    for r in failed[:5]:
        first = r.error.strip().splitlines()[0] if r.error.strip() else "unknown error"
        print(f"failed: {r.name} ({_label(r, ['algorithm', 'bits'])}, lr {r.lr:g}, seed {r.seed}): {first}", flush=True)
    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(rows[0]) if rows else []
        lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
        path.write_text("\n".join(lines) + "\n")
        yield path


def _cmd_plots(args: argparse.Namespace) -> Iterator[Path]:
    sweep = load_sweep(args.file)
    if not any(r.status == "done" for r in sweep.runs):
        raise SurfaceError(f"{sweep.path} has no finished runs yet")
    stem = sweep.path.stem
    for metric in ("train_loss", "test_error"):
        yield from _save_all(curves_figure(sweep, metric), sweep.path, args, f"{stem}_curves_{metric}")
    quant_bits = {r.bits for r in sweep.runs if r.bits != FLOAT_BITS}
    for param in ("bits", "lr", "batch_size"):
        values = quant_bits if param == "bits" else {getattr(r, param) for r in sweep.runs}
        if len(values) > 1:
            yield from _save_all(error_vs_figure(sweep, param), sweep.path, args, f"{stem}_error_vs_{param}")
    yield from _save_all(histogram_figure(sweep), sweep.path, args, f"{stem}_hist")


def _cmd_markov(args: argparse.Namespace) -> Iterator[Path]:
    import json

    path = Path(args.file)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise SurfaceError(f"{path} does not exist") from None
    except ValueError as exc:
        raise SurfaceError(f"{path} is not JSON: {exc}") from None
    yield from _save_all(markov_figure(result), path, args, path.stem)


def _figure_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default=None, help="write here instead of next to the input file")
    p.add_argument("--format", action="append", choices=FIGURE_FORMATS, default=None,
                   help="image format; repeat for several [default: png]")
    p.add_argument("--dpi", type=int, default=150, help="resolution of raster images")


def add_commands(sub: Any) -> None:
    """Add quant-table, quant-plots and quant-markov to the analysis parser (``sub`` from add_subparsers)."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("quant-table", help="final test error per (algorithm, bits) of a quantization sweep",
                       description="Final test error and training loss per (algorithm, bits), mean and std over seeds.",
                       formatter_class=fmt)
    p.add_argument("file", metavar="FILE", help="a sweep file (effrep quant sweep)")
    p.add_argument("--csv", default=None, metavar="PATH", help="also write the table as CSV")
    p.set_defaults(run=_cmd_table)

    p = sub.add_parser("quant-plots", help="curves, error vs bits/lr/batch size and weight histograms of a sweep",
                       description="Training curves per algorithm, final test error against every swept parameter, and\n"
                       "histograms of the float copy and the quantized weights.", formatter_class=fmt)
    p.add_argument("file", metavar="FILE", help="a sweep file (effrep quant sweep)")
    _figure_options(p)
    p.set_defaults(run=_cmd_plots)

    p = sub.add_parser("quant-markov", help="stationary excess loss vs learning rate (effrep quant markov --json)",
                       description="Plot the JSON of `effrep quant markov --json`: SR's stationary excess loss levels off\n"
                       "as the learning rate shrinks, BC's keeps falling.", formatter_class=fmt)
    p.add_argument("file", metavar="FILE", help="JSON written by `effrep quant markov --json > FILE`")
    _figure_options(p)
    p.set_defaults(run=_cmd_markov)


def main(argv: list[str] | None = None) -> int:
    """`python -m analysis.quant <command> ...` (the same commands as `python -m analysis`)."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.quant", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        for path in args.run(args):
            print(f"wrote: {path}", flush=True)
    except SurfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
