"""Sweep files: every run of a quantized-training sweep in one HDF5 file, one group per run.

Layout (``kind = "quant_sweep"``, ``schema_version = 1``)::

    /                         attrs: kind, schema_version, config (the sweep's YAML), effrep_version, created,
                                     num_runs, epochs, fields, runs_hash, hist_limit
    /hist_edges               (bins+1,) float64 bin edges of the weight histograms, in grid units
                              (weight / its layer's outermost level: quantized weights lie in [-1, 1])
    /runs/<name>              one group per run (run_0000, run_0001, ...), attrs: index, config (the run's
                              YAML: `effrep quant train` on it reproduces the run), algorithm, bits, lr,
                              batch_size, seed
    /runs/<name>/status       scalar bytes: pending | running | done | failed
    /runs/<name>/error        scalar bytes: why the run failed ('' otherwise; long tracebacks keep their end)
    /runs/<name>/started      scalar float64 unix time (NaN until started); also finished
    /runs/<name>/resumed_from scalar int64: the epoch a per-run checkpoint restarted it from (0: from scratch)
    /runs/<name>/curves/      per-epoch rows (store/curves.py): epoch, train_loss, train_acc, test_loss,
                              test_acc, lr, changed (fraction of quantized weights that changed in the epoch),
                              seconds; plus the ``done`` mask
    /runs/<name>/hist_float   (bins,) counts of the float weights at the end (FP's weights, BC's w_r);
    /runs/<name>/hist_quant   (bins,) counts of the quantized weights; NaN where an algorithm has none
                              (SR and R keep no float copy, FP has no quantized weights)

Per-run checkpoints (torch files, written by whichever process trains the run) live in ``<stem>_runs/``
next to the sweep file, so an unfinished run restarts from its last epoch.

Writers: several processes (MPI rank 0, SLURM array tasks) may write one sweep file, one at a time. Every
write takes the file's :class:`~effrep_hpc.store.h5.WriterLock`, waiting and retrying while another process
holds it, then opens the file, writes one run, flushes, closes and releases. Everything is preallocated at
creation, so a write touches raw data only, and a run's values are flushed before its status says done: a
writer killed at any moment leaves a readable file in which that run is simply recomputed.

Running sweeps: since that lock is held only per write, every process that writes a sweep also keeps an
entry ``<sweep>.writer-<host>-<pid>`` beside it for as long as it runs (:func:`register_writer`). Array
tasks each add their own and never wait on one another; only ``--overwrite`` looks at them, and refuses,
before deleting anything, while another may be alive (an entry of a dead process on this host is stale).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import math
import os
import random
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import h5py
import numpy as np

from effrep_hpc.config.identity import Scope, identity_differences
from effrep_hpc.dist.env import slurm_job_id
from effrep_hpc.store.atomic import atomic_write, clean_stale_tmp, pid_alive
from effrep_hpc.store.curves import create_curves, read_curves, write_row
from effrep_hpc.store.h5 import (
    FileBusyError,
    WriterLock,
    atomic_create,
    open_readonly,
    preallocate,
    process_start_time,
    provenance,
    read_attr,
    set_attrs,
    sha256_arrays,
)

SCHEMA_VERSION = 1
KIND = "quant_sweep"
CURVE_FIELDS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "changed", "seconds"]
STATUSES = ("pending", "running", "done", "failed")
KEY_FIELDS = ("algorithm", "bits", "lr", "batch_size", "seed")
HIST_BINS = 100
HIST_LIMIT = 1.25
ERROR_BYTES = 4000
DEFAULT_LOCK_TIMEOUT = 600.0
# What makes two runs the same run: every result key of these sections (paths and keep_every may differ).
RUN_SCOPE = Scope("quant-run", ("data", "model", "train", "quant"))


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its group name, grid values (``KEY_FIELDS``) and full config as YAML."""

    name: str
    key: dict[str, Any]
    config_yaml: str


@dataclass
class RunRecord:
    """What a finished (done or failed) run hands to the writer."""

    status: str
    error: str = ""
    curves: list[dict[str, float]] = field(default_factory=list)
    hist_float: Optional[np.ndarray] = None
    hist_quant: Optional[np.ndarray] = None
    started: float = math.nan
    finished: float = math.nan
    resumed_from: int = 0


def run_names(count: int) -> list[str]:
    """Group names ``run_0000`` ... for ``count`` runs (more digits when needed, so names sort in order)."""
    width = max(4, len(str(max(count - 1, 0))))
    return [f"run_{i:0{width}d}" for i in range(count)]


