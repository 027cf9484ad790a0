"""Quantized-training results: sweep files (`effrep quant sweep`) and Markov-chain JSON (`effrep quant markov`).

numpy, h5py and matplotlib only (no torch, no effrep_hpc). Commands (``python -m analysis <command>``):

  quant-table FILE      final test error (100 - test accuracy) and final training loss per (algorithm, bits),
                        mean and std over seeds (other swept parameters that vary get their own rows); failed
                        and unfinished runs are counted, not averaged. --last N: each run's mean over its last
                        N epochs instead of the last epoch alone. --csv PATH also writes it.
      python -m analysis quant-table runs/demo/quant/sweep.h5 --last 10
  quant-table FILE --versus OTHER
                        the same metric (--metric, default train_loss) in two sweeps of the same grid, e.g. lr
                        lowered (FILE) vs constant (OTHER): runs paired by seed, the ratio OTHER / FILE per seed
                        (mean ± std, min..max) and of the means, and each file's lr schedule.
      python -m analysis quant-table dropped/sweep.h5 --versus constant/sweep.h5 --last 10
  quant-plots FILE      <stem>_curves_train_loss.<ext>, <stem>_curves_test_error.<ext> (mean over seeds per
                        algorithm, one panel per bit width), <stem>_error_vs_<param>.<ext> for every swept
                        parameter of bits, lr and batch_size, and <stem>_hist.<ext> (weights at the end of
                        training in grid units: BC's float copy against its quantized weights, SR's quantized
                        weights, FP's float weights; one panel per algorithm, bits and swept lr/batch size,
                        summed over seeds). With --versus OTHER also <stem>_versus_train_loss.<ext> and
                        <stem>_versus_test_error.<ext>: both sweeps' curves in one panel per bit width (and
                        swept lr/batch size), the last --last epochs shaded.
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

    def tail_mean(self, metric: str, last: int = 1) -> float:
        """Mean of ``metric`` over the last ``last`` finished epochs (1: the final value); NaN if none."""
        values = self.series(metric)
        return float(values[-last:].mean()) if values.size else math.nan

    def lr_changes(self) -> list[tuple[int, float]]:
        """(epoch, lr / initial lr) at every epoch (1-based) where the recorded lr changed; [] for a constant lr."""
        lr = self.series("lr")
        if lr.size == 0 or not lr[0] > 0:
            return []
        return [(i + 1, float(lr[i] / lr[0])) for i in range(1, lr.size) if not math.isclose(lr[i], lr[i - 1], rel_tol=1e-9)]


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


METRICS = ("train_loss", "test_loss", "train_error", "test_error")


def _check_last(sweeps: Sequence[Sweep], last: int) -> None:
    """A user error unless every finished run of ``sweeps`` has at least ``last`` epochs to average over."""
    if last < 1:
        raise SurfaceError(f"--last {last}: give a number of epochs >= 1")
    for sweep in sweeps:
        short = [len(r.series("train_loss")) for r in sweep.runs if r.status == "done"]
        if short and min(short) < last:
            raise SurfaceError(f"--last {last}: the finished runs of {sweep.path} have only {min(short)} epochs")


def summarize(sweep: Sweep, by: Sequence[str] | None = None, *, last: int = 1) -> list[dict[str, Any]]:
    """Test error and training loss per (algorithm, bits, varying lr/batch): each done run's mean over its last
    ``last`` epochs (1: the final epoch), then mean and sample std over those runs."""
    _check_last([sweep], last)
    if by is None:
        by = ["algorithm", "bits"] + [k for k in sweep.varying(("lr", "batch_size"))]
    groups: dict[tuple, list[SweepRun]] = defaultdict(list)
    for run in sweep.runs:
        groups[tuple(getattr(run, k) for k in by)].append(run)
    rows = []
    for key, runs in groups.items():
        done = [r for r in runs if r.status == "done"]
        err_mean, err_std = _mean_std([r.tail_mean("test_error", last) for r in done])
        loss_mean, loss_std = _mean_std([r.tail_mean("train_loss", last) for r in done])
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
                "epochs_averaged": last,
            }
        )
    return rows


def _key_cells(row: dict[str, Any], keys: Sequence[str]) -> list[str]:
    cells = []
    for k in keys:
        v = row[k]
        cells.append("float" if k == "bits" and v == FLOAT_BITS else f"{v:g}" if isinstance(v, float) else str(v))
    return cells


def _render(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*c) for c in lines)])


def _pm(mean: float, std: float, metric: str) -> str:
    """'mean ± std': errors in percent to 2 decimals, losses to 3 significant digits (they span decades)."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if metric.endswith("_error") else f"{mean:.3g} ± {std:.2g}"


