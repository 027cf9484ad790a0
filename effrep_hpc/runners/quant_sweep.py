"""`effrep quant sweep`: ``quant.sweep`` expands into runs (algorithm x bits x lr x batch size x seed) for the driver.

Each finished run goes to the one sweep file through store/ (rank 0 under MPI; every array task for its own
runs, one writer at a time under the file's lock). Each run checkpoints itself every epoch in ``<sweep>_runs/``;
re-running skips done runs and restarts unfinished ones from their checkpoints. A run that diverges or raises
is recorded as failed with its error, and the sweep goes on.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from effrep_hpc.config import Config, QuantSweepConfig, to_yaml
from effrep_hpc.config.quant import run_yaml, sweep_grid
from effrep_hpc.dist.env import local_rank
from effrep_hpc.runners.common import dataset_from_config, resolve_path, setup_runtime
from effrep_hpc.runners.driver import Job, backend_for, open_output, run_job, setup_guard
from effrep_hpc.runners.quant import execute_run
from effrep_hpc.store import sweep


def expand_sweep(cfg: Config) -> list[tuple[sweep.RunSpec, Config]]:
    """Every run of ``cfg.quant.sweep`` with its own config, in the order of :func:`sweep_grid`."""
    grid = sweep_grid(cfg)
    plan = []
    for name, key in zip(sweep.run_names(len(grid)), grid):
        run_cfg = copy.deepcopy(cfg)
        run_cfg.quant.algorithm, run_cfg.quant.bits = key["algorithm"], key["bits"]
        run_cfg.train.lr, run_cfg.train.batch_size, run_cfg.train.seed = key["lr"], key["batch_size"], key["seed"]
        run_cfg.quant.sweep = QuantSweepConfig()
        plan.append((sweep.RunSpec(name, key, run_yaml(run_cfg)), run_cfg))
    return plan


def run_quant_sweep(cfg: Config, *, overwrite: bool = False, retry_failed: bool = False) -> Optional[Path]:
    """Run (or finish) the sweep of ``cfg``; return the sweep file's path on the writer, None elsewhere."""
    q = cfg.quant
    backend = backend_for(cfg)
    array = backend.kind == "array"
    with setup_guard(backend):  # every rank's setup has worked before any rank waits for another
        if overwrite and array:
            raise ValueError("--overwrite cannot be used by array tasks (they share one sweep file); delete the sweep "
                             "file and its _runs directory once before submitting the array")
        device = setup_runtime(cfg.run, local_rank())
        path, plan = resolve_path(q.sweep_file, cfg.run.out, "sweep.h5"), expand_sweep(cfg)
        data = dataset_from_config(cfg, device)

    def prepare(_path: Path, _attrs: dict[str, Any]) -> SimpleNamespace:  # the statuses are what is pending
        statuses = sweep.prepare_sweep(path, [spec for spec, _ in plan], config_yaml=to_yaml(cfg), epochs=cfg.train.epochs,
                                 overwrite=overwrite, timeout=q.lock_timeout)
        return SimpleNamespace(pending=lambda: statuses, close=lambda: sweep.release_writer(path))  # the driver closes it

    # Every array task writes into the one sweep file under its lock; under MPI rank 0 does.
    output = open_output(backend, path, prepare, sharded=False)
    skip = {"done"} if retry_failed else {"done", "failed"}
    writes_here = backend.size == 1 or array  # this process trains and writes the same runs
    counts = {"done": 0, "failed": 0}

    def compute(index: int) -> sweep.RunRecord:
        spec, run_cfg = plan[index]
        if writes_here:
            sweep.mark_running(path, index, started=time.time(), timeout=q.lock_timeout)
        return execute_run(run_cfg, data, device, sweep.run_checkpoint(path, spec.name))

    def write(index: int, record: sweep.RunRecord) -> None:
        sweep.write_run(path, index, record, timeout=q.lock_timeout)
        counts[record.status] += 1
        if record.status == "failed":
            first = record.error.strip().splitlines()[0] if record.error.strip() else "unknown error"
            print(f"warning: {plan[index][0].name} failed: {first}", file=sys.stderr, flush=True)

    job = Job(
        "sweep", "run", range(len(plan)), compute, write, todo=lambda i: i if output.pending[i] not in skip else None,
        verb="trained",
        tail=lambda: f": {counts['done']} done, {counts['failed']} failed; "
                     f"{sum(output.pending[i] in skip for i in backend.owned(len(plan)))} already done or failed",
    )
    return run_job(backend, job, output, show_progress=cfg.run.progress)
