"""`effrep prune ...`: filter pruning commands (Li et al., ICLR 2017).

Torch and the runners are imported inside the command functions, so `effrep --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

CONFIG_EPILOG = """\
CONFIG is a YAML file (see configs/demo/prune_digits.yaml and configs/paper/prune_*.yaml); each
following key=value overrides one entry, e.g. prune.preset=resnet56-b prune.criterion=l2 run.out=runs/x.
The trained model is prune.checkpoint (default <run.out>/checkpoint.pt, what `effrep train` writes).
Layers are named by their module (features.0, layer2.3.conv1, layer3 for a ResNet-34 stage) or by the
paper's layer id (1-based over the convs, shortcuts left out): `effrep prune layers --model NAME`.
An unknown key, preset, criterion or a ratio outside [0, 1) stops with exit code 2 before anything is written."""

CRITERIA_HELP = (
    "criteria: l1 (default: sum of |kernel weights|), l2, random, largest (largest L1 first), and the "
    "activation statistics of pre-BN feature maps over prune.activation_images training images: "
    "mean_mean, mean_std, mean_l1, mean_l2, var_l2"
)


def _load(args: argparse.Namespace):  # noqa: ANN202 - returns the project's Config
    from effrep_hpc.config import load_config

    items = list(args.config)
    path = items.pop(0) if items and "=" not in items[0] else None
    bad = [o for o in items if "=" not in o]
    if bad:
        raise ValueError(f"expected key=value overrides after the config file, got {bad}")
    return load_config(path, items)



def _parse_ratio(text: str) -> tuple[str, float]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LAYER=RATIO, e.g. features.0=0.5 or 12=0.3")
    layer, value = text.rsplit("=", 1)
    try:
        return layer, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the ratio must be a number in [0, 1)") from None


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the input shape as C,H,W (e.g. 3,224,224)") from None
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"{text!r}: every dimension must be >= 1")
    return shape


def cmd_flops(args: argparse.Namespace) -> int:
    """FLOPs and parameters before and after pruning a model by a preset and/or per-layer ratios."""
    from effrep_hpc.prune import planned_cost

    if not args.preset and not args.ratio:
        raise ValueError("give --preset NAME and/or --ratio LAYER=RATIO (see `effrep prune presets`)")
    report = planned_cost(
        args.model, preset=args.preset, ratios=dict(args.ratio or []), input_shape=args.input_shape,
        num_classes=args.num_classes, include_shortcuts=args.count_shortcuts, multiple=args.round_to,
    )
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['model']} at input {'x'.join(map(str, report['input_shape']))}"
          + (f", preset {report['preset']}" if "preset" in report else ""))
    print(f"  FLOPs (MACs): {report['flops_before']:,} -> {report['flops_after']:,}  "
          f"(-{report['flops_reduction_pct']:.1f}%, {report['flops_speedup']:.2f}x fewer)")
    print(f"  params:       {report['params_before']:,} -> {report['params_after']:,}  (-{report['params_reduction_pct']:.1f}%)")
    if "preset" in report:
        print(f"  paper:        -{report['paper_flops_reduction_pct']}% FLOPs, -{report['paper_params_reduction_pct']}% params")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    """List the prunable layers (prune groups) of a model with paper ids, widths and FLOP shares."""
    import torch

    from effrep_hpc.models import create_model, model_spec
    from effrep_hpc.prune import prune_groups
    from effrep_hpc.prune.cost import group_flops

    shape = args.input_shape or model_spec(args.model).input_shape
    with torch.device("meta"):
        model = create_model(args.model)
        total, per_group = group_flops(model, shape)
    rows = [
        {"layer": g.name, "paper_ids": list(g.layer_ids), "width": g.width, "scored_by": g.scorer,
         "flops_share_pct": 100.0 * per_group[g.name] / total, "writers": list(g.writers)}
        for g in prune_groups(model)
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'layer':<18} {'paper ids':<14} {'width':>6} {'FLOPs %':>8}  scored by")
    for r in rows:
        ids = ",".join(map(str, r["paper_ids"]))
        ids = ids if len(ids) <= 14 else ids[:11] + "..."
        print(f"{r['layer']:<18} {ids:<14} {r['width']:>6} {r['flops_share_pct']:>8.2f}  {r['scored_by']}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """List the paper's presets with their model and published reductions."""
    from effrep_hpc.prune.presets import PRESETS

    rows = [
        {"preset": p.name, "model": p.model, "paper_flops_reduction_pct": p.paper_flops_reduction,
         "paper_params_reduction_pct": p.paper_params_reduction, "ratios": {str(k): v for k, v in p.ratios.items()},
         "description": p.description}
        for p in PRESETS.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['preset']:<12} {r['model']:<10} -{r['paper_flops_reduction_pct']:>4}% FLOPs  "
              f"-{r['paper_params_reduction_pct']:>4}% params  {r['description']}")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """Scan accuracy with one layer pruned at a time (layer x ratio x criterion) into an HDF5 file."""
    from effrep_hpc.runners.prune import run_sensitivity

    run_sensitivity(_load(args), overwrite=args.overwrite)
    return 0


