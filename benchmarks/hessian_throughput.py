"""Hessian throughput: cost of one Hessian-vector product, and HVPs to the top eigenvalue, Lanczos vs power.

Measured in one process, per model, on the same data (the mean loss over the whole set, batches of 256):
  (a) time of one HVP relative to one gradient (``model(x)`` + ``autograd.grad`` over the same batches,
      the weights the Hessian covers), for double backward (graphs rebuilt every product, and kept
      between products: the default), and forward-over-reverse (``torch.func.jvp`` of ``grad``);
  (b) HVPs until the top eigenvalue is within relative 1e-3 of a reference value, for our Lanczos
      (full reorthogonalization) and for plain power iteration as single-device libraries run it
      (PyHessian-style: Rayleigh quotient, normalize, repeat); also what each uses with its own stopping
      rule at tol 1e-3, and scipy's ``eigsh`` (ARPACK) on the same operator. The reference is a Lanczos
      run to relative 1e-6 from another seed; the counts come from the estimate after every HVP.
Models: the digits CNN (5 epochs of SGD on the digits train split, 1,437 samples) and ResNet-20 (one
epoch of SGD on synthetic 32x32 CIFAR-shaped data, which sets its BN statistics; 1,024 samples).
BN in eval mode, cross-entropy, weights only (``landscape.bias_bn=ignore``).

Targets: HVP <= 3x a gradient; Lanczos needs at most half the HVPs of power iteration.

Usage: python benchmarks/hessian_throughput.py [--quick] [--samples N] [--conv-samples N] [--power-cap N]

The last line printed is ``RESULT {json}`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse.linalg as sla  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effrep_hpc.data import load_dataset  # noqa: E402
from effrep_hpc.landscape.curvature import HessianOperator, hessian_eigenvalues  # noqa: E402
from effrep_hpc.models import create_model  # noqa: E402
from effrep_hpc.train.loop import train_epoch  # noqa: E402
from effrep_hpc.train.losses import batch_loss  # noqa: E402

BATCH = 256
TOL = 1e-3
HVP_TARGET = 3.0  # one HVP (the default implementation) <= 3x one gradient
LANCZOS_TARGET = 0.5  # Lanczos needs at most half the HVPs of power iteration
DEFAULT_HVP = "double backward, graphs kept (default)"


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def plain_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str]) -> None:
    """The textbook gradient of the mean loss over (x, y): forward, loss, backward, batch by batch."""
    params = [p for n, p in model.named_parameters() if n in set(names)]
    model.eval()
    for s in range(0, len(x), BATCH):
        xb, yb = x[s : s + BATCH], y[s : s + BATCH]
        torch.autograd.grad(batch_loss(model(xb), yb) * (len(yb) / len(x)), params)


def hvp_cost(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict[str, float]:
    """Print the time of one HVP relative to one gradient for each implementation; return those ratios."""
    ops = {
        "double backward": HessianOperator(model, x, y, batch_size=BATCH, cache_bytes=0),
        "double backward, graphs kept (default)": HessianOperator(model, x, y, batch_size=BATCH),
        "forward-over-reverse": HessianOperator(model, x, y, batch_size=BATCH, hvp="forward_over_reverse"),
    }
    first = next(iter(ops.values()))
    v = torch.randn(first.dim, generator=torch.Generator().manual_seed(0)).to(first.dtype)
    t_grad = best_of(lambda: plain_gradient(model, x, y, first.names), repeats)
    parts = [f"gradient {t_grad:.3f} s"]
    ratios = {}
    for label, op in ops.items():
        t = best_of(lambda op=op: op(v), repeats)
        parts.append(f"{label} {t:.3f} s = {t / t_grad:.2f}x")
        ratios[label] = t / t_grad
    kept = ops["double backward, graphs kept (default)"]
    cached = f"{kept.cached_bytes / 2**20:.0f} MiB of graphs kept ({kept.cached_batches} of {len(kept.batches)} batches)"
    print(f"{name}: one HVP vs one gradient: " + "; ".join(parts) + f"; {cached}", flush=True)
    return ratios


def power_iteration(op: HessianOperator, max_iter: int, seed: int) -> list[float]:
    """Plain power iteration as single-device libraries run it; the Rayleigh quotient after every HVP."""
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(op.dtype)
    v = v / v.norm()
    history = []
    for _ in range(max_iter):
        hv = op(v)
        history.append(float(torch.dot(hv, v)))
        v = hv / hv.norm()
    return history


def library_stop(history: list[float], tol: float) -> int:
    """HVPs after which a library's rule stops: relative change of the estimate below ``tol`` (PyHessian's test)."""
    for i in range(1, len(history)):
        if abs(history[i] - history[i - 1]) / (abs(history[i - 1]) + 1e-6) < tol:
            return i + 1
    return len(history)


def first_within(history: list[float], ref: float, tol: float) -> int | None:
    """HVPs after which the estimate is within ``tol`` of ``ref`` and stays there; None if never."""
    ok = np.abs(np.asarray(history) - ref) <= tol * abs(ref)
    if not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return int(bad[-1]) + 2 if len(bad) else 1


def eigsh_top(op: HessianOperator, tol: float, seed: int) -> tuple[float, int]:
    """scipy's ARPACK on the operator: top eigenvalue and the HVPs it used."""
    start = op.hvps

    def matvec(x: np.ndarray) -> np.ndarray:
        return op(torch.from_numpy(np.ascontiguousarray(x).ravel())).double().numpy()

    lin = sla.LinearOperator((op.dim, op.dim), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(op.dim)
    value = sla.eigsh(lin, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0]
    return float(value), op.hvps - start


def convergence(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, power_cap: int) -> dict[str, float | None]:
    """Print HVPs to relative 1e-3 on the top eigenvalue: Lanczos vs power iteration (and eigsh); return the counts."""
    op = HessianOperator(model, x, y, batch_size=BATCH)
    ref = hessian_eigenvalues(op, 1, tol=1e-6, max_iter=300, seed=99)
    top = ref.top[0]
    ours = hessian_eigenvalues(op, 1, tol=TOL, seed=1)
    lanczos_hist = list(ours.history)
    if ours.hvps < 300 and first_within(lanczos_hist, top, TOL) is None:  # ran out before 1e-3: continue
        lanczos_hist = list(hessian_eigenvalues(op, 1, tol=1e-6, max_iter=300, seed=1).history)
    power_hist = power_iteration(op, power_cap, seed=1)
    lz, pw = first_within(lanczos_hist, top, TOL), first_within(power_hist, top, TOL)
    stop = library_stop(power_hist, TOL)
    ratio = f"{lz / pw:.2f}" if lz and pw else "n/a"
    pw_text = str(pw) if pw else f"> {power_cap} (not reached)"
    print(f"{name}: top eigenvalue {top:.6g} (reference: Lanczos to 1e-6, {ref.hvps} HVPs, min eigenvalue {ref.min:.4g})",
          flush=True)
    print(f"  HVPs to relative 1e-3: Lanczos {lz}, power iteration {pw_text}; Lanczos/power = {ratio}", flush=True)
    print(f"  own stopping at tol 1e-3: Lanczos {ours.hvps} HVPs (top and min eigenvalue; top error "
          f"{abs(ours.top[0] - top) / abs(top):.1e}, min {ours.min:.4g}); power iteration stops after {stop} HVPs "
          f"with error {abs(power_hist[stop - 1] - top) / abs(top):.1e} (top only)", flush=True)
    value, n = eigsh_top(op, TOL, seed=1)
    print(f"  scipy eigsh (ARPACK, k=1, tol 1e-3): {n} HVPs, error {abs(value - top) / abs(top):.1e} (top only)",
          flush=True)
    return {"top_eigenvalue": top, "lanczos_hvps": lz, "power_hvps": pw, "eigsh_hvps": n,
            "lanczos_over_power": lz / pw if lz and pw else None}


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> None:
    """A few epochs of SGD with momentum: the model near a minimum (and BN statistics that match its weights)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        train_epoch(model, opt, x, y, batch_size=64, generator=gen)
    model.eval()


def main() -> None:
    """Measure both models and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 128 ResNet samples, fewer repeats")
    parser.add_argument("--samples", type=int, default=1024, help="synthetic samples for ResNet-20's HVP cost")
    parser.add_argument("--conv-samples", type=int, default=None,
                        help="ResNet-20 samples for the eigenvalue convergence (default: --samples)")
    parser.add_argument("--power-cap", type=int, default=300, help="most power iterations before giving up")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--skip-digits", action="store_true", help="leave out the digits CNN")
    parser.add_argument("--skip-resnet", action="store_true", help="leave out ResNet-20")
    parser.add_argument("--skip-convergence", action="store_true", help="only the cost of one HVP")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.conv_samples, args.power_cap = 128, 128, 60
    conv_samples = args.conv_samples or args.samples
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU", flush=True)
    torch.manual_seed(0)
    repeats = 1 if args.quick else 3
    measured: dict[str, tuple[dict[str, float], dict[str, float | None] | None]] = {}

    if not args.skip_digits:
        ds = load_dataset("digits")
        cnn = create_model("digits_cnn")
        train(cnn, ds.x_train, ds.y_train, epochs=2 if args.quick else 5, lr=0.05)
        label = f"digits CNN ({len(ds.x_train)} samples)"
        cost = hvp_cost(label, cnn, ds.x_train, ds.y_train, repeats)
        conv = None if args.skip_convergence else convergence(label, cnn, ds.x_train, ds.y_train, args.power_cap)
        measured["digits_cnn"] = (cost, conv)

    if not args.skip_resnet:
        syn = load_dataset("synthetic", input_shape=(3, 32, 32), train_size=max(args.samples, conv_samples), test_size=1)
        r20 = create_model("resnet20")
        train(r20, syn.x_train[: args.samples], syn.y_train[: args.samples], epochs=1, lr=0.02)
        x, y = syn.x_train[: args.samples], syn.y_train[: args.samples]
        cost = hvp_cost(f"ResNet-20 ({args.samples} synthetic 32x32)", r20, x, y, repeats)
        conv = None
        if not args.skip_convergence:
            conv = convergence(f"ResNet-20 ({conv_samples} synthetic 32x32)", r20, syn.x_train[:conv_samples],
                               syn.y_train[:conv_samples], args.power_cap)
        measured["resnet20"] = (cost, conv)
    print("RESULT " + json.dumps(result_line(measured)))


def result_line(measured: dict[str, tuple[dict[str, float], dict[str, float | None] | None]]) -> dict:
    """The machine-readable summary (benchmarks/README.md): HVP/gradient ratios, HVP counts, the two targets."""
    keys = {"double backward": "double_backward", DEFAULT_HVP: "double_backward_kept",
            "forward-over-reverse": "forward_over_reverse"}
    figures: dict[str, float | None] = {}
    ratios: dict[str, float] = {}
    targets = []
    summary = []
    for model, (cost, conv) in measured.items():
        ratios.update({f"{model}_hvp_over_gradient_{keys[label]}": value for label, value in cost.items()})
        default = cost[DEFAULT_HVP]
        targets.append({"name": f"{model}: one HVP vs one gradient", "value": default, "op": "<=", "target": HVP_TARGET,
                        "met": default <= HVP_TARGET})
        summary.append(f"{model}: HVP {default:.2f}x a gradient")
        if conv is None:
            continue
        figures.update({f"{model}_{k}": v for k, v in conv.items() if k != "lanczos_over_power"})
        value = conv["lanczos_over_power"]
        if value is not None:
            ratios[f"{model}_lanczos_over_power_hvps"] = value
        # power iteration that never got there (None) loses to a Lanczos run that did
        met = (value is not None and value <= LANCZOS_TARGET) or (conv["lanczos_hvps"] is not None and conv["power_hvps"] is None)
        targets.append({"name": f"{model}: HVPs to 1e-3, Lanczos vs power iteration", "value": value, "op": "<=",
                        "target": LANCZOS_TARGET, "met": bool(met)})
        power = conv["power_hvps"] if conv["power_hvps"] is not None else "no (never within 1e-3)"
        summary[-1] += f", Lanczos {conv['lanczos_hvps']} vs power {power} HVPs"
    return {"benchmark": "hessian_throughput", "summary": "; ".join(summary), "figures": figures, "ratios": ratios,
            "targets": targets, "passed": all(t["met"] for t in targets) if targets else None}

if __name__ == "__main__":
    main()
