"""The MPI work queue at scale, simulated: many ranks on this machine, items that sleep instead of compute.

Starts ``mpiexec -n R`` (default 32 ranks, on however few cores there are) and runs a grid of N points, cut
into tiles, through the driver a landscape scan uses (``runners.driver.open_output`` + ``run_job`` on the
MPI backend); computing a tile is ``time.sleep(item_s)`` (no CPU), so what is measured is the queue. Two
passes over the same grid in the same job: ``memory`` (rank 0 keeps the results in arrays: the queue
alone, judged against the target) and ``hdf5`` (rank 0 writes every tile with the driver's
``SurfaceWriter``: the writer's cost, and the bytes written). Reported:

* efficiency = ideal / measured, ideal = items * item_s / workers, measured = the wall time of
  ``backend.run`` on rank 0 from the moment every rank is ready (a barrier, not counted) until it
  returns, after the last result is delivered. workers = R, because the MPI backend's rank 0 computes
  items too (``root_computes=True``, what the driver uses), while a helper thread serves the queue; with
  ``--root-idle`` rank 0 only serves and writes, and workers = R - 1. The default grid, 64x32 in
  tiles of one point, gives 64 items per worker, so the ideal is reachable and one extra item on one
  worker costs 1/65. Beside it, the machine's own floor: every rank sleeps its share back to back,
  no queue (ideal / floor says how much oversleeping on a loaded machine leaves to any dispatcher).
* messages per item, counted: every point-to-point send and every collective call made through the
  backend's communicators on every rank (a wrapper around them; pkl5's framing counted as the MPI
  messages it sends), beside what the protocol predicts: an index out and a result back per item a worker
  computes (none for rank 0's own items), plus one stop message per worker.
* per grid point, written and collective (``hdf5`` pass): bytes rank 0's main thread (the only one that
  writes the file) passed to ``write(2)`` while writing tiles (/proc/thread-self/io), its write calls,
  and the collective operations (a setup allgather, one in open_output, one in run: per job, not per
  point) -- beside those of the original research code's design (loss-landscape's
  ``plot_surface.crunch``), computed from that design, not run: every rank, after each of its points,
  makes two MPI_Reduce of the full (nx*ny float64) loss and accuracy grids, and rank 0 then rewrites
  both full datasets; the points are split statically, so one round of R reduces covers R points,
  ceil(N/R) rounds in all.

Target: queue efficiency >= 0.95 with 50 ms items at 32 ranks.

    python benchmarks/queue_sim.py [--ranks 32] [--grid 64x32] [--tile 1] [--item-s 0.05] [--root-idle]
                                   [--writers memory,hdf5] [--quick] [--record raw.json]

The last line printed is ``RESULT {json}`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.95
METRICS = ["train_loss", "train_acc"]  # what the original design reduces and rewrites: "both datasets"
SENDS = {"send", "isend", "ssend", "issend", "Send", "Isend", "Ssend", "Issend"}
COLLECTIVES = {
    "allgather", "Allgather", "bcast", "Bcast", "barrier", "Barrier", "allreduce", "Allreduce", "reduce", "Reduce",
    "gather", "Gather", "scatter", "Scatter", "alltoall", "Alltoall", "Dup", "Iallgather", "Ibarrier", "Ibcast",
    "Iallreduce", "Ireduce", "Igather", "Iscatter", "Ialltoall",
}


# ---------------------------------------------------------------------------------------------------------------
# Under mpiexec: every rank runs this part.


class Tally:
    """What one rank sent and which collectives it called, while ``on`` (only the job itself, not the bookkeeping)."""

    def __init__(self) -> None:
        self.on = False
        self.sends = 0  # objects sent (an index, a result, a stop)
        self.mpi_messages = 0  # MPI messages those took (pkl5: a size header, the pickle, one per large buffer)
        self.collectives = 0
        self.in_pkl5_send = False

    def reset(self) -> None:
        """Zero the counts (a new pass)."""
        self.sends = self.mpi_messages = self.collectives = 0


class Counted:
    """A communicator whose sends and collective calls are counted into a Tally; everything else passes through."""

    def __init__(self, comm: Any, tally: Tally, framed: bool) -> None:
        self._comm = comm
        self._tally = tally
        self._framed = framed  # a pkl5 communicator: count the MPI messages its _send_raw makes

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._comm, name)
        tally = self._tally
        if name in SENDS:
            def send(*args: Any, **kw: Any) -> Any:
                if tally.on:
                    tally.sends += 1
                    if not self._framed:
                        tally.mpi_messages += 1
                tally.in_pkl5_send = self._framed and tally.on
                try:
                    return attr(*args, **kw)
                finally:
                    tally.in_pkl5_send = False
            return send
        if name in COLLECTIVES:
            def collective(*args: Any, **kw: Any) -> Any:
                if tally.on:
                    tally.collectives += 1
                return attr(*args, **kw)
            return collective
        return attr


def count_pkl5_frames(tally: Tally) -> None:
    """Count the MPI messages of every pkl5 send made through a Counted communicator (2 + one per large buffer)."""
    from mpi4py.util import pkl5

    raw: Callable[..., Any] = pkl5._send_raw

    def counted(comm: Any, send: Any, data: Any, bufs: Any, dest: int, tag: int) -> Any:
        if tally.in_pkl5_send:
            tally.mpi_messages += 2 + len(bufs)
        return raw(comm, send, data, bufs, dest, tag)

    pkl5._send_raw = counted


class MemoryWriter:
    """The 'memory' pass's writer: keeps the tiles in arrays, so the queue is measured without the HDF5 file's cost."""

    def __init__(self, n_points: int) -> None:
        self.arrays = {m: np.full(n_points, np.nan) for m in METRICS}
        self.arrays["done"] = np.zeros(n_points, bool)

    def write(self, flat: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Store the tile's values and mark its points done."""
        for m in METRICS:
            self.arrays[m][flat] = values[m]
        self.arrays["done"][flat] = True

    def close(self) -> None:
        """Nothing to release."""