def runs_dir(path: str | Path) -> Path:
    """The directory of per-run checkpoints that belongs to sweep file ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_runs")


def run_checkpoint(path: str | Path, name: str) -> Path:
    """The per-run checkpoint of run ``name`` of sweep file ``path``."""
    return runs_dir(path) / f"{name}.pt"


@contextlib.contextmanager
def locked(path: str | Path, timeout: float = DEFAULT_LOCK_TIMEOUT, poll: float = 0.05) -> Iterator[None]:
    """Hold the writer lock of ``path``, waiting (with growing, jittered pauses) up to ``timeout`` seconds.

    A stale lock (dead writer, pid reused, or an empty or garbled lock file older than
    ``store.h5.LOCK_GRACE_S``) is taken over at once, so only a live writer makes this wait. Once held,
    stale temporary files of dead writers are removed (:func:`clean_sweep_tmp`).
    """
    lock = WriterLock(path)
    deadline = time.monotonic() + timeout
    pause = poll
    while True:
        try:
            lock.acquire()
            break
        except FileBusyError as exc:
            if time.monotonic() >= deadline:
                raise FileBusyError(f"gave up after waiting {timeout:g}s for the writer lock: {exc}") from None
            # jitter keeps several array tasks from retrying in lock step
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())) * (0.5 + random.random()))
            pause = min(2 * pause, 1.0)
    try:
        clean_sweep_tmp(path)
        yield
    finally:
        lock.release()


def clean_sweep_tmp(path: str | Path) -> list[Path]:
    """Remove stale ``.tmp-<pid>`` files of the sweep file ``path`` and of its per-run checkpoints (killed writers)."""
    path = Path(path)
    return clean_stale_tmp(path.parent, path.name) + clean_stale_tmp(runs_dir(path), "run_")


def _runs_hash(runs: list[RunSpec], epochs: int) -> str:
    items = [(r.name, np.frombuffer(r.config_yaml.encode(), dtype=np.uint8)) for r in runs]
    return sha256_arrays(items + [("epochs", np.asarray([epochs]))])


def _scalar_text(group: h5py.Group, name: str, text: str, size: int) -> None:
    preallocate(group, name, (), f"S{size}", text.encode())


def _create(path: Path, runs: list[RunSpec], config_yaml: str, epochs: int) -> None:
    with atomic_create(path) as f:
        set_attrs(
            f,
            provenance(
                config_yaml,
                kind=KIND,
                schema_version=SCHEMA_VERSION,
                num_runs=len(runs),
                epochs=epochs,
                fields=",".join(CURVE_FIELDS),
                runs_hash=_runs_hash(runs, epochs),
                hist_limit=HIST_LIMIT,
            ),
        )
        f["hist_edges"] = np.linspace(-HIST_LIMIT, HIST_LIMIT, HIST_BINS + 1)
        top = f.create_group("runs")
        for index, run in enumerate(runs):
            g = top.create_group(run.name)
            set_attrs(g, {"index": index, "config": run.config_yaml, **run.key})
            _scalar_text(g, "status", "pending", 8)
            _scalar_text(g, "error", "", ERROR_BYTES)
            preallocate(g, "started", (), np.float64, np.nan)
            preallocate(g, "finished", (), np.float64, np.nan)
            preallocate(g, "resumed_from", (), np.int64, 0)
            create_curves(g.create_group("curves"), CURVE_FIELDS, epochs)
            preallocate(g, "hist_float", (HIST_BINS,), np.float64, np.nan)
            preallocate(g, "hist_quant", (HIST_BINS,), np.float64, np.nan)


def _mismatch(f: h5py.File, path: Path, runs: list[RunSpec], epochs: int, scope: Scope) -> Optional[str]:
    """Why the file at ``path`` does not hold this sweep (None when it does)."""
    if read_attr(f, "kind") != KIND:
        return f"{path} is not a sweep file (kind={read_attr(f, 'kind')!r})"
    if int(read_attr(f, "schema_version", 0)) > SCHEMA_VERSION:
        return f"{path} has sweep schema {read_attr(f, 'schema_version')}, newer than this effrep ({SCHEMA_VERSION})"
    if read_attr(f, "runs_hash") == _runs_hash(runs, epochs):
        return None
    old_epochs = int(read_attr(f, "epochs", -1))
    old_names = sorted(f["runs"]) if "runs" in f else []
    if old_epochs != epochs:
        return f"{path} holds {old_epochs}-epoch runs, the config asks for {epochs}"
    if len(old_names) != len(runs):
        return f"{path} holds {len(old_names)} runs, the config expands to {len(runs)}"
    for run in runs:
        if run.name not in f["runs"]:
            return f"{path} has no run {run.name}; it was made for a different sweep"
        diffs = identity_differences(str(read_attr(f["runs"][run.name], "config", "")), run.config_yaml, scope)
        if diffs:
            return f"{path}: {run.name} was made with a different config ({'; '.join(diffs[:6])})"
    return None  # only keys that do not change results differ (paths, keep_every): the same sweep


def writer_entries(path: str | Path) -> list[Path]:
    """The live-writer entries ``<sweep>.writer-<host>-<pid>`` of sweep file ``path`` (see :func:`register_writer`)."""
    path = Path(path)
    return sorted(Path(p) for p in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(path.name) + ".writer-*")))


def register_writer(path: str | Path) -> Path:
    """Record this process as a running writer of sweep ``path`` until it exits; return its entry file.

    Unlike the file's lock, which a writer holds only while it writes one run, the entry lasts the whole
    sweep, so ``--overwrite`` can see a live sweep between its writes; array tasks each add their own
    entry and never wait on one another. An entry left by a killed process is stale (see :func:`live_writers`).
    """
    path = Path(path)
    host, pid = socket.gethostname(), os.getpid()
    entry = path.with_name(f"{path.name}.writer-{host}-{pid}")
    me = {"host": host, "pid": pid, "started": process_start_time(pid), "slurm_job": slurm_job_id(), "since": time.time()}
    with atomic_write(entry) as tmp:
        tmp.write_text(json.dumps(me))
    atexit.register(entry.unlink, missing_ok=True)
    return entry


def release_writer(path: str | Path) -> None:
    """Remove this process's writer entry of sweep ``path`` (when its sweep ends before the process does)."""
    path = Path(path)
    path.with_name(f"{path.name}.writer-{socket.gethostname()}-{os.getpid()}").unlink(missing_ok=True)


