"""Measured speed-up of physically pruned models over their originals, next to the FLOP ratio.

For each preset the original model and its pruned copy (L1 ranking, surgery: a plain smaller model) are
timed on the same random input, in NCHW (contiguous) and in channels-last layout (oneDNN's native CPU
layout, about 2x faster for both): warm-up rounds first, then interleaved repetitions (each round runs both
models, alternating which goes first) and the median per model. Threads, backend and hardware are
printed with the table, because a speed-up only means something next to them.

    .venv/bin/python benchmarks/prune_speedup.py                       # CPU, 1 thread, batch 1/32/128
    .venv/bin/python benchmarks/prune_speedup.py --threads 2 --presets resnet56-b --json out.json
    .venv/bin/python benchmarks/prune_speedup.py --device cuda --batch-sizes 32 128 512 --layouts contiguous

Targets (CPU, one thread, batch 32): VGG-16-A >= 1.4x, ResNet-110-B >= 1.2x, and no pruned model slower
than its original at any batch size. ``--strict`` exits with 1 when a target is missed.

The last line printed is ``RESULT {json}`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from effrep_hpc.models import create_model, model_spec
from effrep_hpc.prune import compare_costs, get_preset, median_times, prune_by_ratios

TARGETS = {"vgg16-a": 1.4, "resnet110-b": 1.2}  # at batch 32, CPU, one thread
TARGET_BATCH = 32


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """Threads, backend and hardware the timings were taken with."""
    env = {
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu_name(),
        "cores_visible": os.cpu_count(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def bench_preset(
    name: str,
    batch_sizes: list[int],
    device: torch.device,
    *,
    layout: str,
    warmup: int,
    repeats: int,
    seed: int,
    round_to: int = 1,
) -> list[dict]:
    """Time one preset's original and pruned models at every batch size, in one memory layout."""
    preset = get_preset(name)
    spec = model_spec(preset.model)
    torch.manual_seed(seed)
    original = create_model(preset.model).eval()
    pruned, _ = prune_by_ratios(original, preset.ratios, multiple=round_to)
    costs = compare_costs(original, pruned, spec.input_shape)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    original = original.to(device, memory_format=fmt)
    pruned = pruned.to(device, memory_format=fmt).eval()
    rows = []
    for batch in batch_sizes:
        x = torch.randn(batch, *spec.input_shape, generator=torch.Generator().manual_seed(seed)).to(device)
        x = x.contiguous(memory_format=fmt)
        t0, t1 = median_times([original, pruned], x, warmup=warmup, repeats=repeats)
        rows.append(
            {
                "preset": preset.name, "model": preset.model, "layout": layout, "round_to": round_to, "batch": batch,
                "original_ms": 1e3 * t0, "pruned_ms": 1e3 * t1, "speedup": t0 / t1, "flop_ratio": costs["flops_speedup"],
                "flops_reduction_pct": costs["flops_reduction_pct"],
            }
        )
        print(
            f"{preset.name:<12} {layout:<14} {batch:>6} {1e3 * t0:>12.2f} {1e3 * t1:>11.2f} {t0 / t1:>9.2f}x"
            f" {costs['flops_speedup']:>9.2f}x"
            + ("   <- pruned is slower" if t1 > t0 else ""),
            flush=True,
        )
    return rows


SHORT = {"contiguous": "nchw", "channels_last": "nhwc"}