def thread_io() -> dict[str, int]:
    """This thread's I/O counters (Linux): bytes passed to write(2) (wchar) and write calls (syscw)."""
    text = Path("/proc/thread-self/io").read_text()
    fields = dict(line.split(": ") for line in text.splitlines())
    return {"wchar": int(fields["wchar"]), "syscw": int(fields["syscw"])}


def child(args: argparse.Namespace) -> None:
    """One rank's part: build the backend, run the sleeping tiles through the driver once per writer, record on rank 0."""
    from effrep_hpc.dist import get_backend

    options: dict[str, Any] = {"root_computes": not args.root_idle}
    if args.prefetch:
        options["prefetch"] = args.prefetch
    if args.serve_thread != "auto":
        options["serve_thread"] = args.serve_thread == "on"
    backend = get_backend("mpi", **options)
    tally = Tally()
    backend._comm = Counted(backend._comm, tally, framed=False)  # type: ignore[attr-defined]
    backend._rcomm = Counted(backend._rcomm, tally, framed=True)  # type: ignore[attr-defined]
    count_pkl5_frames(tally)
    timing: dict[str, float] = {}
    run = backend.run

    def timed_run(*a: Any, **kw: Any) -> None:
        counting, tally.on = tally.on, False
        backend.barrier()  # the clock starts when every rank is ready (the benchmark's, not counted)
        tally.on = counting
        timing["start"] = time.time()
        timing["t0"] = time.perf_counter()
        cpu, main_cpu = time.process_time(), time.thread_time()
        began = time.perf_counter()
        run(*a, **kw)
        timing["run_s"] = time.perf_counter() - began
        timing["end"] = time.time()
        timing["cpu_s"] = time.process_time() - cpu
        timing["main_cpu_s"] = time.thread_time() - main_cpu

    backend.run = timed_run  # type: ignore[method-assign]
    workers = backend.size - (1 if args.root_idle else 0)
    floor = sleep_floor(backend, math.ceil(math.ceil(args.nx * args.ny / args.tile) / workers), args.item_s)
    phases = [run_phase(backend, tally, timing, args, writer) for writer in args.writers.split(",")]
    if backend.rank == 0:
        record = {
            "ranks": backend.size, "nx": args.nx, "ny": args.ny, "points": args.nx * args.ny, "tile": args.tile,
            "item_s": args.item_s, "root_computes": not args.root_idle, "prefetch": args.prefetch,
            "serve_thread": backend.serve_thread,  # type: ignore[attr-defined]
            "phases": phases, "floor_s": floor,
        }
        (Path(args.child) / "record.json").write_text(json.dumps(record))
    backend.close()


