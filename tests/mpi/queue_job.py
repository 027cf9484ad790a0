"""A job the multi-rank tests launch (mpiexec or torchrun): run items through a backend, record what happened.

Each item sleeps (no CPU) for a time drawn from the item's own seed, so runs are repeatable.
Rank 0 writes ``<out>/writer.json`` (every delivered item, who computed it, progress calls,
timings); every rank writes ``<out>/rank<r>.json`` with the time ``run`` returned.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from effrep_hpc.dist import abort_on_error, get_backend


def main() -> None:
    """Parse arguments, run the items, write the records."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kind", default="auto")
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--sleep-max", type=float, default=0.01, help="seconds; each item sleeps U(0, max)")
    parser.add_argument("--sleep-fixed", type=float, default=None, help="seconds; every item sleeps this long")
    parser.add_argument("--fail-rank", type=int, default=-1, help="compute raises on this rank")
    parser.add_argument("--fail-linger", type=float, default=0.0, help="seconds the failing rank waits before dying")
    parser.add_argument("--serve-thread", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--prefetch", type=int, default=None)
    parser.add_argument("--root-idle", action="store_true", help="rank 0 only serves and writes")
    parser.add_argument("--payload-bytes", type=int, default=0, help="each result carries a float64 array this big")
    parser.add_argument("--abort-guard", action="store_true", help="wrap the job in dist.abort_on_error")
    args = parser.parse_args()
    if args.abort_guard:
        with abort_on_error():
            run_job(args)
    else:
        run_job(args)


def run_job(args: argparse.Namespace) -> None:
    """Run the items through the backend and write the records."""
    options: dict[str, object] = {}
    if args.kind in ("mpi", "auto"):
        options["prefetch"] = args.prefetch
        options["serve_thread"] = {"auto": None, "on": True, "off": False}[args.serve_thread]
        options["root_computes"] = not args.root_idle
    backend = get_backend(args.kind, **options)
    rank = backend.rank

    def compute(item: int) -> dict[str, object]:
        if rank == args.fail_rank:
            raise RuntimeError(f"deliberate failure on rank {rank} at item {item}")
        if args.sleep_fixed is not None:
            time.sleep(args.sleep_fixed)
        elif args.sleep_max > 0:
            time.sleep(random.Random(item).uniform(0, args.sleep_max))
        result = {"item": item, "square": item * item, "rank": rank, "pid": os.getpid()}
        if args.payload_bytes:
            result["array"] = np.arange(args.payload_bytes // 8, dtype=np.float64) + item
        return result

    delivered: list[list[int]] = []
    progress: list[list[int]] = []
    last_delivery = [0.0]

    def on_result(item: int, result: dict) -> None:
        if args.payload_bytes:
            expected = np.arange(args.payload_bytes // 8, dtype=np.float64) + item
            if not np.array_equal(result["array"], expected):
                raise ValueError(f"array of item {item} arrived corrupted")
        delivered.append([item, int(result["item"]), int(result["square"]), int(result["rank"])])
        last_delivery[0] = time.time()

    shared = backend.broadcast({"token": 4242, "array": [0.5, 1.5]} if rank == 0 else None)
    items = list(range(args.items))
    backend.barrier()
    start = time.perf_counter()
    try:
        backend.run(items, compute, on_result, on_progress=lambda done, total: progress.append([done, total]))
    except RuntimeError:
        if rank == args.fail_rank:
            time.sleep(args.fail_linger)
        raise
    elapsed = time.perf_counter() - start
    returned = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    mine = {"returned": returned, "size": backend.size, "shared": shared}
    (args.out / f"rank{rank}.json").write_text(json.dumps(mine))
    if backend.is_writer:
        record = {
            "kind": backend.kind,
            "size": backend.size,
            "delivered": delivered,
            "progress": progress,
            "last_delivery": last_delivery[0],
            "elapsed": elapsed,
            "serve_thread": getattr(backend, "serve_thread", None),
        }
        (args.out / "writer.json").write_text(json.dumps(record))
    backend.close()


if __name__ == "__main__":
    main()
