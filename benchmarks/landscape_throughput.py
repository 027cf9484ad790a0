"""Loss-landscape throughput: our engine vs a research-style loop vs the forward-only bound.

Measured in one process on the same model, data and grid points:
  (a) ours: ``evaluate_points`` (parameters set from w0, several points per pass where it pays);
  (b) reference: one point at a time, a fresh deep copy of the model per point with its weights set to
      w0 + a*dx + b*dy, the data read through a DataLoader (what research scripts do);
  (c) bound: the same number of forward passes over the same in-memory data, no landscape logic.
Then the MPI scaling of a real `effrep landscape` scan: 2 ranks vs 1 rank, one thread each.

Targets on a 2-core CPU machine: digits CNN ours >= 5x reference; ResNet-20 on 2,048 synthetic 32x32
samples ours >= 0.9x the bound; 2 MPI ranks >= 1.7x one rank.

Usage: python benchmarks/landscape_throughput.py [--quick] [--skip-mpi]

The last line printed is ``RESULT {json}`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effrep_hpc.data import load_dataset  # noqa: E402
from effrep_hpc.landscape.directions import random_direction  # noqa: E402
from effrep_hpc.landscape.evaluate import EvalData, evaluate_points  # noqa: E402
from effrep_hpc.models import create_model  # noqa: E402


def points(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random (a, b) grid points in [-1, 1]^2."""
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 2))


Weights = dict[str, torch.Tensor]


def ours(
    model: torch.nn.Module, w0: Weights, dx: Weights, dy: Weights, coords: np.ndarray, data: EvalData, batch_size: int
) -> float:
    """Points/s of our engine."""
    evaluate_points(model, w0, dx, dy, coords[:2], data, batch_size=batch_size)  # warm-up
    t = time.perf_counter()
    evaluate_points(model, w0, dx, dy, coords, data, batch_size=batch_size, point_ids=np.arange(len(coords)))
    return len(coords) / (time.perf_counter() - t)


def reference(
    model: torch.nn.Module, w0: Weights, dx: Weights, dy: Weights, coords: np.ndarray, data: EvalData, batch_size: int
) -> float:
    """Points/s of a research-style loop: deep copy per point, DataLoader over the data."""
    loaders = [DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False) for _, x, y in data.splits()]
    crit = torch.nn.CrossEntropyLoss(reduction="sum")
    t = time.perf_counter()
    for a, b in coords:
        net = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(w0[name] + a * dx[name] + b * dy[name])
        net.eval()
        for loader in loaders:
            total, correct, n = 0.0, 0, 0
            with torch.no_grad():
                for xb, yb in loader:
                    out = net(xb)
                    total += crit(out, yb).item()
                    correct += (out.argmax(1) == yb).sum().item()
                    n += len(yb)
    return len(coords) / (time.perf_counter() - t)


def bound(model: torch.nn.Module, coords: np.ndarray, data: EvalData, batch_size: int) -> float:
    """Points/s if a point cost only its forward passes over in-memory batches."""
    model.eval()
    batches = [x[s : s + batch_size] for _, x, _ in data.splits() for s in range(0, len(x), batch_size)]
    with torch.no_grad():
        for xb in batches[:2]:
            model(xb)
        t = time.perf_counter()
        for _ in range(len(coords)):
            for xb in batches:
                model(xb)
    return len(coords) / (time.perf_counter() - t)


