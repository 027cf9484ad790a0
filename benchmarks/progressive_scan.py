"""Progressive scans: how soon a complete coarse picture exists, against the time of the whole scan.

Trains the demo's digits CNN for a few epochs into a temporary directory, then runs one 129 x 129
`effrep landscape` scan in the default (progressive) order, one thread per process, and watches its
surface file: the times at which every 8th point in x and y (the 1/8-resolution picture) and every 4th
(1/4) are done, and when the whole grid is, all counted from the moment the file appears. Targets:
1/8 picture <= 2.5% and 1/4 picture <= 8% of the full scan's time. (In raster order the 1/8 picture
needs the grid's last row, so it exists only after > 99% of the scan.)

A full 129 x 129 scan on the whole digits data takes more than half an hour on one CPU thread, so the
benchmark first measures the throughput and, when the scan would take longer than ``--budget`` seconds,
evaluates each point on a seeded subset of the training set only (``landscape.train_size``, test split
off); it says so in its output. The ratios are what it measures; every point costs the same either way.
It also times the surface writer on a scattered 64-point tile of the progressive order against the
compute time of 64 points.

    OMP_NUM_THREADS=1 python benchmarks/progressive_scan.py [--grid 129] [--ranks 1] [--budget 600] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effrep_hpc.landscape.grid import level_points, make_axis, progressive_tiles  # noqa: E402
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter  # noqa: E402

CONFIG = ROOT / "configs/demo/digits.yaml"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
TRAIN_SAMPLES = 1437  # the digits training split


def command(args: list[str], ranks: int) -> list[str]:
    """`effrep ARGS`, under `mpiexec -n RANKS` when ranks > 1."""
    if ranks > 1:
        return [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpi4py",
                "-m", "effrep_hpc.cli", *args]
    return [sys.executable, "-m", "effrep_hpc.cli", *args]


def scan_args(tmp: Path, surface: Path, n: int, extra: list[str]) -> list[str]:
    return ["landscape", str(CONFIG), f"run.out={tmp}", f"landscape.surface={surface}", "run.progress=false",
            "run.threads=1", f"landscape.x=-1:1:{n}", f"landscape.y=-1:1:{n}", *extra]


def throughput(tmp: Path, extra: list[str], ranks: int, n: int = 9) -> float:
    """Points per second of an n x n scan (the driver's own timing, startup excluded)."""
    surface = tmp / f"probe-{time.monotonic_ns()}.h5"
    out = subprocess.run(command(scan_args(tmp, surface, n, extra), ranks), env=ENV, check=True,
                         capture_output=True, text=True).stdout
    m = re.search(r"computed (\d+) point\(s\) in ([\d.]+)s", out)
    if not m:
        raise SystemExit(f"could not read the scan's timing from:\n{out}")
    return int(m.group(1)) / float(m.group(2))


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) so far of process ``root`` and all its descendants (the MPI ranks), from /proc."""
    parent, spent = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            parent[int(entry.name)] = int(fields[1])
            spent[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    mine, total = {root}, 0.0
    for pid in sorted(parent):  # children have larger pids than their parents here (no pid wrap-around)
        if pid in mine or parent[pid] in mine:
            mine.add(pid)
            total += spent[pid]
    return total


def watch(tmp: Path, n: int, extra: list[str], ranks: int) -> dict[str, tuple[float, float]]:
    """Run the full scan; when levels 3, 2 and 0 are complete: (wall seconds, CPU seconds), from the file's creation."""
    surface = tmp / "surface.h5"
    masks = {"1/8": level_points((n, n), 3), "1/4": level_points((n, n), 2), "full": np.arange(n * n)}
    times: dict[str, tuple[float, float]] = {}
    proc = subprocess.Popen(command(scan_args(tmp, surface, n, extra), ranks), env=ENV, stdout=subprocess.DEVNULL)
    start: tuple[float, float] | None = None
    while len(times) < len(masks):
        ended = proc.poll() is not None  # before the look at the file, so a finished scan is seen complete
        now = (time.perf_counter(), cpu_seconds(proc.pid))
        if start is None and surface.exists():
            start = now
        if start is not None:
            with h5py.File(surface, "r", locking=False) as f:
                done = f["done"][()].reshape(-1)
            for name, points in masks.items():
                if name not in times and done[points].all():
                    times[name] = (now[0] - start[0], now[1] - start[1])
        if ended and len(times) < len(masks):
            raise SystemExit(f"the scan ended ({proc.returncode}) before its file was complete")
        time.sleep(0.1)
    proc.wait()
    return times