def fastest_layout_rows(rows: list[dict]) -> list[dict]:
    """Per (preset, batch): the original's and the pruned model's best time over the measured layouts."""
    out = []
    keys = sorted({(r["preset"], r["batch"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for preset, batch in keys:
        group = [r for r in rows if r["preset"] == preset and r["batch"] == batch]
        orig = min(group, key=lambda r: r["original_ms"])
        pruned = min(group, key=lambda r: r["pruned_ms"])
        out.append({
            "preset": preset, "batch": batch, "layout": f"{SHORT[orig['layout']]}/{SHORT[pruned['layout']]}",
            "original_ms": orig["original_ms"], "pruned_ms": pruned["pruned_ms"],
            "speedup": orig["original_ms"] / pruned["pruned_ms"], "flop_ratio": orig["flop_ratio"],
        })
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; with --strict, exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["vgg16-a", "resnet110-b"], help="presets to time")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32, 128])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1")
    parser.add_argument("--layouts", nargs="+", choices=("contiguous", "channels_last"), default=["contiguous", "channels_last"],
                        help="memory layouts to time (both models in the same one); channels_last is oneDNN's native CPU layout")
    parser.add_argument("--round-to", type=int, default=1, metavar="K",
                        help="round pruned layers to multiples of K filters (not the paper's widths: targets are not checked)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds per batch size")
    parser.add_argument("--repeats", type=int, default=21, help="timed rounds per batch size (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results and environment to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = environment(device)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    print(f"{'preset':<12} {'layout':<14} {'batch':>6} {'original ms':>12} {'pruned ms':>11} {'measured':>10} {'FLOPs':>10}")
    rows = []
    for layout in args.layouts:
        for name in args.presets:
            rows.extend(bench_preset(name, args.batch_sizes, device, layout=layout, warmup=args.warmup,
                                     repeats=args.repeats, seed=args.seed, round_to=args.round_to))
    missed = []
    slower = [r for r in rows if r["speedup"] < 1.0]
    for r in slower:
        missed.append(f"{r['preset']} {r['layout']} batch {r['batch']}: pruned is slower ({r['speedup']:.2f}x)")
    env["round_to"] = args.round_to
    on_target_setup = device.type == "cpu" and env["threads"] == 1 and args.round_to == 1
    judged = rows
    if len(set(args.layouts)) > 1:
        # A user runs each model in whichever layout is fastest for it; compare those times.
        judged = fastest_layout_rows(rows)
        print("fastest layout of each model (original/pruned; targets are judged on these):")
        for r in judged:
            print(f"{r['preset']:<12} {r['layout']:<14} {r['batch']:>6} {r['original_ms']:>12.2f} {r['pruned_ms']:>11.2f} "
                  f"{r['speedup']:>9.2f}x {r['flop_ratio']:>9.2f}x")
    for r in judged:
        target = TARGETS.get(r["preset"])
        if target is not None and r["batch"] == TARGET_BATCH and on_target_setup and r["speedup"] < target:
            missed.append(f"{r['preset']} {r['layout']} batch {TARGET_BATCH}: {r['speedup']:.2f}x < target {target}x")
    if on_target_setup:
        print("targets (CPU, 1 thread, batch 32): " + ("all met" if not missed else "; ".join(missed)))
    elif slower:
        print("pruned slower than original: " + "; ".join(missed))
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "results": rows, "missed": missed}, indent=1) + "\n")
        print(f"results: {args.json}")
    print("RESULT " + json.dumps(result_line(rows, judged, env, on_target_setup)))
    return 1 if (args.strict and missed) else 0


def result_line(rows: list[dict], judged: list[dict], env: dict, on_target_setup: bool) -> dict:
    """The machine-readable summary (benchmarks/README.md): measured speed-ups beside FLOP ratios, and the targets."""
    ratios = {f"{r['preset']}_batch{r['batch']}_speedup": r["speedup"] for r in judged}
    ratios.update({f"{r['preset']}_flop_ratio": r["flop_ratio"] for r in judged})
    figures = {f"{r['preset']}_batch{r['batch']}_{side}_ms": r[f"{side}_ms"] for r in judged for side in ("original", "pruned")}
    figures.update(device=env["device"], threads=env["threads"])
    slowest = min(rows, key=lambda r: r["speedup"])
    targets = [{"name": "no pruned model slower than its original (every batch size and layout)", "value": slowest["speedup"],
                "op": ">=", "target": 1.0, "met": slowest["speedup"] >= 1.0}]
    if on_target_setup:
        for r in judged:
            if r["preset"] in TARGETS and r["batch"] == TARGET_BATCH:
                targets.append({"name": f"{r['preset']} at batch {TARGET_BATCH} (CPU, 1 thread)", "value": r["speedup"],
                                "op": ">=", "target": TARGETS[r["preset"]], "met": r["speedup"] >= TARGETS[r["preset"]]})
    summary = ", ".join(f"{r['preset']} b{r['batch']} {r['speedup']:.2f}x (FLOPs {r['flop_ratio']:.2f}x)" for r in judged
                        if r["batch"] == TARGET_BATCH) or f"slowest {slowest['speedup']:.2f}x"
    return {"benchmark": "prune_speedup", "summary": f"{env['device']}: {summary}", "figures": figures, "ratios": ratios,
            "targets": targets, "passed": all(t["met"] for t in targets)}


if __name__ == "__main__":
    sys.exit(main())