def _entry_alive(owner: dict[str, Any], host: str, job: Optional[str]) -> bool:
    pid = int(owner["pid"])
    if owner["host"] == host:  # gone, or its pid now names a process that started at another time
        started, now = owner.get("started"), process_start_time(pid)
        return pid_alive(pid) and (started is None or now is None or int(started) == now)
    # on another node nothing can be checked, except an earlier incarnation of this very (requeued) SLURM job
    return not (job is not None and owner.get("slurm_job") == job)


def live_writers(path: str | Path, mine: Optional[Path] = None) -> list[dict[str, Any]]:
    """The other processes registered as running writers of sweep ``path`` that may be alive; stale entries are removed."""
    host, job, live = socket.gethostname(), slurm_job_id(), []
    for entry in writer_entries(path):
        if entry == mine:
            continue
        try:
            owner = json.loads(entry.read_text())
            alive = _entry_alive(owner, host, job)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError):  # garbled (entries are written atomically): not a writer
            alive = False
        if alive:
            live.append({**owner, "entry": str(entry)})
        else:
            entry.unlink(missing_ok=True)
    return live


def _refuse_live_writers(path: Path, mine: Path) -> None:
    live = live_writers(path, mine)
    if live:
        w = live[0]
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(w.get("since", 0))))
        raise FileBusyError(
            f"{path} is being written by a running sweep (host {w.get('host')}, pid {w.get('pid')}, SLURM job "
            f"{w.get('slurm_job')}, since {since}{f', and {len(live) - 1} more' if len(live) > 1 else ''}); --overwrite "
            f"would delete its results, so nothing was deleted. Wait for it to finish or stop it; if it is dead "
            f"(e.g. on another node), delete {w['entry']} and run again."
        )


