"""`effrep quant train|sweep|markov|export`: quantized training (BinaryConnect, stochastic rounding, rounding).

Usage::

    effrep quant train configs/demo/quant.yaml [key=value ...] [--overwrite]
    effrep quant sweep configs/demo/quant_sweep.yaml [key=value ...] [--overwrite] [--retry-failed]
    mpiexec -n P python -m mpi4py -m effrep_hpc.cli quant sweep CONFIG      # runs shared by P ranks
    sbatch --array=0-N ... effrep quant sweep CONFIG dist.backend=array     # a static block per task
    effrep quant markov --mu 1 --sigma 1 --delta 1 --lr 0.3 0.1 0.03 0.01 --json --plot markov.png
    effrep quant export RUN_CHECKPOINT [-o packed.pt]

Torch and the package's heavy parts are imported inside the command functions, so `effrep --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Quantized training after Li et al., "Training Quantized Nets: A Deeper Understanding" (NeurIPS 2017):
FP, BC (BinaryConnect: float copy w_r, forward/backward at Q(w_r)), SR (stochastic rounding, weights
always on the grid, no float copy) and R (deterministic rounding), each with an SGD (fp, bc, sr, r) or
Adam (fp-adam, bc-adam, sr-adam, r-adam) step; k-bit fixed-point grids with a per-layer resolution."""

SWEEP_HELP = """\
Run every combination of quant.sweep (algorithms x bits x lr x batch_size x seeds) into one HDF5 sweep file
(quant.sweep_file, default <run.out>/sweep.h5). Re-running resumes: done runs are skipped, unfinished ones
restart from their per-run checkpoints in <sweep>_runs/; a run that diverges is recorded as failed and the
sweep goes on. Under `mpiexec -n P python -m mpi4py -m effrep_hpc.cli quant sweep CONFIG` the runs are
shared by P ranks (rank 0 writes); with dist.backend=array each SLURM array task trains a static block of
runs and writes them into the same file, one writer at a time. Then: python -m analysis quant-table FILE."""