def _over(last: int) -> str:
    return "last epoch" if last == 1 else f"mean of last {last} epochs"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`summarize` rows (bits 32 shown as "float")."""
    if not rows:
        return "(no runs)"
    keys = [k for k in rows[0] if k in KEYS]
    over = _over(int(rows[0].get("epochs_averaged", 1)))
    header = [*keys, "done", "failed", "test error %", "train loss"]
    lines = []
    for r in rows:
        cells = _key_cells(r, keys) + [f"{r['done']}/{r['runs']}", str(r["failed"])]
        cells.append("-" if math.isnan(r["test_error_mean"]) else f"{r['test_error_mean']:.2f} ± {r['test_error_std']:.2f}")
        cells.append(_pm(r["train_loss_mean"], r["train_loss_std"], "train_loss"))
        lines.append(cells)
    return "\n".join([f"test error and train loss: {over} of each done run, then mean ± std over seeds", "",
                      _render(header, lines)])


def schedule_text(sweep: Sweep) -> str:
    """The lr schedule the done runs of ``sweep`` followed, read from their recorded lr (e.g. "lr x0.1 from epoch 251")."""
    changes = {tuple((e, round(f, 9)) for e, f in r.lr_changes()) for r in sweep.runs if r.status == "done"}
    if not changes:
        return "no finished runs"
    if len(changes) > 1:
        return "lr schedules differ between runs"
    steps = next(iter(changes))
    if not steps:
        return "constant lr"
    return "lr " + ", ".join(f"x{f:.3g} from epoch {e}" for e, f in steps)


def _pair_keys(sweep: Sweep, versus: Sweep) -> list[str]:
    """Algorithm, bits and every swept lr/batch size of either sweep: what identifies a run up to its seed."""
    both = Sweep(sweep.path, sweep.runs + versus.runs, sweep.hist_edges, sweep.epochs)
    return ["algorithm", "bits", *both.varying(("lr", "batch_size"))]


def compare(sweep: Sweep, versus: Sweep, metric: str = "train_loss", *, last: int = 1) -> list[dict[str, Any]]:
    """``metric`` (each run's mean over its last ``last`` epochs) in two sweeps, runs paired by seed within each
    (algorithm, bits, swept lr/batch size); the ratio versus / sweep per seed and of the means over seeds."""
    if metric not in METRICS:
        raise SurfaceError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    _check_last([sweep, versus], last)
    by = _pair_keys(sweep, versus)
    mine, theirs = _groups(sweep.runs, [*by, "seed"]), _groups(versus.runs, [*by, "seed"])
    rows = []
    for group in sorted({k[:-1] for k in (*mine, *theirs)}, key=str):
        seeds = sorted({k[-1] for k in (*mine, *theirs) if k[:-1] == group})
        paired = [s for s in seeds if (*group, s) in mine and (*group, s) in theirs]
        a = np.array([mine[(*group, s)][0].tail_mean(metric, last) for s in paired])
        b = np.array([theirs[(*group, s)][0].tail_mean(metric, last) for s in paired])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = b / a
        a_mean, a_std = _mean_std(list(a))
        b_mean, b_std = _mean_std(list(b))
        r_mean, r_std = _mean_std(list(ratio))
        finite = ratio[np.isfinite(ratio)]
        rows.append(
            {
                **dict(zip(by, group)),
                "pairs": len(paired),
                "unpaired": len(seeds) - len(paired),
                "seeds": " ".join(str(s) for s in paired),
                f"{metric}_mean": a_mean,
                f"{metric}_std": a_std,
                f"versus_{metric}_mean": b_mean,
                f"versus_{metric}_std": b_std,
                "ratio_of_means": b_mean / a_mean if a_mean else math.nan,
                "ratio_mean": r_mean,
                "ratio_std": r_std,
                "ratio_min": float(finite.min()) if finite.size else math.nan,
                "ratio_max": float(finite.max()) if finite.size else math.nan,
                "epochs_averaged": last,
            }
        )
    return rows


def format_comparison(rows: list[dict[str, Any]], metric: str, sweep: Sweep, versus: Sweep) -> str:
    """A plain-text table of :func:`compare` rows, headed by which file is A and which B, with their lr schedules."""
    legend = [f"A = {sweep.path} ({schedule_text(sweep)})", f"B = {versus.path} ({schedule_text(versus)})"]
    if not rows:
        return "\n".join([*legend, "(no runs)"])
    keys = [k for k in rows[0] if k in KEYS]
    over = _over(int(rows[0]["epochs_averaged"]))
    name = metric.replace("_", " ") + (" %" if metric.endswith("_error") else "")
    legend.append(f"{name}: {over} of each run; mean ± std over the seeds done in both; B / A per seed and of the means")
    header = [*keys, "seeds", f"A {name}", f"B {name}", "B / A of means", "B / A per seed", "min..max"]
    lines = []
    for r in rows:
        cells = _key_cells(r, keys) + [str(r["pairs"]) + (f" (+{r['unpaired']} unpaired)" if r["unpaired"] else "")]
        for prefix in ("", "versus_"):
            m, sd = r[f"{prefix}{metric}_mean"], r[f"{prefix}{metric}_std"]
            cells.append(_pm(m, sd, metric))
        cells.append("-" if math.isnan(r["ratio_of_means"]) else f"{r['ratio_of_means']:.2f}")
        cells.append("-" if math.isnan(r["ratio_mean"]) else f"{r['ratio_mean']:.2f} ± {r['ratio_std']:.2f}")
        cells.append("-" if math.isnan(r["ratio_min"]) else f"{r['ratio_min']:.2f}..{r['ratio_max']:.2f}")
        lines.append(cells)
    return "\n".join([*legend, "", _render(header, lines)])


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


def versus_figure(sweep: Sweep, versus: Sweep, metric: str = "train_loss", *, last: int = 1,
                  log: bool | None = None) -> Figure:
    """Per-epoch ``metric`` of two sweeps (e.g. lr lowered vs constant) per algorithm, mean over seeds with a min..max
    band, ``sweep`` solid and ``versus`` dashed; one panel per bit width and swept lr/batch size; dotted lines where
    the lr changes; the last ``last`` epochs (what :func:`compare` averages) shaded."""
    if metric not in METRICS:
        raise SurfaceError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    by = _pair_keys(sweep, versus)
    panel_keys = by[1:]  # everything but the algorithm
    panels = sorted({k for s in (sweep, versus) for k in _groups(s.runs, panel_keys)}, key=str)
    if not panels:
        raise SurfaceError(f"neither {sweep.path} nor {versus.path} has finished runs")
    texts = [schedule_text(sweep), schedule_text(versus)]
    if texts[0] == texts[1]:
        texts = [str(sweep.path), str(versus.path)]
    algorithms = sorted({r.algorithm for s in (sweep, versus) for r in s.runs})
    colors = {a: f"C{i}" for i, a in enumerate(algorithms)}
    fig = new_figure(max(4.8 * len(panels), 7.0), 4.6)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    log = metric.endswith("loss") if log is None else log
    for ax, panel in zip(axes, panels):
        longest = 0
        for source, style, text in ((sweep, "-", texts[0]), (versus, "--", texts[1])):
            groups = _groups([r for r in source.runs if tuple(getattr(r, k) for k in panel_keys) == panel], ["algorithm"])
            for (alg,), group in sorted(groups.items()):
                series = [r.series(metric) for r in group]
                n = min(len(v) for v in series)
                if n == 0:
                    continue
                longest = max(longest, n)
                stack = np.stack([v[:n] for v in series])
                epochs = np.arange(1, n + 1)
                ax.plot(epochs, stack.mean(0), style, color=colors[alg], linewidth=1.2,
                        label=f"{alg.upper()}, {text} ({len(group)} seeds)")
                if len(group) > 1:
                    ax.fill_between(epochs, stack.min(0), stack.max(0), color=colors[alg], alpha=0.12, linewidth=0)
        drops = {e for source in (sweep, versus) for r in source.runs if r.status == "done" for e, _ in r.lr_changes()}
        for e in sorted(drops):
            ax.axvline(e - 0.5, color="0.3", linestyle=":", linewidth=0.8)
        if longest and last > 1:
            ax.axvspan(longest - last + 0.5, longest + 0.5, color="0.5", alpha=0.15, linewidth=0,
                       label=f"last {last} epochs (averaged in quant-table)")
        title = ", ".join(
            ("float" if v == FLOAT_BITS else f"{v} bit") if k == "bits" else f"{k}={v:g}" for k, v in zip(panel_keys, panel)
        )
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("epoch")
        if ax is axes[0]:
            ax.set_ylabel(metric.replace("_", " ") + (" (%)" if metric.endswith("_error") else ""))
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:  # one legend for all panels: the same algorithms and schedules in each
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=2 if len(panels) == 1 else 3,
               fontsize="small")
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


MAX_HIST_PANELS = 16  # beyond this many (algorithm, bits, lr, batch size) groups, swept values are pooled


def pooled_fractions(hists: Sequence[np.ndarray]) -> tuple[np.ndarray, float] | None:
    """Counts summed over runs, as fractions of all weights: the inner bins, and the share in the two edge bins.

    The sweep file's histograms clamp every weight beyond the stored range into the edge bins (so counts add up to
    the number of weights); those bins are therefore "at or beyond the range", not a density, and are returned
    separately. None when no run has this histogram (NaN: SR keeps no float copy, FP has no quantized weights).
    """
    present = [np.asarray(h, dtype=np.float64) for h in hists if np.isfinite(h).any()]
    if not present:
        return None
    counts = np.nansum(present, axis=0)
    total = counts.sum()
    if not total > 0:
        return None
    frac = counts / total
    return frac[1:-1], float(frac[0] + frac[-1])


def histogram_figure(sweep: Sweep) -> Figure:
    """Weights at the end of training in grid units: one panel per (algorithm, bits) and swept lr/batch size (summed
    over seeds), fraction of weights on a shared log axis spanning the data (at least a decade); weights in the edge
    bins (at or beyond the stored range) are counted in the title instead of drawn."""
    extra = sweep.varying(("lr", "batch_size"))
    by = ["algorithm", "bits", *extra]
    groups = _groups(sweep.runs, by)
    pooled: list[str] = []
    if len(groups) > MAX_HIST_PANELS:  # too many panels to read: pool the swept values, and say so in each title
        pooled, by = extra, ["algorithm", "bits"]
        groups = _groups(sweep.runs, by)
    if not groups:
        raise SurfaceError(f"{sweep.path} has no finished runs to draw histograms of")
    keys = sorted(groups, key=lambda k: (k[1], *k[2:], k[0]))  # bit width, then swept values, then algorithm
    edges = np.asarray(sweep.hist_edges, dtype=np.float64)
    centres = 0.5 * (edges[1:-2] + edges[2:-1])
    width = float(edges[2] - edges[1])
    inner = float(edges[-2])
    data = {k: (pooled_fractions([r.hist_quant for r in groups[k]]), pooled_fractions([r.hist_float for r in groups[k]]))
            for k in keys}
    positive = [h[0][h[0] > 0] for pair in data.values() for h in pair if h is not None]
    smallest = min((float(f.min()) for f in positive if f.size), default=0.1)
    lo = min(10.0 ** math.floor(math.log10(smallest)), 0.1)  # whole decades, never less than one
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig = new_figure(3.6 * cols, 3.0 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).ravel()
    handles: dict[str, Any] = {}
    for i, (ax, key) in enumerate(zip(axes, keys)):
        group = groups[key]
        quant, flt = data[key]
        notes = []
        if quant is not None:
            handles["quantized weights"] = ax.bar(centres, quant[0], width=width, color="tab:orange", alpha=0.85)
        if flt is not None:
            name = "float copy" if key[1] != FLOAT_BITS else "float weights"
            handles[name] = ax.step(centres, flt[0], where="mid", color="tab:blue" if key[1] != FLOAT_BITS else "tab:green")[0]
            if flt[1] > 0:
                notes.append(f"{flt[1]:.2%} of {name} beyond ±{inner:g}")
        if quant is not None and quant[1] > 0:
            notes.append(f"{quant[1]:.2%} of quantized beyond ±{inner:g}")
        title = f"{_label(group[0], by)} ({len(group)} run{'s' if len(group) > 1 else ''})"
        if pooled:
            values = ", ".join(f"{k} " + "/".join(f"{v:g}" for v in sorted({getattr(r, k) for r in group})) for k in pooled)
            notes.insert(0, f"pooled over {values}")
        ax.set_title("\n".join([title, *notes]), fontsize="small")
        ax.set_yscale("log")
        ax.set_ylim(lo, 1.0)
        ax.set_xlim(-inner, inner)
        ax.set_xlabel("weight / outermost level" if key[1] != FLOAT_BITS else "weight / one-bit scale")
        if i % cols == 0:
            ax.set_ylabel(f"fraction of weights per bin ({width:g} wide)")
        ax.grid(alpha=0.3, axis="y")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=len(handles), fontsize="small")
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
        f"f = {problem['mu']:g}/2 (w - {problem.get('wstar', 0):g})², noise ±{problem['sigma']:g}, grid {problem['delta']:g}·Z",
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


def _write_csv(path_text: str, rows: list[dict[str, Any]]) -> Path:
    path = Path(path_text)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0]) if rows else []
    lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cmd_table(args: argparse.Namespace) -> Iterator[Path]:
    sweep = load_sweep(args.file)
    if args.versus is not None:
        versus = load_sweep(args.versus)
        metric = args.metric or "train_loss"
        rows = compare(sweep, versus, metric, last=args.last)
        print(format_comparison(rows, metric, sweep, versus), flush=True)
    else:
        if args.metric is not None:
            raise SurfaceError("--metric chooses what --versus compares; without --versus the table shows both metrics")
        rows = summarize(sweep, last=args.last)
        print(format_table(rows), flush=True)
    for source in [sweep] if args.versus is None else [sweep, versus]:
        for r in [r for r in source.runs if r.status == "failed"][:5]:
            first = r.error.strip().splitlines()[0] if r.error.strip() else "unknown error"
            print(f"failed: {r.name} ({_label(r, ['algorithm', 'bits'])}, lr {r.lr:g}, seed {r.seed}): {first}", flush=True)
    if args.csv:
        yield _write_csv(args.csv, rows)


def _cmd_plots(args: argparse.Namespace) -> Iterator[Path]:
    sweep = load_sweep(args.file)
    if not any(r.status == "done" for r in sweep.runs):
        raise SurfaceError(f"{sweep.path} has no finished runs yet")
    versus = load_sweep(args.versus) if args.versus is not None else None
    if versus is not None:
        _check_last([sweep, versus], args.last)
    stem = sweep.path.stem
    for metric in ("train_loss", "test_error"):
        yield from _save_all(curves_figure(sweep, metric), sweep.path, args, f"{stem}_curves_{metric}")
    quant_bits = {r.bits for r in sweep.runs if r.bits != FLOAT_BITS}
    for param in ("bits", "lr", "batch_size"):
        values = quant_bits if param == "bits" else {getattr(r, param) for r in sweep.runs}
        if len(values) > 1:
            yield from _save_all(error_vs_figure(sweep, param), sweep.path, args, f"{stem}_error_vs_{param}")
    yield from _save_all(histogram_figure(sweep), sweep.path, args, f"{stem}_hist")
    if versus is not None:
        for metric in ("train_loss", "test_error"):
            fig = versus_figure(sweep, versus, metric, last=args.last)
            yield from _save_all(fig, sweep.path, args, f"{stem}_versus_{metric}")


def _cmd_markov(args: argparse.Namespace) -> Iterator[Path]:
    import json

    path = Path(args.file)
    try:
        text = path.read_text().lstrip()
        # earlier versions printed "plot: PATH" after the JSON (with --json --plot); such files still read
        result, end = json.JSONDecoder().raw_decode(text)
        if any(line.strip() and not line.startswith("plot: ") for line in text[end:].splitlines()):
            raise ValueError(f"unexpected text after the JSON document: {text[end:].strip()[:60]!r}")
    except (FileNotFoundError, IsADirectoryError):
        raise SurfaceError(f"{path} does not exist or is not a file") from None
    except ValueError as exc:
        raise SurfaceError(f"{path} is not the JSON of `effrep quant markov --json`: {exc}") from None
    yield from _save_all(markov_figure(result), path, args, path.stem)


def _figure_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default=None, help="write here instead of next to the input file")
    p.add_argument("--format", action="append", choices=FIGURE_FORMATS, default=None,
                   help="image format; repeat for several (default: png)")
    p.add_argument("--dpi", type=int, default=150, help="resolution of raster images (default: 150)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of epochs") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} epochs: give at least 1")
    return value


def _versus_options(p: argparse.ArgumentParser, *, table: bool) -> None:
    last = ("average each run over its last N epochs (default: 1, the final epoch); the training loss jumps from "
            "epoch to epoch, so one epoch can show a contrast that is not there") if table else (
            "with --versus: shade the last N epochs, what quant-table --last N averages (default: 1)")
    p.add_argument("--last", type=_positive_int, default=1, metavar="N", help=last)
    p.add_argument("--versus", metavar="OTHER", default=None,
                   help="a second sweep file of the same grid (e.g. the same runs with a constant lr) to compare "
                   "FILE with, run by run (paired by seed)")
    if table:
        p.add_argument("--metric", choices=METRICS, default=None,
                       help="what --versus compares (default: train_loss)")


def add_commands(sub: Any) -> None:
    """Add quant-table, quant-plots and quant-markov to the analysis parser (``sub`` from add_subparsers)."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("quant-table", help="final test error and train loss per (algorithm, bits); two sweeps compared",
                       description="Final test error and training loss per (algorithm, bits) (and swept lr/batch size), mean\n"
                       "and std over seeds; with --last N each run is first averaged over its last N epochs.\n\n"
                       "With --versus OTHER: one metric in FILE (A) and OTHER (B), runs paired by seed, and the ratio\n"
                       "B / A per seed (mean ± std, min..max over seeds) and of the means. The header names each file's\n"
                       "lr schedule as recorded in its runs. Example (claim (c): lowering the lr helps BC, hardly SR):\n"
                       "  python -m analysis quant-table dropped/sweep.h5 --versus constant/sweep.h5 --last 10",
                       formatter_class=fmt)
    p.add_argument("file", metavar="FILE", help="a sweep file (effrep quant sweep)")
    _versus_options(p, table=True)
    p.add_argument("--csv", default=None, metavar="PATH", help="also write the table (or the comparison) as CSV")
    p.set_defaults(run=_cmd_table)

    p = sub.add_parser("quant-plots", help="curves, error vs bits/lr/batch size and weight histograms of a sweep",
                       description="Training curves per algorithm, final test error against every swept parameter, and\n"
                       "histograms of the float copy and the quantized weights. With --versus OTHER also both sweeps'\n"
                       "training loss and test error curves in one figure (<stem>_versus_<metric>.<ext>), FILE solid,\n"
                       "OTHER dashed, the last --last epochs shaded.", formatter_class=fmt)
    p.add_argument("file", metavar="FILE", help="a sweep file (effrep quant sweep)")
    _versus_options(p, table=False)
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