def sleep_floor(backend: Any, count: int, item_s: float) -> float:
    """The machine's own floor: the longest time any rank takes for ``count`` back-to-back sleeps of ``item_s``, no queue."""
    backend.barrier()
    began = time.perf_counter()
    for _ in range(count):
        time.sleep(item_s)
    return max(float(t) for t in backend.allgather(time.perf_counter() - began))  # type: ignore[arg-type]


def run_phase(backend: Any, tally: Tally, timing: dict[str, float], args: argparse.Namespace, writer_kind: str) -> dict:
    """One pass over the grid with ``writer_kind`` ('memory' or 'hdf5') on rank 0; its record (rank 0; {} elsewhere)."""
    from effrep_hpc.landscape.grid import make_tiles
    from effrep_hpc.runners.driver import Job, open_output, run_job, setup_guard
    from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter, read_surface

    n_points = args.nx * args.ny
    tiles = make_tiles(np.arange(n_points), args.tile)
    spec = SurfaceSpec(x=np.linspace(-1, 1, args.nx), y=np.linspace(-1, 1, args.ny), metrics=list(METRICS),
                       config_yaml="queue_sim: {}\n")
    path = Path(args.child) / f"surface_{writer_kind}.h5"
    computed = {"items": 0, "busy_s": 0.0}
    spans: list = []
    io_tiles = {"wchar": 0, "syscw": 0, "tiles": 0, "write_s": 0.0}

    def compute(idx: np.ndarray) -> dict[str, np.ndarray]:
        began = time.perf_counter()
        time.sleep(args.item_s)
        computed["items"] += 1
        computed["busy_s"] += time.perf_counter() - began
        spans.append((began, time.perf_counter(), io_tiles["tiles"]))  # (start, end, tiles written so far)
        return {"train_loss": idx * 0.5, "train_acc": idx * 0.25}

    def make_writer(p: Path, attrs: dict[str, Any]) -> Any:
        if writer_kind == "hdf5":
            writer: Any = SurfaceWriter(p, spec, overwrite=True, extra_attrs=attrs)
        else:
            writer = MemoryWriter(n_points)
        write = writer.write

        def measured(flat: np.ndarray, values: dict[str, np.ndarray]) -> None:
            before = thread_io()
            began = time.perf_counter()
            write(flat, values)
            io_tiles["write_s"] += time.perf_counter() - began
            after = thread_io()
            io_tiles["wchar"] += after["wchar"] - before["wchar"]
            io_tiles["syscw"] += after["syscw"] - before["syscw"]
            io_tiles["tiles"] += 1

        writer.write = measured
        return writer

    tally.reset()
    tally.on = True
    with setup_guard(backend):  # what a runner's setup does: one allgather
        pass
    io_create = thread_io()
    output = open_output(backend, path, make_writer)
    created = thread_io()["wchar"] - io_create["wchar"]
    size_before = path.stat().st_size if path.exists() else 0
    job = Job("surface", "point", tiles, compute, write=lambda idx, values: output.writer.write(idx, values), count=len)
    run_job(backend, job, output, show_progress=False)
    tally.on = False
    gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
    per_rank = backend.allgather({
        "gap_sum": sum(gaps), "gap_max": max(gaps, default=0.0), "first": spans[0][0] if spans else None,
        "last": spans[-1][1] if spans else None, "t0": timing.get("t0"),
        "rank": backend.rank, "items": computed["items"], "busy_s": computed["busy_s"], "sends": tally.sends,
        "mpi_messages": tally.mpi_messages, "collectives": tally.collectives, **timing,
    })
    if backend.rank != 0:
        return {}
    stored = read_surface(path) if writer_kind == "hdf5" else output.writer.arrays  # type: ignore[union-attr]
    flat = np.arange(n_points)
    intact = bool(
        stored["done"].all()
        and np.array_equal(stored["train_loss"].reshape(-1), flat * 0.5)
        and np.array_equal(stored["train_acc"].reshape(-1), flat * 0.25)
    )
    return {
        "writer": writer_kind, "items": len(tiles), "run_s": timing["run_s"], "per_rank": per_rank,
        "file_bytes_before": size_before, "file_bytes_after": path.stat().st_size if path.exists() else 0,
        "create_bytes": created, "tile_io": io_tiles, "intact": intact, "spans": spans,
    }