def write_cost(n: int) -> float:
    """Seconds (median) to write one scattered 64-point tile of the progressive order (values, checksums, done, flushes)."""
    spec = SurfaceSpec(x=make_axis(-1, 1, n), y=make_axis(-1, 1, n), metrics=["train_loss", "train_acc"])
    tiles = [t for t in progressive_tiles((n, n), 64) if t.size == 64][-20:]
    spent = []
    with tempfile.TemporaryDirectory() as tmp, SurfaceWriter(Path(tmp) / "w.h5", spec) as w:
        for t in tiles:
            began = time.perf_counter()
            w.write(t, {"train_loss": np.ones(t.size), "train_acc": np.ones(t.size)})
            spent.append(time.perf_counter() - began)
    return float(np.median(spent))  # the median: on a shared machine a few writes wait for the CPU


def main() -> None:
    """Print the time to the first 1/8- and 1/4-resolution pictures as fractions of the full scan's time."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=129, help="points per axis")
    parser.add_argument("--ranks", type=int, default=1, help="MPI ranks of the scan (1: serial)")
    parser.add_argument("--budget", type=float, default=600, help="longest full scan, seconds, before points get cheaper")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of the digits CNN")
    parser.add_argument("--quick", action="store_true", help="a 33 x 33 smoke run")
    args = parser.parse_args()
    n = 33 if args.quick else args.grid
    total = n * n
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run(command(["train", str(CONFIG), f"run.out={tmp}", f"train.epochs={args.epochs}", "run.progress=false",
                                "run.threads=1", "dist.backend=serial"], 1), env=ENV, check=True, stdout=subprocess.DEVNULL)
        extra = ["dist.backend=serial"] if args.ranks == 1 else []
        rate = throughput(tmp, extra, args.ranks)
        note = "the whole digits data (1437 train + 360 test samples per point)"
        if total / rate > args.budget:
            size = max(16, int(TRAIN_SAMPLES * args.budget * rate / total / 1.25))
            extra += [f"landscape.train_size={size}", "landscape.test=false"]
            rate_full, rate = rate, throughput(tmp, extra, args.ranks)
            note = (f"{size} of the 1437 training samples per point, no test split (the whole data: {rate_full:.1f} points/s, "
                    f"a full scan would take ~{total / rate_full / 60:.0f} min)")
        print(f"digits CNN, {n} x {n} = {total} points, {args.ranks} process(es), one thread each; {note}; "
              f"probe: {rate:.1f} points/s, full scan ~{total / rate:.0f} s", flush=True)
        times = watch(tmp, n, extra, args.ranks)
    (wall, cpu) = times["full"]
    print(f"full scan: {wall:.1f} s wall, {cpu:.1f} s CPU (all processes; the CPU time does not count waiting for "
          f"a core on a shared machine)", flush=True)
    figures: dict[str, float] = {"grid": n, "full_scan_wall_s": wall, "full_scan_cpu_s": cpu}
    targets = []
    for name, level in (("1/8", 3), ("1/4", 2)):
        share = level_points((n, n), level).size / total
        target = 2.5 if level == 3 else 8.0
        w, c = times[name]
        print(f"{name}-resolution picture ({100 * share:.2f}% of the points): after {w:.1f} s wall = {100 * w / wall:.2f}%, "
              f"{c:.1f} s CPU = {100 * c / cpu:.2f}% of the full scan's (target <= {target}%)", flush=True)
        key = name.replace("/", "_")
        figures.update({f"picture_{key}_points_pct": 100 * share, f"picture_{key}_wall_pct": 100 * w / wall,
                        f"picture_{key}_cpu_pct": 100 * c / cpu})
        targets.append({"name": f"{name} picture, % of the full scan's CPU time", "value": 100 * c / cpu, "op": "<=",
                        "target": target, "met": 100 * c / cpu <= target})
    tile_write = write_cost(n)
    figures["tile_write_ms"] = 1e3 * tile_write
    print(f"writing a scattered 64-point tile: {1e3 * tile_write:.2f} ms, {100 * tile_write * rate / 64:.2f}% of "
          f"computing its 64 points ({64 / rate:.2f} s)", flush=True)
    result = {"benchmark": "progressive_scan", "figures": figures, "targets": targets,
              "summary": f"{n}x{n}: 1/8 picture at {figures['picture_1_8_cpu_pct']:.2f}%, 1/4 at "
                         f"{figures['picture_1_4_cpu_pct']:.2f}% of the full scan (CPU time)",
              "passed": all(t["met"] for t in targets)}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