def prepare_sweep(
    path: str | Path,
    runs: list[RunSpec],
    *,
    config_yaml: str,
    epochs: int,
    scope: Optional[Scope] = None,
    overwrite: bool = False,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[str]:
    """Create the sweep file, or check the existing one holds this sweep (``overwrite``: start over); return statuses.

    A run of the file and of this sweep are the same when every result key of ``scope`` agrees. This process is
    registered as a running writer of the sweep (:func:`register_writer`) until it exits; ``overwrite`` is refused
    (FileBusyError), before anything is deleted, while another registered writer may be alive.
    """
    path = Path(path)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("run names of a sweep must be unique")
    mine = register_writer(path)
    try:
        if overwrite:
            _refuse_live_writers(path, mine)  # at once: a live sweep may hold the lock for a while
        with locked(path, timeout):
            if overwrite:
                _refuse_live_writers(path, mine)  # again under the lock, for one that registered meanwhile
                path.unlink(missing_ok=True)
                shutil.rmtree(runs_dir(path), ignore_errors=True)
            if path.exists():
                with open_readonly(path) as f:
                    problem = _mismatch(f, path, runs, epochs, scope or RUN_SCOPE)
                if problem:
                    raise ValueError(
                        f"{problem}. Resume it with the same config, choose another quant.sweep_file (or run.out), "
                        "or pass --overwrite to start over."
                    )
            else:
                _create(path, runs, config_yaml, epochs)
    except BaseException:
        mine.unlink(missing_ok=True)
        raise
    return read_statuses(path)


def read_statuses(path: str | Path) -> list[str]:
    """The status of every run, in run order (reading does not need the lock)."""
    with open_readonly(path) as f:
        groups = f["runs"]
        order = sorted(groups, key=lambda n: int(read_attr(groups[n], "index")))
        return [groups[n]["status"][()].decode() for n in order]


def _group(f: h5py.File, index: int) -> h5py.Group:
    names = run_names(int(read_attr(f, "num_runs")))
    if not 0 <= index < len(names):
        raise IndexError(f"run index {index} outside 0..{len(names) - 1}")
    return f["runs"][names[index]]


def mark_running(path: str | Path, index: int, *, started: float, timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
    """Record that run ``index`` has started (status running, start time)."""
    with locked(path, timeout), h5py.File(path, "r+") as f:
        g = _group(f, index)
        g["started"][()] = started
        g["status"][()] = b"running"
        f.flush()


def write_run(path: str | Path, index: int, record: RunRecord, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
    """Write a finished run's curves, histograms, times and error, then its status (in that order)."""
    if record.status not in ("done", "failed"):
        raise ValueError(f"write_run records finished runs (done or failed), not {record.status!r}")
    error = record.error.encode("utf-8", errors="replace")
    if len(error) > ERROR_BYTES:
        error = b"..." + error[-(ERROR_BYTES - 3) :]
    with locked(path, timeout), h5py.File(path, "r+") as f:
        g = _group(f, index)
        curves = g["curves"]
        rows = curves["done"].shape[0]
        if len(record.curves) > rows:
            raise ValueError(f"run {index} has {len(record.curves)} epochs of curves, the file holds {rows}")
        for row, values in enumerate(record.curves):
            write_row(curves, row, {k: float(v) for k, v in values.items()})
        for name, hist in (("hist_float", record.hist_float), ("hist_quant", record.hist_quant)):
            if hist is not None:
                g[name][...] = np.asarray(hist, dtype=np.float64)
        g["error"][()] = error
        g["started"][()] = record.started
        g["finished"][()] = record.finished
        g["resumed_from"][()] = int(record.resumed_from)
        f.flush()
        g["status"][()] = record.status.encode()
        f.flush()


def read_sweep(path: str | Path) -> dict[str, Any]:
    """The whole sweep as plain Python/numpy values: attrs, hist_edges, and a list of runs in order."""
    with open_readonly(path) as f:
        if read_attr(f, "kind") != KIND:
            raise ValueError(f"{path} is not a sweep file (kind={read_attr(f, 'kind')!r})")
        attrs = {k: read_attr(f, k) for k in f.attrs}
        groups = f["runs"]
        runs = []
        for name in sorted(groups, key=lambda n: int(read_attr(groups[n], "index"))):
            g = groups[name]
            runs.append(
                {
                    "name": name,
                    **{k: read_attr(g, k) for k in ("index", "config", *KEY_FIELDS)},
                    "status": g["status"][()].decode(),
                    "error": g["error"][()].decode("utf-8", errors="replace"),
                    "started": float(g["started"][()]),
                    "finished": float(g["finished"][()]),
                    "resumed_from": int(g["resumed_from"][()]),
                    "curves": read_curves(g["curves"]),
                    "hist_float": g["hist_float"][()],
                    "hist_quant": g["hist_quant"][()],
                }
            )
        return {"attrs": attrs, "hist_edges": f["hist_edges"][()], "runs": runs}
