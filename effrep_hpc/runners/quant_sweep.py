"""`effrep quant sweep`: ``quant.sweep`` expands into runs (algorithm x bits x lr x batch size x seed), shared out by
the driver; each finished run goes to the sweep file through store/ (rank 0 under MPI, every array task for its own
runs, one writer at a time under the file's lock). Each run checkpoints itself every epoch in ``<sweep>_runs/``;
re-running skips done runs and restarts unfinished ones from their checkpoints. A run that diverges or raises is
recorded as failed with its error, and the sweep goes on.
"""

from __future__ import annotations

def expand_sweep(cfg: Config) -> list[tuple[RunSpec, Config]]:
    """Every run of ``cfg.quant.sweep``, in a fixed order (algorithm, bits, lr, batch size, seed)."""
    q, t, s = cfg.quant, cfg.train, cfg.quant.sweep
    combos = []
    for alg in s.algorithms or [q.algorithm]:
        for bits in [FLOAT_BITS] if get_algorithm(alg).rule == "fp" else (s.bits or [q.bits]):
            for lr in s.lr or [t.lr]:
                for batch_size in s.batch_size or [t.batch_size]:
                    for seed in s.seeds or [t.seed]:
                        combos.append((alg, bits, float(lr), int(batch_size), int(seed)))
    plan = []
    for name, (alg, bits, lr, batch_size, seed) in zip(run_names(len(combos)), combos):
        run_cfg = copy.deepcopy(cfg)
        run_cfg.quant.algorithm, run_cfg.quant.bits = alg, bits
        run_cfg.train.lr, run_cfg.train.batch_size, run_cfg.train.seed = lr, batch_size, seed
        run_cfg.quant.sweep = QuantSweepConfig()
        key = {"algorithm": alg, "bits": bits, "lr": lr, "batch_size": batch_size, "seed": seed}
        plan.append((RunSpec(name, key, run_yaml(run_cfg)), run_cfg))
    return plan


def run_quant_sweep(cfg: Config, *, overwrite: bool = False, retry_failed: bool = False) -> Optional[Path]:
    """Run (or finish) the sweep of ``cfg``; return the sweep file's path on the writer, None elsewhere."""
    q = cfg.quant
    options = {}
    if q.backend == "array":
        options = {k: v for k, v in (("task_id", q.task_id), ("num_tasks", q.num_tasks)) if v is not None}
    backend = get_backend(q.backend, **options)
    is_array = backend.kind == "array"
    if overwrite and is_array:
        raise ValueError(
            "--overwrite cannot be used by array tasks (they share one sweep file); delete the sweep file and "
            "its _runs directory once before submitting the array"
        )
    device = setup_runtime(cfg.run, local_rank())
    path = resolve_path(q.sweep_file, cfg.run.out, "sweep.h5")
    plan = expand_sweep(cfg)
    leader = backend.rank == 0 or is_array
    problem: Optional[str] = None
    statuses: Optional[list[str]] = None
    if leader:
        try:
            statuses = prepare_sweep(
                path, [spec for spec, _ in plan], config_yaml=to_yaml(cfg), epochs=cfg.train.epochs,
                overwrite=overwrite, timeout=q.lock_timeout,
            )
        except (ValueError, OSError, RuntimeError) as exc:
            problem = str(exc)
            if backend.size == 1 or is_array:
                raise
    # one collective: every rank learns what is left to do (or the writer's error)
    problem, statuses = backend.broadcast((problem, statuses))  # type: ignore[misc]
    if problem:
        raise ValueError(problem)
    assert statuses is not None
    skip = {"done"} if retry_failed else {"done", "failed"}
    if is_array:
        lo, hi = backend.bounds(len(plan))  # type: ignore[attr-defined]
        todo = [i for i in range(lo, hi) if statuses[i] not in skip]
        items = list(range(len(plan)))  # the array backend takes this task's static block itself
    else:
        todo = [i for i, s in enumerate(statuses) if s not in skip]
        items = todo
    todo_set = set(todo)
    writes_here = backend.size == 1 or is_array  # this process trains and writes the same runs
    cache: dict[str, Any] = {}

    def compute(index: int) -> Optional[RunRecord]:
        if index not in todo_set:
            return None
        spec, run_cfg = plan[index]
        if "data" not in cache:
            cache["data"] = dataset_from_config(cfg, device)
        if writes_here:
            mark_running(path, index, started=time.time(), timeout=q.lock_timeout)
        return execute_run(run_cfg, cache["data"], device, run_checkpoint(path, spec.name))

    is_main = leader and backend.is_writer
    bar = progress(len(todo), f"quant sweep {backend.kind}x{backend.size}", enabled=is_main and cfg.run.progress, unit="run")
    counts = {"done": 0, "failed": 0}

    def on_result(index: int, record: Optional[RunRecord]) -> None:
        if record is None:
            return
        write_run(path, index, record, timeout=q.lock_timeout)
        counts[record.status] += 1
        if record.status == "failed":
            first = record.error.strip().splitlines()[0] if record.error.strip() else "unknown error"
            print(f"warning: {plan[index][0].name} failed: {first}", file=sys.stderr, flush=True)
        bar.update(1)

    began = time.perf_counter()
    try:
        backend.run(items, compute, on_result)
    finally:
        bar.close()
    if not is_main:
        return None
    mine = len(plan)
    if is_array:
        lo, hi = backend.bounds(len(plan))  # type: ignore[attr-defined]
        mine = hi - lo
    skipped = mine - len(todo)
    where = f"task {backend.rank + 1} of {backend.size}" if is_array else f"{backend.size} {backend.kind} worker(s)"
    print(
        f"trained {len(todo)} run(s) in {time.perf_counter() - began:.1f}s on {where}: {counts['done']} done, "
        f"{counts['failed']} failed; {skipped} already done or failed",
        flush=True,
    )
    report("sweep", path)
    return path