# ---------------------------------------------------------------------------------------------------------------
# The launcher: starts the ranks, then reads the record and prints the comparison.


def original_design(nx: int, ny: int, ranks: int) -> dict[str, float]:
    """Per point, what loss-landscape's plot_surface.crunch does (computed from its code, not run), for ``ranks`` ranks.

    Every rank, after each of its statically assigned points: ``reduce_max`` of the loss grid and of the
    accuracy grid (MPI_Reduce of nx*ny float64 each, to rank 0), then rank 0 writes ``f[key][:] = grid`` for
    both. Ranks with fewer points make the same reduces to keep in step: ceil(N/ranks) rounds in all.
    """
    n = nx * ny
    rounds = math.ceil(n / ranks)
    grid_bytes = 8 * n
    return {
        "bytes_written_per_point": 2 * grid_bytes * rounds / n,
        "write_calls_per_point": 2 * rounds / n,  # one h5py full-dataset write per array per round
        "collective_ops_per_point": 2 * rounds / n,  # each one involves every rank
        "collective_calls_per_point": 2 * rounds * ranks / n,  # summed over ranks
        "reduce_bytes_per_point": 2 * rounds * ranks * grid_bytes / n,  # contributed to the reductions, all ranks
    }


def ours(record: dict[str, Any], phase: dict[str, Any]) -> dict[str, float]:
    """Per point, what our design measured in ``phase``: bytes written, write calls, collectives."""
    n = record["points"]
    collectives = [r["collectives"] for r in phase["per_rank"]]
    return {
        "bytes_written_per_point": phase["tile_io"]["wchar"] / n,
        "write_calls_per_point": phase["tile_io"]["syscw"] / n,
        "collective_ops_per_point": collectives[0] / n,  # rank 0's count: every rank makes the same ones
        "collective_calls_per_point": sum(collectives) / n,
        "reduce_bytes_per_point": 0.0,
    }


