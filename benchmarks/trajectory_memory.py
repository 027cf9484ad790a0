"""Trajectory PCA memory: 300 snapshots of ResNet-56 size (0.85 M parameters) read from files, streaming.

Writes N perturbed ResNet-56 state dicts (torch.save, BN buffers included) to a temporary folder: a curved
path in a known plane plus noise, ending at the final weights. A fresh process (so its peak memory is the
PCA's own, torch's import included) then computes the PCA directions from the files with
``landscape.trajectory.pca_directions`` (snapshots loaded one at a time through ``LazySnapshots``) and
projects the path with ``project_path``, and prints its peak resident memory (``ru_maxrss``), the time of
each step, the explained variance and the principal angles between the found plane and the true one.
Holding the N x P difference matrix instead would take 8 N P bytes in float64 (4 N P in float32).

Target: peak memory < 1.5 GB for 300 snapshots. With ``--naive`` the same process afterwards also
measures what the original code does (the N x P float32 matrix in memory, sklearn's PCA), for comparison.

Usage: python benchmarks/trajectory_memory.py [--quick] [--snapshots N] [--max-mib M] [--naive]

The last line printed is ``RESULT {json}`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effrep_hpc.landscape.trajectory import (  # noqa: E402
    DEFAULT_MAX_BYTES,
    LazySnapshots,
    covered_parameters,
    pca_directions,
    project_path,
)
from effrep_hpc.models import create_model  # noqa: E402

TARGET_GB = 1.5
MODEL = "resnet56"


def peak_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def snapshot_file(folder: Path, i: int) -> Path:
    return folder / f"epoch_{i:04d}.pt"


def write_snapshots(folder: Path, n: int, seed: int = 0) -> None:
    """N state dicts w_final + a_i e1 + b_i e2 + noise (weights of 2+ dims; biases and BN move off the plane)."""
    torch.manual_seed(seed)
    final = create_model(MODEL).state_dict()
    names = covered_parameters(create_model(MODEL))
    g = torch.Generator().manual_seed(seed + 1)
    e1 = {k: torch.randn(final[k].shape, generator=g) * 0.05 for k in names}
    e2 = {k: torch.randn(final[k].shape, generator=g) * 0.02 for k in names}
    torch.save({"e1": e1, "e2": e2}, folder / "plane.pt")
    t = np.linspace(0.0, 1.0, n)
    ab = np.stack([(1 - t) ** 2 * np.cos(3 * t), (1 - t) * np.sin(4 * t)], axis=1)
    for i in range(n):
        sd = {}
        for k, v in final.items():
            if i == n - 1 or not v.is_floating_point():
                sd[k] = v.clone()
            elif k in e1:
                sd[k] = v + float(ab[i, 0]) * e1[k] + float(ab[i, 1]) * e2[k] + 2e-4 * torch.randn(v.shape, generator=g)
            else:
                sd[k] = v + 0.01 * torch.randn(v.shape, generator=g)
        torch.save(sd, snapshot_file(folder, i))


def principal_angles(
    dirs: list[dict[str, torch.Tensor]], plane: dict[str, dict[str, torch.Tensor]], names: list[str]
) -> np.ndarray:
    """Principal angles (rad) between the span of the found directions and the true plane."""
    def mat(vs: list[dict[str, torch.Tensor]]) -> np.ndarray:
        return np.stack([torch.cat([v[n].reshape(-1).double() for n in names]).numpy() for v in vs], axis=1)

    q1, q2 = np.linalg.qr(mat(dirs))[0], np.linalg.qr(mat([plane["e1"], plane["e2"]]))[0]
    return np.arccos(np.clip(np.linalg.svd(q1.T @ q2, compute_uv=False), -1.0, 1.0))


def measure(folder: Path, n: int, max_bytes: int, naive: bool) -> dict:
    """In this (fresh) process: PCA from the files, projection, peak memory; optionally the naive way after."""
    torch.set_num_threads(1)
    model = create_model(MODEL)
    out: dict = {"params": sum(p.numel() for p in model.parameters()), "baseline_mib": peak_mib()}

    def load(i: int) -> dict[str, torch.Tensor]:
        return torch.load(snapshot_file(folder, i), map_location="cpu", weights_only=True)

    snapshots = LazySnapshots(load, n)
    model.load_state_dict(load(n - 1))  # the final epoch is the reference
    t0 = time.perf_counter()
    res = pca_directions(snapshots, model, k=2, max_bytes=max_bytes)
    t1 = time.perf_counter()
    coords, residuals = project_path(snapshots, model, res.directions)
    t2 = time.perf_counter()
    out.update(
        pca_s=t1 - t0, project_s=t2 - t1, passes=res.passes, method=res.method, peak_mib=peak_mib(),
        ratios=res.explained_variance_ratio.tolist(), final_coords=coords[-1].tolist(),
        max_residual=float(residuals.max()), covered=sum(model.get_parameter(k).numel() for k in covered_parameters(model)),
    )
    plane = torch.load(folder / "plane.pt", weights_only=True)
    out["angles"] = principal_angles(list(res.directions), plane, covered_parameters(model)).tolist()
    if naive:
        from sklearn.decomposition import PCA

        names = covered_parameters(model)
        ref = torch.cat([model.get_parameter(k).detach().reshape(-1) for k in names])
        t3 = time.perf_counter()
        x = np.stack([(torch.cat([load(i)[k].reshape(-1) for k in names]) - ref).numpy() for i in range(n)])
        pca = PCA(n_components=2).fit(x)
        out.update(naive_s=time.perf_counter() - t3, naive_peak_mib=peak_mib(),
                   naive_ratios=pca.explained_variance_ratio_.tolist())
    return out


def main() -> None:
    """Write the snapshots, measure in a child process, print the numbers; exit 1 above the target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 snapshots instead of 300")
    parser.add_argument("--snapshots", type=int, default=None, help="number of snapshots (default 300, 30 with --quick)")
    parser.add_argument("--max-mib", type=float, default=DEFAULT_MAX_BYTES / 2**20, help="pca_directions max_bytes, MiB")
    parser.add_argument("--naive", action="store_true", help="also measure the N x P matrix + sklearn PCA way")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # folder to measure, in the child process
    args = parser.parse_args()
    n = args.snapshots or (30 if args.quick else 300)
    max_bytes = int(args.max_mib * 2**20)
    if args.child:
        print(json.dumps(measure(Path(args.child), n, max_bytes, args.naive)))
        return
    with tempfile.TemporaryDirectory(prefix="trajectory_bench_") as tmp:
        t = time.perf_counter()
        write_snapshots(Path(tmp), n)
        size = sum(f.stat().st_size for f in Path(tmp).glob("epoch_*.pt"))
        print(f"wrote {n} {MODEL} snapshots ({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s", flush=True)
        cmd = [sys.executable, __file__, "--child", tmp, "--snapshots", str(n), "--max-mib", str(args.max_mib)]
        proc = subprocess.run(cmd + (["--naive"] if args.naive else []), capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    held = 8 * n * r["covered"] / 2**20
    print(f"{MODEL}: {r['params']} parameters, {r['covered']} covered (weights); {n} snapshots; "
          f"max_bytes {args.max_mib:.0f} MiB; holding the {n} x {r['covered']} matrix would take {held:.0f} MiB "
          f"(float64), {held / 2:.0f} MiB (float32)")
    print(f"PCA ({r['method']}, {r['passes']} reads of the snapshots): {r['pca_s']:.1f} s; projection: {r['project_s']:.1f} s")
    print(f"explained variance ratio {np.round(r['ratios'], 4).tolist()}; principal angles to the true plane "
          f"{np.array(r['angles']).max():.1e} rad; final epoch at {r['final_coords']}")
    print(f"peak memory {r['peak_mib']:.0f} MiB (after imports and the model: {r['baseline_mib']:.0f} MiB); "
          f"target < {TARGET_GB} GB: {'ok' if r['peak_mib'] * 2**20 < TARGET_GB * 1e9 else 'OVER'}")
    if args.naive:
        print(f"naive (the {n} x P float32 matrix in memory + sklearn PCA): {r['naive_s']:.1f} s, peak memory "
              f"{r['naive_peak_mib']:.0f} MiB; ratios {np.round(r['naive_ratios'], 4).tolist()}")
    met = r["peak_mib"] * 2**20 < TARGET_GB * 1e9
    figures = {"snapshots": n, "parameters": r["params"], "peak_mib": r["peak_mib"], "baseline_mib": r["baseline_mib"],
               "pca_s": r["pca_s"], "project_s": r["project_s"], "passes": r["passes"],
               "max_principal_angle_rad": float(np.max(r["angles"])), "matrix_float64_mib": held}
    ratios = {"peak_over_float64_matrix": r["peak_mib"] / held}
    if args.naive:
        figures.update(naive_s=r["naive_s"], naive_peak_mib=r["naive_peak_mib"])
        ratios["peak_over_naive_peak"] = r["peak_mib"] / r["naive_peak_mib"]
    result = {"benchmark": "trajectory_memory", "summary": f"{n} {MODEL} snapshots: peak {r['peak_mib']:.0f} MiB, "
              f"PCA {r['pca_s']:.1f} s", "figures": figures, "ratios": ratios,
              "targets": [{"name": f"peak memory, {n} snapshots (MiB)", "value": r["peak_mib"], "op": "<=",
                           "target": TARGET_GB * 1e9 / 2**20, "met": met}], "passed": met}
    print("RESULT " + json.dumps(result))
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
