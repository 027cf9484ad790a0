"""Eigenvalue maps on 2 MPI ranks against 1: wall time of `effrep curvature` on the same grid, and their ratio.

Trains the digits CNN for a few epochs into a temporary directory, then maps the largest and smallest
Hessian eigenvalue over an N x N grid (hessian.train_size samples) once with the serial backend and once
under `mpiexec -n 2`, one thread per process, and checks both files hold the same values. Target: >= 1.8x.

    OMP_NUM_THREADS=1 python benchmarks/curvature_map_scaling.py [--grid 8] [--samples 256] [--quick]

The last line printed is ``RESULT {json}`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/demo/digits.yaml"
TARGET = 1.8


def _effrep(args: list[str], ranks: int) -> float:
    """Run one `effrep` command (under mpiexec for ranks > 1); return its wall time."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "effrep_hpc.cli", *args]
    if ranks > 1:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpi4py", *cmd[1:]]
    began = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    """Print the wall times of a serial and a 2-rank eigenvalue map and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=8, help="points per axis")
    parser.add_argument("--samples", type=int, default=256, help="hessian.train_size")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a 4x4 map on 128 samples, 2 training epochs")
    args = parser.parse_args()
    epochs = 5
    if args.quick:
        args.grid, args.samples, epochs = 4, 128, 2
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        _effrep(["train", str(CONFIG), f"run.out={tmp}", f"train.epochs={epochs}", "run.progress=false", "run.threads=1"], 1)
        common = [str(CONFIG), f"run.out={tmp}", f"hessian.train_size={args.samples}", "run.progress=false", "run.threads=1",
                  f"landscape.x=-1:1:{args.grid}", f"landscape.y=-1:1:{args.grid}", "landscape.tile_size=1"]
        one = _effrep(["curvature", *common, f"hessian.map={tmp}/one.h5", "dist.backend=serial"], 1)
        two = _effrep(["curvature", *common, f"hessian.map={tmp}/two.h5"], 2)
        with h5py.File(f"{tmp}/one.h5") as a, h5py.File(f"{tmp}/two.h5") as b:
            same = all(np.array_equal(a[k][()], b[k][()], equal_nan=True) for k in ("max_eig", "min_eig", "eig_ratio"))
    print(f"eigenvalue map {args.grid}x{args.grid}, digits CNN, {args.samples} samples, one thread per process")
    print(f"1 rank: {one:.1f} s; 2 MPI ranks: {two:.1f} s; speed-up {one / two:.2f}x (target >= {TARGET}x); values equal: {same}")
    target = {"name": "eigenvalue map, 2 MPI ranks vs 1", "value": one / two, "op": ">=", "target": TARGET,
              "met": one / two >= TARGET}
    result = {
        "benchmark": "curvature_map_scaling",
        "summary": f"{args.grid}x{args.grid} eigenvalue map, {args.samples} samples: 1 rank {one:.1f} s, 2 ranks {two:.1f} s",
        "figures": {"grid": args.grid, "samples": args.samples, "one_rank_s": one, "two_ranks_s": two, "values_equal": same},
        "ratios": {"speedup_2_ranks": one / two},
        "targets": [target, {"name": "2-rank map equals the serial one", "value": int(same), "op": ">=", "target": 1,
                             "met": same}],
        "passed": bool(target["met"] and same),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