def summarize(record: dict[str, Any], phase: dict[str, Any]) -> dict[str, Any]:
    """Efficiency and message counts (counted and predicted by the protocol) of one pass."""
    ranks, items = record["ranks"], phase["items"]
    workers = ranks if record["root_computes"] else ranks - 1
    ideal = items * record["item_s"] / workers
    per_rank = phase["per_rank"]
    by_rank0 = per_rank[0]["items"]
    sends = sum(r["sends"] for r in per_rank)
    mpi_messages = sum(r["mpi_messages"] for r in per_rank)
    # per item a worker computes: its index out and its result back; per worker one stop message
    predicted_sends = 2 * (items - by_rank0) + (ranks - 1)
    # an index is one MPI message; a result (small arrays, pickled in-band by pkl5) a size header and the pickle
    predicted_mpi = 3 * (items - by_rank0) + (ranks - 1)
    tiles = phase["tile_io"]["tiles"]
    return {
        "ranks": ranks, "workers": workers, "items": items, "ideal_s": ideal, "run_s": phase["run_s"],
        "efficiency": ideal / phase["run_s"], "items_rank0": by_rank0,
        "items_per_rank_min": min(r["items"] for r in per_rank[1:]), "items_per_rank_max": max(r["items"] for r in per_rank[1:]),
        "messages_per_item": sends / items, "messages_per_item_predicted": predicted_sends / items,
        "mpi_messages_per_item": mpi_messages / items, "mpi_messages_per_item_predicted": predicted_mpi / items,
        "write_ms_per_tile": 1000 * phase["tile_io"]["write_s"] / max(1, tiles),
        "writer_busy": phase["tile_io"]["write_s"] / phase["run_s"],
        "tiles_per_s_needed": items / ideal,
        "first_item_ms": 1000 * sum(r["first"] - r["t0"] for r in per_rank[1:] if r["first"]) / (ranks - 1),
        "gap_ms": 1000 * sum(r["gap_sum"] for r in per_rank[1:]) / max(1, sum(r["items"] - 1 for r in per_rank[1:])),
        "oversleep_ms": 1000 * sum(r["busy_s"] for r in per_rank[1:]) / max(1, sum(r["items"] for r in per_rank[1:]))
        - 1000 * record["item_s"],
    }


def ratio(a: float, b: float) -> float:
    """a / b, inf when b is 0 and a is not."""
    return a / b if b else (math.inf if a else 1.0)


def print_pass(record: dict[str, Any], phase: dict[str, Any], s: dict[str, Any]) -> None:
    """Efficiency, balance and messages of one pass."""
    writer = {"memory": "rank 0 keeps results in memory", "hdf5": "rank 0 writes each tile to the surface file"}
    print(f"[{phase['writer']}] {writer[phase['writer']]}: ideal {s['ideal_s']:.3f} s = {s['items']} x {record['item_s']} s"
          f" / {s['workers']} workers; measured {s['run_s']:.3f} s; efficiency {s['efficiency']:.3f}")
    print(f"  items per worker {s['items_per_rank_min']}..{s['items_per_rank_max']}, rank 0: {s['items_rank0']}; "
          f"results intact: {phase['intact']}; messages per item {s['messages_per_item']:.3f} counted "
          f"(protocol: {s['messages_per_item_predicted']:.3f}), MPI messages per item {s['mpi_messages_per_item']:.3f} "
          f"(protocol: {s['mpi_messages_per_item_predicted']:.3f})")
    print(f"  workers (mean): first item {s['first_item_ms']:.1f} ms after the start, {s['gap_ms']:.2f} ms between items, "
          f"each sleep {s['oversleep_ms']:.2f} ms longer than asked")
    if phase["writer"] == "hdf5":
        print(f"  writer: {s['write_ms_per_tile']:.2f} ms per tile, busy {100 * s['writer_busy']:.0f}% of the run; "
              f"the workers deliver {s['tiles_per_s_needed']:.0f} tiles/s at full speed")


def print_table(record: dict[str, Any], o: dict[str, float], r: dict[str, float], phase: dict[str, Any]) -> None:
    """Per grid point: our measured costs beside the original design's computed ones."""
    rows = [
        ("bytes written to the file", "bytes_written_per_point", "{:.1f}"),
        ("write calls (write(2); full-dataset writes)", "write_calls_per_point", "{:.3f}"),
        ("collective operations (job-wide)", "collective_ops_per_point", "{:.4f}"),
        ("collective calls (summed over ranks)", "collective_calls_per_point", "{:.4f}"),
        ("bytes into reductions (all ranks)", "reduce_bytes_per_point", "{:.0f}"),
    ]
    print(f"\nper grid point, {record['nx']}x{record['ny']} grid, {record['ranks']} ranks, tiles of {record['tile']}:")
    print(f"  {'':<44} {'ours (measured)':>16} {'original (computed)':>20} {'original/ours':>14}")
    for label, key, fmt in rows:
        print(f"  {label:<44} {fmt.format(o[key]):>16} {fmt.format(r[key]):>20} {ratio(r[key], o[key]):>13.1f}x")
    print(f"  ours: the file is preallocated at creation ({phase['create_bytes']} bytes written once, "
          f"{phase['file_bytes_before']} bytes on disk before the tiles, {phase['file_bytes_after']} after); "
          "the original's numbers are computed from its code, not run")