def case(name: str, model: torch.nn.Module, data: EvalData, n_points: int, batch_size: int, with_ref: bool) -> dict:
    """Measure (a), (b), (c) for one model and print them."""
    model.eval()
    w0 = {k: p.detach().clone() for k, p in model.named_parameters()}
    dx, dy = random_direction(model, 1), random_direction(model, 2)
    coords = points(n_points)
    res = {"ours": ours(model, w0, dx, dy, coords, data, batch_size), "bound": bound(model, coords, data, batch_size)}
    if with_ref:
        res["reference"] = reference(model, w0, dx, dy, coords[: max(4, n_points // 4)], data, 128)
    line = f"{name}: ours {res['ours']:.2f} pt/s, forward-only bound {res['bound']:.2f} pt/s"
    if "reference" in res:
        line += f", reference loop {res['reference']:.2f} pt/s; ours/reference = {res['ours'] / res['reference']:.1f}x"
    line += f"; ours/bound = {res['ours'] / res['bound']:.2f}x"
    print(line, flush=True)
    return res


def mpi_scaling(n_side: int) -> tuple[float, float]:
    """Wall-clock points/s of a real scan of the digits CNN on 1 and 2 MPI ranks (one thread each)."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        raise SystemExit("mpiexec not found next to python: pip install mpich mpi4py")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        base = [sys.executable, "-m", "effrep_hpc.cli"]
        cfg = str(ROOT / "configs/demo/digits.yaml")
        common = [f"run.out={tmp}/train", "run.progress=false", "run.threads=1"]
        subprocess.run([*base, "train", cfg, *common, "train.epochs=3"], check=True, env=env, stdout=subprocess.DEVNULL)
        rates = []
        for ranks in (1, 2):
            cmd = [str(mpiexec), "-n", str(ranks), sys.executable, "-m", "mpi4py", "-m", "effrep_hpc.cli", "landscape", cfg,
                   *common, f"landscape.x=-1:1:{n_side}", f"landscape.y=-1:1:{n_side}", f"landscape.surface={tmp}/s{ranks}.h5"]
            out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
            m = re.search(r"computed (\d+) point\(s\) in ([\d.]+)s", out)
            if not m:
                raise SystemExit(f"could not read the scan's timing from:\n{out}")
            rates.append(int(m.group(1)) / float(m.group(2)))
    print(f"MPI digits CNN {n_side}x{n_side}: 1 rank {rates[0]:.2f} pt/s, 2 ranks {rates[1]:.2f} pt/s; "
          f"speed-up {rates[1] / rates[0]:.2f}x", flush=True)
    return rates[0], rates[1]


def main() -> None:
    """Run the three comparisons and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points (a smoke run, noisier ratios)")
    parser.add_argument("--skip-mpi", action="store_true", help="leave out the 1-vs-2-rank comparison")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the in-process cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU", flush=True)
    torch.manual_seed(0)

    ds = load_dataset("digits")
    cnn = create_model("digits_cnn")
    digits = case("digits CNN (1437 train + 360 test)", cnn, EvalData(ds.x_train, ds.y_train, ds.x_test, ds.y_test),
                  16 if args.quick else 64, 256, with_ref=True)

    syn = load_dataset("synthetic", input_shape=(3, 32, 32), train_size=2048, test_size=1)
    r20 = create_model("resnet20")
    resnet = case("ResNet-20 (2048 synthetic 32x32)", r20, EvalData(syn.x_train, syn.y_train), 2 if args.quick else 6, 256,
                  with_ref=False)

    rates = None if args.skip_mpi else mpi_scaling(7 if args.quick else 13)
    print("RESULT " + json.dumps(result_line(digits, resnet, rates)))


def result_line(digits: dict, resnet: dict, rates: tuple[float, float] | None) -> dict:
    """The machine-readable summary (benchmarks/README.md): points/s, the three ratios and their targets."""
    ratios = {
        "digits_ours_over_reference": digits["ours"] / digits["reference"],
        "digits_ours_over_bound": digits["ours"] / digits["bound"],
        "resnet20_ours_over_bound": resnet["ours"] / resnet["bound"],
    }
    figures = {f"digits_{k}_pt_s": v for k, v in digits.items()} | {f"resnet20_{k}_pt_s": v for k, v in resnet.items()}
    targets = [
        {"name": "digits CNN: ours vs research-style loop", "value": ratios["digits_ours_over_reference"], "op": ">=",
         "target": 5.0},
        {"name": "ResNet-20: ours vs forward-only bound", "value": ratios["resnet20_ours_over_bound"], "op": ">=", "target": 0.9},
    ]
    summary = f"digits CNN {digits['ours']:.1f} pt/s, ResNet-20 {resnet['ours']:.2f} pt/s"
    if rates is not None:
        figures.update(mpi_1_rank_pt_s=rates[0], mpi_2_ranks_pt_s=rates[1])
        ratios["mpi_2_ranks_over_1"] = rates[1] / rates[0]
        targets.append({"name": "digits scan, 2 MPI ranks vs 1", "value": ratios["mpi_2_ranks_over_1"], "op": ">=",
                        "target": 1.7})
        summary += f", scan on 2 ranks {rates[1]:.1f} pt/s"
    for t in targets:
        t["met"] = t["value"] >= t["target"]
    return {"benchmark": "landscape_throughput", "summary": summary, "figures": figures, "ratios": ratios, "targets": targets,
            "passed": all(t["met"] for t in targets)}


if __name__ == "__main__":
    main()