def _print_outputs(outputs: Any) -> None:
    from effrep_hpc.runners.common import report
    from effrep_hpc.runners.prune import format_summary

    print(format_summary(json.loads(outputs.summary.read_text())), flush=True)
    for label in ("pruned", "checkpoint", "metrics", "summary"):
        path = getattr(outputs, label)
        if path is not None and path.exists():
            report(label, path)


def cmd_apply(args: argparse.Namespace) -> int:
    """Prune a trained checkpoint once, without retraining."""
    from effrep_hpc.runners.prune import run_prune

    _print_outputs(run_prune(_load(args), retrain=False, overwrite=args.overwrite))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    """Prune a trained checkpoint (once or iteratively) and retrain it."""
    from effrep_hpc.runners.prune import run_prune

    _print_outputs(run_prune(_load(args), retrain=True, overwrite=args.overwrite))
    return 0


def cmd_scratch(args: argparse.Namespace) -> int:
    """Train the pruned architecture from random weights (the baseline)."""
    from effrep_hpc.runners.prune import run_scratch

    _print_outputs(run_scratch(_load(args), overwrite=args.overwrite))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge array-task shards of a sensitivity scan."""
    from pathlib import Path

    from effrep_hpc.store.sensitivity import merge_sensitivity_shards

    path, done, total = merge_sensitivity_shards([Path(s) for s in args.shards], Path(args.output), overwrite=args.overwrite)
    print(f"merged {len(args.shards)} shard(s): {done}/{total} cells done")
    print(f"sensitivity: {path}")
    return 0


def add_commands(sub: Any) -> None:
    """Add `effrep prune` and its subcommands to the `effrep` parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    top = sub.add_parser(
        "prune",
        help="Filter pruning: sensitivity scans, presets, prune-and-retrain, FLOPs.",
        description=(
            "Filter pruning after Li et al., 'Pruning Filters for Efficient ConvNets' (ICLR 2017): filters are\n"
            "ranked (by L1 norm by default), physically removed together with their BN channels and the next\n"
            "layer's input kernels, and the result is a plain smaller model saved as arch + state_dict.\n\n"
            "Typical session:\n"
            "  effrep train configs/demo/prune_digits.yaml\n"
            "  mpiexec -n 2 python -m mpi4py -m effrep_hpc.cli prune sensitivity configs/demo/prune_digits.yaml\n"
            "  python -m analysis sensitivity runs/prune_digits/sensitivity.h5\n"
            "  effrep prune retrain configs/demo/prune_digits.yaml\n"
            "  effrep prune flops --model resnet56 --preset resnet56-b --json"
        ),
        formatter_class=fmt,
    )
    psub = top.add_subparsers(dest="prune_command", metavar="SUBCOMMAND")

    def show_help(_args: argparse.Namespace) -> int:
        top.print_help()
        return 2

    top.set_defaults(func=show_help)

    def add(name: str, func: Callable[[argparse.Namespace], int], summary: str, description: str, config: bool = True) -> argparse.ArgumentParser:
        p = psub.add_parser(name, help=summary, description=description, formatter_class=fmt,
                            epilog=CONFIG_EPILOG if config else None)
        if config:
            p.add_argument("config", nargs="*", metavar="CONFIG [key=value ...]", help="YAML config file and overrides")
        p.set_defaults(func=func)
        return p

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="registered model name (see `effrep models`)")
        p.add_argument("--input-shape", type=_parse_shape, default=None, metavar="C,H,W",
                       help="input shape without the batch dim [default: the model's registered shape]")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("flops", cmd_flops, "FLOPs and params before/after a preset or per-layer ratios (no weights needed).",
            "Count MACs of conv + linear layers and all parameters of MODEL before and after pruning, as the\n"
            "paper counts them (ResNet projection shortcuts left out unless --count-shortcuts). With --json\n"
            "prints one object: flops_before/after, params_before/after, flops_reduction_pct,\n"
            "params_reduction_pct, widths_after and, for a preset, the paper's published reductions.\n\n"
            "  effrep prune flops --model vgg16 --preset vgg16-a --json\n"
            "  effrep prune flops --model digits_vgg --ratio features.0=0.5 --ratio 6=0.5", config=False)
    model_args(p)
    p.add_argument("--preset", default=None, help="a paper preset (see `effrep prune presets`)")
    p.add_argument("--ratio", type=_parse_ratio, action="append", metavar="LAYER=RATIO",
                   help="fraction of filters removed from LAYER (name or paper id); repeat; overrides the preset")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the classifier [default: the model's]")
    p.add_argument("--count-shortcuts", action="store_true", help="count ResNet projection shortcuts too")
    p.add_argument("--round-to", type=int, default=1, metavar="K",
                   help="round each pruned layer's kept filters to a multiple of K (prune.round_to)")

    p = add("layers", cmd_layers, "List a model's prunable layers, paper layer ids, widths and FLOP shares.",
            "Every prune group of MODEL: the name to use in prune.ratios / prune.layers, the paper's layer\n"
            "ids it covers, its filter count, the share of the model's FLOPs its cut touches (the layer and\n"
            "its readers) and the layer whose filters rank it.", config=False)
    model_args(p)

    p = add("presets", cmd_presets, "List the paper's pruned models (VGG-16-A, ResNet-56-A/B, ...).",
            "The presets of Li et al. with their model, per-layer ratios (keyed by paper layer id) and the\n"
            "FLOP/parameter reductions published in the paper's Table 2.", config=False)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("sensitivity", cmd_sensitivity, "Accuracy with each layer pruned alone, per ratio and criterion (HDF5).",
            "For every prunable layer (prune.layers), every ratio (prune.sensitivity_ratios) and every\n"
            "criterion (prune.sensitivity_criteria), prune that one layer of the trained model and evaluate\n"
            "it (prune.eval_split, optionally after prune.sensitivity_retrain_epochs of retraining). Cells\n"
            "are shared out by dist/ (serial, MPI ranks, or SLURM array tasks with dist.backend=array)\n"
            "and written to one HDF5 file (prune.sensitivity, default <run.out>/sensitivity.h5).\n"
            "Re-running resumes: only missing cells are computed, with any number of ranks.\n\n"
            "  mpiexec -n 4 python -m mpi4py -m effrep_hpc.cli prune sensitivity CONFIG \\\n"
            "      'prune.sensitivity_criteria=[l1,random,largest]'\n"
            "  python -m analysis sensitivity runs/x/sensitivity.h5      # the paper's Figures 2 and 8\n\n"
            + CRITERIA_HELP)
    p.add_argument("--overwrite", action="store_true", help="start the file over instead of resuming it")

    p = add("apply", cmd_apply, "Prune a trained checkpoint by a preset or per-layer ratios (no retraining).",
            "Rank filters by prune.criterion (prune.strategy independent or greedy), cut the ones of\n"
            "prune.preset and/or prune.ratios, and save the smaller model as <prune.out>/pruned.pt (arch +\n"
            "state_dict; prune.out defaults to <run.out>/pruned). Prints test accuracy, FLOPs, params and\n"
            "the measured speed-up (median forward time at prune.speed_batch_size) before and after.\n\n"
            + CRITERIA_HELP)
    p.add_argument("--overwrite", action="store_true", help="delete earlier outputs in prune.out first")

    p = add("retrain", cmd_retrain, "Prune a trained checkpoint and retrain it (once, or iteratively).",
            "As `apply`, then retrain with the paper's recipe: prune.retrain_lr (1e-3), prune.retrain_schedule\n"
            "(constant) for prune.retrain_epochs (40), with train.optimizer / momentum / weight_decay /\n"
            "batch_size. prune.iterations=K prunes in K equal steps towards the final widths, retraining\n"
            "after each. Every epoch is checkpointed (<prune.out>/checkpoint.pt, metrics.h5), so\n"
            "re-running resumes; the result is <prune.out>/retrained.pt and the table in summary.json.")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")

    p = add("scratch", cmd_scratch, "Train the pruned architecture from scratch (the paper's baseline).",
            "Build the architecture that `apply` would produce and train it from random weights with the\n"
            "train section (the original recipe), under <prune.out>/scratch; resumable like `effrep train`.\n"
            "Its accuracy is added to <prune.out>/summary.json next to the retrained model's.")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")

    p = add("merge", cmd_merge, "Merge the shard files of an array-task sensitivity scan.",
            "Copy the done cells of every shard (sensitivity.shard-I-of-N.h5) into one sensitivity file.",
            config=False)
    p.add_argument("shards", nargs="+", help="shard files")
    p.add_argument("-o", "--output", required=True, help="the sensitivity file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
