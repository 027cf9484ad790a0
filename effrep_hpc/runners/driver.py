"""The one sharded driver: work items of one output, computed on any backend, written by one writer per file.

A runner describes its experiment as a :class:`Job` (every item of the whole output in a fixed order,
what of an item is still to do, how to compute it, how the writer stores a result) and hands it with a
backend to :func:`run_job`. The driver takes the items this job step owns (all of them for serial, MPI
and torch.distributed pools; a fixed block for a SLURM array task, so a requeued task keeps its block),
drops what is done, runs the rest, shows one progress bar with ETA on the writer, and prints one tail:
how much was computed, how fast, where, and (array tasks) how to merge the shards. No rank waits on
another before all are known to be ready: runners wrap their setup in :func:`setup_guard` (the first
collective), and a failure there or in :func:`open_output` ends every rank with the same JobError.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar

from effrep_hpc.config import Config
from effrep_hpc.dist import Backend, get_backend
from effrep_hpc.dist.base import die_hook, guarded
from effrep_hpc.errors import settle, status_of
from effrep_hpc.runners.common import progress
from effrep_hpc.store.h5 import FileBusyError
from effrep_hpc.store.shards import shard_glob, shard_path

W = TypeVar("W")


@dataclass
class Job:
    """What the driver needs from a runner; ``todo`` and ``count`` must give the same answer on every rank."""

    label: str  # names the bar and the output line, e.g. "surface"
    unit: str  # what one counted entry is: "point", "cell", "run"
    items: Sequence[Any]  # every work item of the whole output, in a fixed order
    compute: Callable[[Any], Any]  # item -> result (any rank)
    write: Callable[[Any, Any], None]  # (item, result) -> None, on the writer only
    todo: Callable[[Any], Optional[Any]] = lambda item: item  # the part still to compute, None when done
    count: Callable[[Any], int] = lambda item: 1  # entries in an item (points in a tile)
    verb: str = "computed"
    tail: Callable[[], str] = lambda: ""  # more words for the tail line, e.g. failures


@dataclass
class Output(Generic[W]):
    """The file this process writes (the final file, or this array task's shard) and its open writer."""

    final: Path
    path: Path
    attrs: dict[str, Any] = field(default_factory=dict)  # shard attributes for array tasks
    writer: Optional[W] = None
    pending: Any = None  # what is left to do, the same on every rank


def backend_for(cfg: Config) -> Backend:
    """The backend that ``cfg.dist`` asks for (``auto``: the one the launcher implies)."""
    return get_backend(cfg.dist.backend, **cfg.dist.options())


def setup_guard(backend: Backend) -> AbstractContextManager[None]:
    """Wrap a runner's setup: leaving it, all ranks agree in one allgather that all worked (see dist.base.guarded)."""
    return guarded(backend.allgather, backend.rank, (FileBusyError,))


def open_output(
    backend: Backend, final: Path, make_writer: Callable[[Path, dict[str, Any]], W], *, sharded: bool = True
) -> Output[W]:
    """Open (or resume) this process's output on the writer and tell every rank what is pending, in one collective.

    An array task writes its own shard of ``final`` (unless not ``sharded``: then every task writes
    into ``final`` under its lock). An error while opening (a busy file, a file of another run)
    reaches every rank as the same JobError, reported by the writer (a process alone: the error itself).
    """
    array = backend.kind == "array" and sharded
    out: Output[W] = Output(final, shard_path(final, backend.rank, backend.size) if array else final)
    if array:
        out.attrs = {"shard_task": backend.rank, "shard_count": backend.size}
    error: Optional[BaseException] = None
    if backend.is_writer:
        try:
            out.writer = make_writer(out.path, out.attrs)
        except Exception as exc:  # noqa: BLE001 - every rank raises it below
            error = exc
    pending = getattr(out.writer, "pending", None)
    gathered: list[Any] = backend.allgather((error and status_of(error, (FileBusyError,)), pending and pending()))
    settle([status for status, _ in gathered], backend.rank, error, name_rank=False)
    out.pending = gathered[0][1]  # the writer's: rank 0, or this array task itself
    return out


def run_job(backend: Backend, job: Job, output: Output[Any], *, show_progress: bool = True) -> Optional[Path]:
    """Compute the owned, unfinished part of ``job``; return the written file on the writer, None elsewhere."""
    work = [w for i in backend.owned(len(job.items)) if (w := job.todo(job.items[i])) is not None]
    total = sum(job.count(w) for w in work)
    main = backend.is_writer and (backend.rank == 0 or backend.kind == "array")
    bar = progress(total, f"{job.label} {backend.kind}x{backend.size}", enabled=main and show_progress, unit=job.unit)

    def on_result(item: Any, result: Any) -> None:
        job.write(item, result)
        bar.update(job.count(item))

    began = time.perf_counter()
    try:
        backend.run(work, die_hook(job.compute, backend.rank), on_result)
    finally:
        bar.close()
        getattr(output.writer, "close", lambda: None)()
    if not backend.is_writer:
        return None
    if main:
        elapsed = time.perf_counter() - began
        rate = f"{total / elapsed:.2f}" if elapsed > 0 else "nan"
        array = backend.kind == "array"
        where = f"task {backend.rank + 1} of {backend.size}" if array else f"{backend.size} {backend.kind} worker(s)"
        print(f"{job.verb} {total} {job.unit}(s) in {elapsed:.1f}s ({rate} {job.unit}s/s) on {where}{job.tail()}", flush=True)
        if array and output.path != output.final:
            print(f"shard {backend.rank} of tasks 0..{backend.size - 1}; when all are done: "
                  f"effrep merge {shard_glob(output.final, backend.size)} -o {output.final}", flush=True)
        print(f"{job.label}: {output.path}", flush=True)
    return output.path