def parse_grid(text: str) -> tuple[int, int]:
    """'64x32' -> (64, 32)."""
    try:
        nx, ny = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 64x32, got {text!r}") from None
    if nx < 1 or ny < 1:
        raise argparse.ArgumentTypeError(f"grid sides must be >= 1, got {text!r}")
    return nx, ny


def main() -> int:
    """Launch the ranks, print the report and the RESULT line; exit 1 with --strict when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=None, help="MPI ranks (default 32; 16 with --quick)")
    parser.add_argument("--grid", type=parse_grid, default=None, help="nx x ny points (default 64x32; 32x32 with --quick)")
    parser.add_argument("--tile", type=int, default=1, help="points per item (tile)")
    parser.add_argument("--item-s", type=float, default=0.05, help="seconds one item sleeps")
    parser.add_argument("--root-idle", action="store_true", help="rank 0 only serves and writes (workers = ranks - 1)")
    parser.add_argument("--prefetch", type=int, default=None, help="MPI backend prefetch (default: the backend's)")
    parser.add_argument("--serve-thread", choices=("auto", "on", "off"), default="auto",
                        help="rank 0 serves the queue from a helper thread (auto: when MPI allows it) or between its items")
    parser.add_argument("--writers", default="memory,hdf5",
                        help="passes, in order: 'memory' (rank 0 keeps results in memory: the queue alone, judged against "
                             "the target) and/or 'hdf5' (the driver's SurfaceWriter: bytes written, the writer's cost)")
    parser.add_argument("--quick", action="store_true", help="16 ranks, a 32x32 grid (start-up is most of the time)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before the MPI job is abandoned")
    parser.add_argument("--record", default=None, help="also write the raw per-rank record (JSON) here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--nx", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ny", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    ranks = args.ranks or (16 if args.quick else 32)
    nx, ny = args.grid or ((32, 32) if args.quick else (64, 32))
    writers = args.writers.split(",")
    if ranks < 2 or args.tile < 1 or args.item_s < 0 or not writers or not set(writers) <= {"memory", "hdf5"}:
        parser.error("need --ranks >= 2, --tile >= 1, --item-s >= 0, --writers from memory,hdf5")
    mpiexec = Path(sys.executable).with_name("mpiexec")
    if not mpiexec.exists():
        print("queue_sim: mpiexec not found beside python: pip install mpich mpi4py", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="queue_sim_") as tmp:
        cmd = [str(mpiexec), "-n", str(ranks), sys.executable, "-m", "mpi4py", __file__, "--child", tmp, "--nx", str(nx),
               "--ny", str(ny), "--tile", str(args.tile), "--item-s", str(args.item_s), "--writers", args.writers]
        cmd += ["--root-idle"] if args.root_idle else []
        cmd += ["--prefetch", str(args.prefetch)] if args.prefetch else []
        cmd += ["--serve-thread", args.serve_thread]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        began = time.perf_counter()
        # a session of its own, so that a timeout ends mpiexec and every rank
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            print(f"queue_sim: the MPI job took longer than {args.timeout:g} s and was stopped:\n{output[-3000:]}",
                  file=sys.stderr)
            return 1
        if proc.returncode != 0:
            print(f"queue_sim: the MPI job failed (exit {proc.returncode}):\n{output[-3000:]}", file=sys.stderr)
            return 1
        record = json.loads((Path(tmp) / "record.json").read_text())
    if args.record:
        Path(args.record).write_text(json.dumps(record, indent=1))
    serving = "a helper thread serves the queue" if record["serve_thread"] else "it serves the queue between its items"
    root = f"computes items too ({serving})" if record["root_computes"] else "only serves and writes"
    print(f"{ranks} MPI ranks on {os.cpu_count()} cores (job with start-up {time.perf_counter() - began:.0f} s); rank 0 {root}; "
          f"items of {1000 * args.item_s:.0f} ms (sleep), tiles of {args.tile} point(s) of a {nx}x{ny} grid")
    workers = ranks if record["root_computes"] else ranks - 1
    items = math.ceil(nx * ny / args.tile)
    per_worker = math.ceil(items / workers)
    floor_eff = items * args.item_s / workers / record["floor_s"]
    print(f"machine floor, no queue: {per_worker} back-to-back sleeps of {1000 * args.item_s:.0f} ms on every rank took up to "
          f"{record['floor_s']:.3f} s (ideal/floor {floor_eff:.3f}: what oversleeping on this loaded machine leaves)")
    figures: dict[str, Any] = {"ranks": ranks, "points": nx * ny, "floor_s": record["floor_s"], "floor_efficiency": floor_eff}
    targets = []
    intact = True
    for phase in record["phases"]:
        s = summarize(record, phase)
        print_pass(record, phase, s)
        intact = intact and phase["intact"]
        w = phase["writer"]
        for key in ("workers", "items", "ideal_s", "run_s", "efficiency", "items_rank0", "messages_per_item",
                    "messages_per_item_predicted", "mpi_messages_per_item"):
            figures[f"{w}_{key}"] = s[key]
        if w == "memory":
            targets.append({"name": f"queue efficiency ({ranks} ranks, {1000 * args.item_s:.0f} ms items)",
                            "value": s["efficiency"], "op": ">=", "target": TARGET, "met": s["efficiency"] >= TARGET})
        else:
            figures["hdf5_write_ms_per_tile"] = s["write_ms_per_tile"]
            o, r = ours(record, phase), original_design(nx, ny, ranks)
            print_table(record, o, r, phase)
            for side, values in (("ours", o), ("original", r)):
                for key, value in values.items():
                    figures[f"{side}_{key}"] = value
            for key in ("bytes_written", "collective_calls"):
                figures[f"{key}_original_over_ours"] = ratio(r[f"{key}_per_point"], o[f"{key}_per_point"])
    met = intact and all(t["met"] for t in targets)
    for t in targets:
        print(f"target: {t['name']} {t['op']} {t['target']}: {t['value']:.3f}, {'met' if t['met'] else 'NOT met'}")
    words = [f"{ranks} ranks, {1000 * args.item_s:.0f} ms items: queue efficiency "
             + ", ".join(f"{figures[f'{w}_efficiency']:.3f} ({w})" for w in writers),
             f"{figures[f'{writers[0]}_messages_per_item']:.2f} messages/item"]
    if "hdf5" in writers:
        o, r = "ours_", "original_"
        words.append(f"per point: {figures[o + 'bytes_written_per_point']:.0f} B written and "
                     f"{figures[o + 'collective_calls_per_point']:.3f} collective calls vs the original design's "
                     f"{figures[r + 'bytes_written_per_point']:.0f} B and {figures[r + 'collective_calls_per_point']:.2f}")
    ratios = {k: figures[k] for k in ("bytes_written_original_over_ours", "collective_calls_original_over_ours") if k in figures}
    result = {"benchmark": "queue_sim", "summary": "; ".join(words), "figures": figures, "ratios": ratios, "targets": targets,
              "passed": met if targets else None}
    print("RESULT " + json.dumps(result))
    return 1 if (args.strict and not met) else 0


if __name__ == "__main__":
    sys.exit(main())