def _config_parser(sub: Any, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    from effrep_hpc.cli import EPILOG_CONFIG

    p = sub.add_parser(
        name, help=help_, description=description, epilog=EPILOG_CONFIG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", nargs="*", metavar="CONFIG [key=value ...]", help="YAML config file and overrides")
    return p


def cmd_quant_train(args: argparse.Namespace) -> int:
    """Train one quantized run, resuming from run.out/quant_checkpoint.pt."""
    from effrep_hpc.cli import _load
    from effrep_hpc.runners.common import report
    from effrep_hpc.runners.quant import run_quant_train

    cfg = _load(args)
    out = run_quant_train(cfg, overwrite=args.overwrite)
    f = out.final
    if f:
        print(
            f"{cfg.quant.algorithm} {cfg.quant.bits} bit, epoch {int(f['epoch'])}: train loss {f['train_loss']:.4f} "
            f"acc {f['train_acc']:.2f}%  test loss {f['test_loss']:.4f} acc {f['test_acc']:.2f}%",
            flush=True,
        )
    report("metrics", out.metrics)
    report("checkpoint", out.checkpoint)
    return 0


def cmd_quant_sweep(args: argparse.Namespace) -> int:
    """Run or resume a sweep."""
    from effrep_hpc.cli import _load
    from effrep_hpc.runners.quant import run_quant_sweep

    cfg = _load(args)
    run_quant_sweep(cfg, overwrite=args.overwrite, retry_failed=args.retry_failed)
    return 0


def cmd_quant_markov(args: argparse.Namespace) -> int:
    """Exact stationary excess loss of SR and BC on a noisy quadratic, per learning rate."""
    from effrep_hpc.quant.markov import markov_report

    result = markov_report(args.mu, args.sigma, args.delta, list(args.lr), args.wstar)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        p = result["problem"]
        print(f"f(w) = {p['mu']:g}/2 (w - {p['wstar']:g})^2, gradient noise +-{p['sigma']:g}, grid {p['delta']:g} Z")
        print(f"{'lr':>10}  {'SR excess':>12}  {'BC excess':>12}")
        for lr in args.lr:
            key = repr(float(lr))
            print(f"{lr:>10g}  {result['excess']['sr'][key]:>12.6g}  {result['excess']['bc'][key]:>12.6g}")
        if p["bc_limit"] > 0:
            print(f"(w* is off the grid: BC's excess tends to {p['bc_limit']:.6g} as lr -> 0, SR's stays at its plateau)")
    if args.plot:
        from analysis.common import save_figure
        from analysis.quant import markov_figure

        target = Path(args.plot)
        target.parent.mkdir(parents=True, exist_ok=True)
        path = save_figure(markov_figure(result), target)
        print(f"plot: {path}", flush=True)
    return 0


def cmd_quant_export(args: argparse.Namespace) -> int:
    """Pack a trained quantized model at k bits per weight plus a per-layer scale."""
    from effrep_hpc.runners.common import report
    from effrep_hpc.runners.quant import export_packed

    rep = export_packed(args.checkpoint, args.output)
    print(
        f"packed {rep.layers} quantized layer(s): {rep.weight_bytes_packed:,} bytes instead of "
        f"{rep.weight_bytes_float32:,} as float32 ({rep.weight_ratio:.1f}x smaller); whole model with its float "
        f"BN parameters and biases {rep.model_bytes_packed:,} vs {rep.model_bytes_float32:,} bytes ({rep.model_ratio:.1f}x)",
        flush=True,
    )
    status = "identical outputs" if rep.identical else f"outputs DIFFER (max |diff| {rep.max_abs_diff:g})"
    print(f"reload check: {status}", flush=True)
    report("packed", rep.path)
    return 0 if rep.identical else 1


def add_commands(sub: Any) -> None:
    """Add `quant` with its train, sweep, markov and export actions to the `effrep` parser."""
    p = sub.add_parser("quant", help="Quantized training: BC / SR / R (+Adam), sweeps, Markov-chain analysis, export.",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="quant_command", metavar="ACTION")

    def usage(_: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)

    t = _config_parser(actions, "train", "Train one quantized model (quant.* + train.*); re-running resumes.",
                       "Train one run into run.out (quant_checkpoint.pt every epoch, metrics.h5); re-running resumes.")
    t.add_argument("--overwrite", action="store_true", help="delete the run's checkpoint and metrics and start over")
    t.set_defaults(func=cmd_quant_train)

    s = _config_parser(actions, "sweep", "Run a sweep of quantized runs into one HDF5 file (serial, MPI or array).", SWEEP_HELP)
    s.add_argument("--overwrite", action="store_true", help="delete the sweep file and its per-run checkpoints first")
    s.add_argument("--retry-failed", action="store_true", help="also rerun runs recorded as failed")
    s.set_defaults(func=cmd_quant_sweep)

    m = actions.add_parser(
        "markov",
        help="Exact stationary excess loss of SR and BC on f(w) = mu/2 (w - w*)^2 with gradient noise +-sigma.",
        description="The exact stationary distribution (a linear solve, not a simulation) of SR on the grid delta*Z "
        "and of BC's float iterate, for each learning rate; prints E[f] - f* per algorithm and lr. SR's excess "
        "stops depending on lr once lr is small; BC's keeps shrinking. See effrep_hpc/quant/markov.py.",
    )
    m.add_argument("--mu", type=float, required=True, help="curvature of the quadratic")
    m.add_argument("--sigma", type=float, required=True, help="gradient noise: +-sigma with probability 1/2 each")
    m.add_argument("--delta", type=float, required=True, help="grid resolution")
    m.add_argument("--lr", type=float, nargs="+", required=True, help="learning rates")
    m.add_argument("--wstar", type=float, default=0.0, help="the minimiser (default 0, on the grid)")
    m.add_argument("--json", action="store_true", help="print the full result as JSON")
    m.add_argument("--plot", default=None, metavar="PATH", help="also write a plot of excess loss against lr")
    m.set_defaults(func=cmd_quant_markov)

    e = actions.add_parser(
        "export",
        help="Pack a trained quantized model (k bits per weight + per-layer scale) and check the reload.",
        description="Pack the quantized layers of a checkpoint written by `quant train` (run.out/quant_checkpoint.pt) "
        "or `quant sweep` (<sweep>_runs/run_XXXX.pt); other parameters stay float32. The packed file reloads to "
        "bit-identical outputs (checked); the size ratio against float32 is printed.",
    )
    e.add_argument("checkpoint", help="a quantized-training checkpoint")
    e.add_argument("-o", "--output", default=None, help="packed file to write [default: <checkpoint>.packed.pt]")
    e.set_defaults(func=cmd_quant_export)
