"""Run every benchmark in benchmarks/ and write one JSON summary and one Markdown table.

    python benchmarks/run_all.py [--device cpu|cuda] [--quick] [--only NAME ...] [--skip NAME ...]
                                 [--out DIR] [--timeout SECONDS] [--list]

The benchmarks are found by listing this folder: every ``*.py`` except this file and names that start with
``_``. Each runs in a process of its own, with the arguments of the chosen mode (``PLANS``; a benchmark not
listed there gets ``--quick`` in quick mode, and ``--device cuda`` on CUDA, when its source mentions those
options, else no arguments). With ``--device cuda`` one more entry, ``landscape_gpu``, measures the loss-landscape
evaluation on the GPU: grid points per second with 1 and with K points per forward pass, and bf16 against fp32
(see :func:`gpu_landscape`). ``--device cuda`` where CUDA is not available stops at once with one line, exit 2.

Modes: ``--device cpu`` runs every benchmark as its defaults say (the README's figures; long on 2 cores);
``--quick`` makes each a smoke run (smaller problems: the ratios are indicative, the targets judged on them
too); ``--device cuda`` runs what uses a device on the GPU at full size and the CPU-only benchmarks (MPI
scaling, Hessian cost, trajectory memory, progressive order) in their quick form, to stay within 8 minutes.

Output (``--out``, default ``runs/bench/<time>-<device>[-quick]``): ``summary.json`` (every benchmark's
RESULT, time, exit status), ``summary.md`` (the table, also printed) and ``logs/<name>.log`` (full output).
The exit status is 0 when every benchmark ran (even if it missed a target), 1 when one failed to run.

The RESULT convention. A benchmark prints, as the last line of its output that starts with ``RESULT ``, one
JSON object (``json.dumps`` on one line)::

    RESULT {"benchmark": "<file name without .py>",
            "summary": "<one line: the key figures in words>",                      (optional)
            "figures": {"<name>": <number | string | bool | null>, ...},            (units in the names: _s, _ms, _pt_s)
            "ratios": {"<name>": <number>, ...},                                    (the ratios it prints; optional)
            "targets": [{"name": "<what>", "value": <number | null>, "op": ">=" | "<=",
                         "target": <number>, "met": <bool>}, ...],                  (its stated targets; optional)
            "passed": true | false | null}                                          (all targets met; null: none judged)

It keeps printing its human-readable output as before; the RESULT line comes last. A benchmark without one
still runs: the table says "no RESULT line" and keeps its time and exit status. Accept ``--quick`` for a smoke
run of a few minutes on 2 CPU cores, and ``--device`` if it can use a GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PREFIX = "RESULT "
BUDGET_S = 8 * 60  # the whole kit on one GPU
# bf16 against fp32 at the same points: the largest relative difference of a loss, and of an accuracy (in
# percentage points) allowed. bf16 keeps 8 significant bits (relative rounding 2**-8 = 0.4% per operation).
BF16_LOSS_RTOL = 0.02
BF16_ACC_ATOL = 1.0

# Arguments per mode: "full" (--device cpu), "quick" (--quick, either device), "cuda" (--device cuda).
# A benchmark missing here, or a mode missing for it, gets the defaults described in the module docstring.
PLANS: dict[str, dict[str, list[str]]] = {
    "curvature_map_scaling": {"full": [], "quick": ["--quick"], "cuda": ["--quick"]},
    # the eigenvalue convergence (hundreds of HVPs) takes most of its time: quick runs time one HVP only
    "hessian_throughput": {"full": [], "quick": ["--quick", "--skip-convergence"], "cuda": ["--quick", "--skip-convergence"]},
    "landscape_throughput": {"full": [], "quick": ["--quick"], "cuda": ["--quick"]},
    "progressive_scan": {"full": [], "quick": ["--quick"], "cuda": ["--quick"]},
    "prune_speedup": {
        "full": [],
        "quick": ["--batch-sizes", "32", "--layouts", "channels_last", "--warmup", "1", "--repeats", "5"],
        "cuda": ["--device", "cuda", "--batch-sizes", "32", "128", "512", "--layouts", "contiguous"],
    },
    "quant_overhead": {"full": [], "quick": ["--quick"], "cuda": ["--device", "cuda"]},
    "queue_sim": {"full": [], "quick": ["--quick"], "cuda": []},
    "trajectory_memory": {"full": [], "quick": ["--quick"], "cuda": ["--quick"]},
}
GPU_ENTRY = "landscape_gpu"


def discover(folder: Path = HERE) -> list[Path]:
    """The benchmark scripts in ``folder``: every .py file but this one and private (``_``) ones, by name."""
    return sorted(p for p in folder.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))


def plan_args(name: str, source: str, device: str, quick: bool) -> list[str]:
    """The arguments benchmark ``name`` (whose code is ``source``) runs with for ``device`` and ``quick``."""
    mode = "quick" if quick else ("cuda" if device == "cuda" else "full")
    plan = PLANS.get(name, {})
    if mode in plan:
        args = list(plan[mode])
    else:
        args = ["--quick"] if (quick or device == "cuda") and '"--quick"' in source else []
        if device == "cuda" and '"--device"' in source:
            args += ["--device", "cuda"]
    if quick and device == "cuda" and '"--device"' in source and "--device" not in args:
        args += ["--device", "cuda"]
    return args


def parse_result(output: str) -> Optional[dict[str, Any]]:
    """The JSON object of the last ``RESULT `` line in ``output``; None when there is none or it is not a JSON object."""
    for line in reversed(output.splitlines()):
        if line.startswith(PREFIX):
            try:
                value = json.loads(line[len(PREFIX):])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def status(returncode: Optional[int], timed_out: bool, result: Optional[dict[str, Any]]) -> str:
    """One word or phrase for the table: pass, FAIL, no target, no RESULT line, error (exit N), timeout."""
    if timed_out:
        return "timeout"
    if result is None:
        return "no RESULT line" if returncode == 0 else f"error (exit {returncode})"
    passed = result.get("passed")
    word = "pass" if passed is True else "FAIL" if passed is False else "no target"
    return word if returncode == 0 else f"{word} (exit {returncode})"


def fmt(value: Any) -> str:
    """A number for the table: three significant digits, integers whole, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    return "n/a" if value is None else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row_cells(row: dict[str, Any], most: int = 6) -> list[str]:
    """The table cells of one benchmark: name, key figures, ratios, time, targets, result."""
    result = row.get("result") or {}
    figures = result.get("figures") or {}
    summary = result.get("summary") or "; ".join(f"{k} {fmt(v)}" for k, v in list(figures.items())[:4])
    ratios = list((result.get("ratios") or {}).items())
    ratio_text = "; ".join(f"{k} {fmt(v)}x" for k, v in ratios[:most]) + ("; ..." if len(ratios) > most else "")
    targets = "; ".join(
        f"{t.get('name', '?')}: {fmt(t.get('value'))} {t.get('op', '')} {fmt(t.get('target'))} "
        f"{'met' if t.get('met') else 'missed'}"
        for t in result.get("targets") or []
    )
    return [row["benchmark"], summary or "-", ratio_text or "-", f"{row['seconds']:.0f} s", targets or "-", row["status"]]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of all benchmarks (one line each)."""
    lines = ["| benchmark | key figures | ratios | time | targets | result |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def run_one(name: str, cmd: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Run one benchmark command in its own process group; its row (time, exit status, RESULT, status)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.setdefault("OMP_NUM_THREADS", "1")
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # so a timeout also ends what it started (mpiexec and its ranks)
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    seconds = time.perf_counter() - began
    log.write_text(f"$ {' '.join(cmd)}\n{output}")
    result = parse_result(output)
    return {"benchmark": name, "command": cmd[1:], "seconds": seconds, "returncode": proc.returncode, "timed_out": timed_out,
            "status": status(None if timed_out else proc.returncode, timed_out, result), "result": result, "log": str(log)}


def host_info(device: str) -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(), "cores": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    info["torch"] = torch.__version__
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ---------------------------------------------------------------------------------------------------------------
# The GPU entry: loss-landscape evaluation on CUDA (run as `run_all.py --gpu-landscape`, in a process of its own).


def gpu_landscape(quick: bool) -> dict[str, Any]:
    """Points/s of ``evaluate_points`` on CUDA with 1 and K points per pass, and bf16 against fp32; a RESULT object.

    Two models, each after one epoch of SGD on its training set, evaluated on it at the points of a grid in
    [-1, 1]^2 along two filter-normalized random directions, batches of 256 (the config's default): the digits
    CNN on the digits data (a small model: where several points per pass pay) and ResNet-56 (the landscape
    paper's model) on synthetic CIFAR-shaped data. K is what ``points_per_pass="auto"`` picks, or 8 where
    it picks 1 (said in the output). If a batched pass fails under autocast, ``evaluate_points`` falls back
    to one point per pass, which the bf16 rate then shows. fp32 is strict (TF32 off for convolutions and matmuls) and is the
    reference for the values. ``evaluate_points`` has no dtype option, so bf16 is this benchmark's own path:
    ``torch.autocast("cuda", torch.bfloat16)`` around the same call (convolutions and linear layers in bf16;
    losses, sums and BN as autocast keeps them). Tolerance: every loss within BF16_LOSS_RTOL (relative) and
    every accuracy within BF16_ACC_ATOL percentage points of its fp32 value.
    """
    import numpy as np
    import torch

    from effrep_hpc.data import load_dataset
    from effrep_hpc.landscape.directions import random_direction
    from effrep_hpc.landscape.evaluate import EvalData, evaluate_points, plan_points_per_pass
    from effrep_hpc.models import create_model
    from effrep_hpc.train.loop import train_epoch

    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    batch = 256
    gpu = torch.cuda.get_device_name(0)

    def measure(label: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, side: int) -> dict[str, Any]:
        torch.manual_seed(0)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        train_epoch(model, opt, x, y, batch_size=128, generator=torch.Generator().manual_seed(0))
        model.eval()
        data = EvalData(x, y)
        w0 = {k: p.detach().clone() for k, p in model.named_parameters()}
        dx, dy = random_direction(model, 1), random_direction(model, 2)
        axis = np.linspace(-1, 1, side)
        coords = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
        ids = np.arange(len(coords))
        k_auto = plan_points_per_pass(model, data, batch_size=batch)
        # where auto picks 1, ask for 8: the answer is what evaluate_points will use (1 if the model cannot be vmapped)
        k = k_auto if k_auto > 1 else plan_points_per_pass(model, data, batch_size=batch, points_per_pass=8)

        def rate(n: int, per_pass: int, bf16: bool = False) -> tuple[float, dict[str, np.ndarray]]:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                evaluate_points(model, w0, dx, dy, coords[:per_pass], data, batch_size=batch, points_per_pass=per_pass,
                                point_ids=ids[:per_pass])  # warm-up: cuDNN's choices, the allocator
                torch.cuda.synchronize()
                began = time.perf_counter()
                values = evaluate_points(model, w0, dx, dy, coords[:n], data, batch_size=batch, points_per_pass=per_pass,
                                         point_ids=ids[:n])
                torch.cuda.synchronize()
            return n / (time.perf_counter() - began), values

        one, _ = rate(max(k, len(coords) // 4), 1)
        fp32, ref = rate(len(coords), k)
        bf16, low = rate(len(coords), k, bf16=True)
        loss_rel = float(np.max(np.abs(low["train_loss"] - ref["train_loss"]) / np.abs(ref["train_loss"])))
        acc_abs = float(np.max(np.abs(low["train_acc"] - ref["train_acc"])))
        k_text = f"K = {k}" + ("" if k == k_auto else " (auto picks 1)") if k > 1 else "K = 1 (cannot be vmapped)"
        print(f"{label}, {len(x)} samples, {len(coords)} grid points, batch {batch}: fp32 (TF32 off) 1 point per pass "
              f"{one:.2f} pt/s, {k_text} {fp32:.2f} pt/s ({fp32 / one:.2f}x); bf16 (autocast) {bf16:.2f} pt/s "
              f"({bf16 / fp32:.2f}x fp32); bf16 vs fp32: losses within {100 * loss_rel:.3f}%, accuracies within "
              f"{acc_abs:.3f} points", flush=True)
        return {"samples": len(x), "points": len(coords), "k": k, "k_auto": k_auto, "pt_s_k1": one, "pt_s_k": fp32,
                "pt_s_k_bf16": bf16, "k_over_1": fp32 / one, "bf16_over_fp32": bf16 / fp32, "bf16_loss_rel_diff_max": loss_rel,
                "bf16_acc_diff_max_points": acc_abs}

    print(f"{gpu}, torch {torch.__version__}", flush=True)
    digits = load_dataset("digits", device=device)
    results = {"digits_cnn": measure("digits CNN", create_model("digits_cnn").to(device), digits.x_train, digits.y_train,
                                     8 if quick else 16)}
    syn = load_dataset("synthetic", input_shape=(3, 32, 32), train_size=2048 if quick else 10000, test_size=1, device=device)
    results["resnet56"] = measure("ResNet-56", create_model("resnet56").to(device), syn.x_train, syn.y_train, 4 if quick else 8)
    figures: dict[str, Any] = {"gpu": gpu}
    ratios = {}
    targets = []
    for model, r in results.items():
        figures.update({f"{model}_{key}": value for key, value in r.items() if key not in ("k_over_1", "bf16_over_fp32")})
        ratios.update({f"{model}_{key}": r[key] for key in ("k_over_1", "bf16_over_fp32")})
        targets.append({"name": f"{model}: bf16 losses within {100 * BF16_LOSS_RTOL:g}% of fp32", "op": "<=",
                        "value": r["bf16_loss_rel_diff_max"], "target": BF16_LOSS_RTOL})
        targets.append({"name": f"{model}: bf16 accuracies within {BF16_ACC_ATOL:g} points of fp32", "op": "<=",
                        "value": r["bf16_acc_diff_max_points"], "target": BF16_ACC_ATOL})
    for t in targets:
        t["met"] = t["value"] <= t["target"]
    summary = "; ".join(f"{m}: {r['pt_s_k1']:.1f} pt/s (K=1), {r['pt_s_k']:.1f} (K={r['k']}), {r['pt_s_k_bf16']:.1f} bf16"
                        for m, r in results.items())
    return {"benchmark": GPU_ENTRY, "summary": f"{gpu}: {summary}", "figures": figures, "ratios": ratios, "targets": targets,
            "passed": all(t["met"] for t in targets)}


# ---------------------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmarks of the chosen mode, print the table, write summary.json and summary.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke runs: smaller problems, indicative ratios")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="leave these benchmarks out")
    parser.add_argument("--out", type=Path, default=None, help="folder for summary.json, summary.md and logs/")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one benchmark may take before it is stopped")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and their arguments, run nothing")
    parser.add_argument("--gpu-landscape", action="store_true", help=argparse.SUPPRESS)  # the GPU entry, in its own process
    args = parser.parse_args(argv)
    if (args.device == "cuda" and not args.list) or args.gpu_landscape:
        import torch

        if not torch.cuda.is_available():
            print("run_all: --device cuda asked for, but CUDA is not available here (torch.cuda.is_available() is False)",
                  file=sys.stderr)
            return 2
    if args.gpu_landscape:
        print(PREFIX + json.dumps(gpu_landscape(args.quick)), flush=True)
        return 0

    entries = [(p.stem, [sys.executable, str(p), *plan_args(p.stem, p.read_text(), args.device, args.quick)])
               for p in discover()]
    if args.device == "cuda":
        entries.append((GPU_ENTRY, [sys.executable, __file__, "--gpu-landscape", *(["--quick"] if args.quick else [])]))
    known = {name for name, _ in entries}
    unknown = sorted((set(args.only or []) | set(args.skip)) - known)
    if unknown:
        print(f"run_all: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    entries = [(n, c) for n, c in entries if (args.only is None or n in args.only) and n not in args.skip]
    if args.list:
        for name, cmd in entries:
            print(f"{name}: {' '.join(cmd[2:]) or '(defaults)'}")
        return 0

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "runs" / "bench" / f"{stamp}-{args.device}{'-quick' if args.quick else ''}"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    rows = []
    for name, cmd in entries:
        print(f"== {name} {' '.join(cmd[2:])}", flush=True)
        row = run_one(name, cmd, out / "logs" / f"{name}.log", args.timeout)
        rows.append(row)
        summary = (row["result"] or {}).get("summary", "")
        print(f"   {row['seconds']:.0f} s, {row['status']}" + (f": {summary}" if summary else ""), flush=True)
    total = time.perf_counter() - began
    mode = f"--device {args.device}" + (" --quick" if args.quick else "")
    note = ""
    if args.device == "cuda" and not args.quick and total > BUDGET_S:
        note = f" (over the {BUDGET_S // 60}-minute budget for one GPU)"
    table = markdown_table(rows)
    header = f"Benchmarks, {mode}, {_dt.date.today().isoformat()}: {len(rows)} in {total / 60:.1f} min{note}.\n\n"
    if args.quick:
        header += "Quick runs use smaller problems: their ratios are indicative, and targets are judged on them as measured.\n\n"
    (out / "summary.md").write_text(header + table)
    summary_json = {"device": args.device, "quick": args.quick, "started": stamp, "total_s": total,
                    "host": host_info(args.device), "benchmarks": rows}
    (out / "summary.json").write_text(json.dumps(summary_json, indent=1) + "\n")
    print("\n" + header + table, end="")
    print(f"written: {out / 'summary.json'}, {out / 'summary.md'}, logs in {out / 'logs'}")
    broken = [r["benchmark"] for r in rows if r["timed_out"] or (r["result"] is None and r["returncode"] != 0)]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
