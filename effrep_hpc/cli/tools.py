"""Tools of the `effrep` CLI that are not experiments: models, prune flops/layers/presets, quant markov/export, analyze.

Torch and the package's heavy parts are imported inside the command functions, so `effrep --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered models with parameters and FLOPs at their default input size."""
    import torch

    from effrep_hpc.models import count_flops_params, create_model, list_models, model_spec

    unknown = [n for n in args.name if n not in list_models()]
    if unknown:
        model_spec(unknown[0])  # raises KeyError naming close names
    rows = []
    for name in list_models():
        spec = model_spec(name)
        if args.name and name not in args.name:
            continue
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = create_model(name)
        flops, params = count_flops_params(model, spec.input_shape)
        rows.append(
            {"name": name, "params": params, "flops": flops, "input_shape": list(spec.input_shape),
             "num_classes": spec.num_classes}
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        width = max(len("model"), *(len(str(r["name"])) for r in rows))
        print(f"{'model':<{width}} {'params':>12} {'FLOPs (MACs)':>14}  input")
        for r in rows:
            shape = "x".join(str(s) for s in r["input_shape"])  # type: ignore[attr-defined]
            print(f"{r['name']:<{width}} {r['params']:>12,} {r['flops']:>14,}  {shape}, {r['num_classes']} classes")
    return 0


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
    from effrep_hpc.prune import planned_cost, widths_text

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
    rounded = f" (pruned layers rounded down to multiples of {args.round_to})" if args.round_to > 1 else ""
    print(f"  widths after{rounded}: {widths_text(report['widths_after'])}")
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
    if not rows:
        print(f"{args.model} has no prunable conv layers (filter pruning removes conv filters)")
        return 0
    print(f"{'layer':<18} {'paper ids':<14} {'width':>6} {'FLOPs %':>8}  scored by")
    for r in rows:
        ids = ",".join(str(i) for i in r["paper_ids"])  # type: ignore[attr-defined]
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


def cmd_quant_markov(args: argparse.Namespace) -> int:
    """Exact stationary excess loss of SR and BC on a noisy quadratic, per learning rate."""
    from effrep_hpc.quant.markov import markov_report

    result = markov_report(args.mu, args.sigma, args.delta, list(args.lr), args.wstar)
    if args.plot:  # written first, so that --json can name it inside the one JSON document on stdout
        from analysis.common import save_figure
        from analysis.quant import markov_figure

        target = Path(args.plot)
        target.parent.mkdir(parents=True, exist_ok=True)
        result["plot"] = str(save_figure(markov_figure(result), target))
    if args.json:
        print(json.dumps(result, indent=1), flush=True)
        return 0
    p = result["problem"]
    print(f"f(w) = {p['mu']:g}/2 (w - {p['wstar']:g})^2, gradient noise +-{p['sigma']:g}, grid {p['delta']:g} Z")
    print(f"{'lr':>10}  {'SR excess':>12}  {'BC excess':>12}")
    for lr in args.lr:
        key = repr(float(lr))
        print(f"{lr:>10g}  {result['excess']['sr'][key]:>12.6g}  {result['excess']['bc'][key]:>12.6g}")
    if p["bc_limit"] > 0:
        print(f"(w* is off the grid: BC's excess tends to {p['bc_limit']:.6g} as lr -> 0, SR's stays at its plateau)")
    if args.plot:
        print(f"plot: {result['plot']}", flush=True)
    return 0


def cmd_quant_export(args: argparse.Namespace) -> int:
    """Pack a trained quantized model at k bits per weight plus a per-layer scale."""
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
    print(f"packed: {rep.path}", flush=True)
    return 0 if rep.identical else 1


def add_commands(sub: Any, group: Callable[[str], Any]) -> None:
    """Add the tools to the `effrep` parser (prune and quant tools into their groups)."""
    fmt = argparse.RawDescriptionHelpFormatter

    def add(
        parent: Any, name: str, func: Callable[[argparse.Namespace], int], summary: str, description: str
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=summary, description=description, formatter_class=fmt)
        p.set_defaults(func=func)
        return p

    p = add(sub, "models", cmd_models, "List registered models with parameter counts and FLOPs.",
            "List registered models with parameter counts and FLOPs (MACs) at their default input size.")
    p.add_argument("name", nargs="*", help="only these models")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p = sub.add_parser(
        "analyze",
        help="Figures and VTK from HDF5 files (same as `python -m analysis`).",
        description="Figures and VTK from HDF5 files; `effrep analyze --help` lists the analysis commands.",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="analysis command and its options, e.g. contour FILE")

    prune = group("prune")
    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="registered model name (see `effrep models`)")
        p.add_argument("--input-shape", type=_parse_shape, default=None, metavar="C,H,W",
                       help="input shape without the batch dim [default: the model's registered shape]")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add(prune, "flops", cmd_flops, "FLOPs and params before/after a preset or per-layer ratios (no weights needed).",
            "Count MACs of conv + linear layers and all parameters of MODEL before and after pruning, as the\n"
            "paper counts them (ResNet projection shortcuts left out unless --count-shortcuts). With --json\n"
            "prints one object: flops_before/after, params_before/after, flops_reduction_pct,\n"
            "params_reduction_pct, widths_after and, for a preset, the paper's published reductions.\n\n"
            "  effrep prune flops --model vgg16 --preset vgg16-a --json\n"
            "  effrep prune flops --model digits_vgg --ratio features.0=0.5 --ratio 6=0.5")
    model_args(p)
    p.add_argument("--preset", default=None, help="a paper preset (see `effrep prune presets`)")
    p.add_argument("--ratio", type=_parse_ratio, action="append", metavar="LAYER=RATIO",
                   help="fraction of filters removed from LAYER (name or paper id); repeat; overrides the preset")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the classifier [default: the model's]")
    p.add_argument("--count-shortcuts", action="store_true", help="count ResNet projection shortcuts too")
    p.add_argument("--round-to", type=int, default=1, metavar="K",
                   help="round each pruned layer's kept filters down to a multiple of K, at least K (prune.round_to)")

    p = add(prune, "layers", cmd_layers, "List a model's prunable layers, paper layer ids, widths and FLOP shares.",
            "Every prune group of MODEL: the name to use in prune.ratios / prune.layers, the paper's layer\n"
            "ids it covers, its filter count, the share of the model's FLOPs its cut touches (the layer and\n"
            "its readers) and the layer whose filters rank it.")
    model_args(p)

    p = add(prune, "presets", cmd_presets, "List the paper's pruned models (VGG-16-A, ResNet-56-A/B, ...).",
            "The presets of Li et al. with their model, per-layer ratios (keyed by paper layer id) and the\n"
            "FLOP/parameter reductions published in the paper's Table 2.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


    quant = group("quant")
    m = quant.add_parser(
        "markov",
        help="Exact stationary excess loss of SR and BC on f(w) = mu/2 (w - w*)^2 with gradient noise +-sigma.",
        description="The exact stationary distribution (a linear solve, not a simulation) of SR on the grid delta*Z "
        "(the paper's grid, quant.grid=paper, without clipping) and of BC's float iterate, for each learning rate; "
        "prints E[f] - f* per algorithm and lr. SR's excess stops depending on lr once lr is small; BC's keeps "
        "shrinking. A solve whose residual ||pi P - pi||_1 is not at machine precision (> 1e-12) is refused "
        "(exit 2), never printed. See effrep_hpc/quant/markov.py.",
    )
    m.add_argument("--mu", type=float, required=True, help="curvature of the quadratic")
    m.add_argument("--sigma", type=float, required=True, help="gradient noise: +-sigma with probability 1/2 each")
    m.add_argument("--delta", type=float, required=True, help="grid resolution")
    m.add_argument("--lr", type=float, nargs="+", required=True, help="learning rates")
    m.add_argument("--wstar", type=float, default=0.0, help="the minimiser (default 0, on the grid)")
    m.add_argument("--json", action="store_true",
                   help="print the full result as one JSON document (with --plot, its path is the key \"plot\")")
    m.add_argument("--plot", default=None, metavar="PATH", help="also write a plot of excess loss against lr")
    m.set_defaults(func=cmd_quant_markov)

    e = quant.add_parser(
        "export",
        help="Pack a trained quantized model (k bits per weight + per-layer scale) and check the reload.",
        description="Pack the quantized layers of a checkpoint written by `quant train` (run.out/quant_checkpoint.pt) "
        "or `quant sweep` (<sweep>_runs/run_XXXX.pt); other parameters stay float32. The packed file reloads to "
        "bit-identical outputs (checked); the size ratio against float32 is printed.",
    )
    e.add_argument("checkpoint", help="a quantized-training checkpoint")
    e.add_argument("-o", "--output", default=None, help="packed file to write [default: <checkpoint>.packed.pt]")
    e.set_defaults(func=cmd_quant_export)
