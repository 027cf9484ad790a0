"""`effrep prune sensitivity`: every (layer, ratio, criterion) cell is one work item of the shared driver.

Each worker prunes a copy of the trained model at one layer (physically: the copy is a smaller model),
evaluates it (optionally after a short retraining) and sends ``(acc, loss)`` to the writer, which records
it in the sensitivity file through ``store.sensitivity``. Re-running, with any number of ranks, computes
only the missing cells.
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------------------
# sensitivity


@dataclass
class SensitivityContext:
    """What every rank needs to evaluate a cell: the model, the data and the scan's axes."""

    model: nn.Module
    groups: list[str]
    widths: list[int]
    ratios: list[float]
    criteria: list[str]
    kept: np.ndarray
    x_eval: Tensor
    y_eval: Tensor
    dataset: Any
    cfg: Config
    images: Optional[Tensor]
    scores: dict[tuple[str, str], Tensor] = field(default_factory=dict)  # per-rank cache (group, criterion)


def evaluate_cell(ctx: SensitivityContext, layer: int, ratio: int, crit: int) -> tuple[float, float]:
    """Accuracy (percent) and loss of the model with one layer pruned at one ratio by one criterion."""
    P = ctx.cfg.prune
    group, criterion = ctx.groups[layer], ctx.criteria[crit]
    count = int(ctx.kept[layer, ratio])
    if count < ctx.widths[layer]:
        key = (group, criterion)
        if key not in ctx.scores:
            ctx.scores[key] = group_scores(ctx.model, group, criterion, images=ctx.images, seed=P.seed)
        model = prune_model(ctx.model, {group: keep_top(ctx.scores[key], count)})
    else:
        model = copy.deepcopy(ctx.model)
    if P.sensitivity_retrain_epochs > 0:
        # Seeded per cell, so a cell's value does not depend on which rank computes it, or when.
        flat = (layer * len(ctx.ratios) + ratio) * len(ctx.criteria) + crit
        generator = torch.Generator().manual_seed(ctx.cfg.train.seed * 1_000_003 + flat)
        _retrain_epochs(model, ctx.cfg, ctx.dataset, epochs=P.sensitivity_retrain_epochs, generator=generator)
    return accuracy(model, ctx.x_eval, ctx.y_eval, batch_size=P.eval_batch_size, loss=ctx.cfg.train.loss)


def _eval_split(cfg: Config, dataset: Any) -> tuple[Tensor, Tensor]:
    P = cfg.prune
    x, y = (dataset.x_test, dataset.y_test) if P.eval_split == "test" else (dataset.x_train, dataset.y_train)
    if P.eval_size is not None and P.eval_size < len(y):
        idx = torch.randperm(len(y), generator=seeded_generator(cfg.data.seed, f"prune-eval-{P.eval_split}"))
        idx = idx[: P.eval_size].sort().values.to(x.device)
        x, y = x[idx], y[idx]
    return x, y


def sensitivity_spec(cfg: Config, model: nn.Module, baseline: tuple[float, float], input_shape: tuple[int, ...]) -> tuple[SensitivitySpec, list[str]]:
    """The scan's axes and per-layer facts for ``model`` (and the criteria in canonical spelling)."""
    P = cfg.prune
    groups = prune_groups(model)
    if P.layers is None:
        chosen = groups
    else:
        chosen = []
        for key in P.layers:
            g = resolve_layer(model, groups, key)
            if g not in chosen:
                chosen.append(g)
    criteria = [criterion_name(c) for c in P.sensitivity_criteria]
    if len(set(criteria)) != len(criteria):
        raise ValueError(f"prune.sensitivity_criteria names a criterion twice: {P.sensitivity_criteria}")
    ratios = [float(r) for r in P.sensitivity_ratios]
    ids = paper_layer_ids(model)
    total, per_group = group_flops(model, input_shape)
    kept = np.array([[num_keep(g.width, r) for r in ratios] for g in chosen], dtype=np.int64)
    flops_fraction = np.array(
        [[(total - (1 - k / g.width) * per_group[g.name]) / total for k in kept[i]] for i, g in enumerate(chosen)]
    )
    max_width = max(g.width for g in chosen)
    filter_l1 = np.full((len(chosen), max_width), np.nan)
    for i, g in enumerate(chosen):
        norms = model.get_submodule(g.scorer).conv.weight.detach().abs().reshape(g.width, -1).sum(1).double().cpu()
        norms = norms.sort(descending=True).values
        filter_l1[i, : g.width] = (norms / norms.max()).numpy() if float(norms.max()) > 0 else norms.numpy()
    spec = SensitivitySpec(
        layers=[g.name for g in chosen],
        ratios=np.asarray(ratios),
        criteria=criteria,
        layer_ids=[ids.get(g.scorer, min(g.layer_ids) if g.layer_ids else 0) for g in chosen],
        widths=[g.width for g in chosen],
        kept=kept,
        flops_fraction=flops_fraction,
        filter_l1=filter_l1,
        model_hash=weights_hash(model),
        arch_name=model.arch_name,  # type: ignore[arg-type]
        arch=model.arch,  # type: ignore[arg-type]
        eval={
            "data": cfg.data.name, "data_seed": cfg.data.seed, "split": P.eval_split, "size": P.eval_size,
            "loss": cfg.train.loss, "seed": P.seed,
            "activation_images": P.activation_images if any(is_activation_criterion(c) for c in criteria) else None,
            "retrain_epochs": P.sensitivity_retrain_epochs,
            "retrain": (
                {"lr": P.retrain_lr, "schedule": P.retrain_schedule, "optimizer": cfg.train.optimizer,
                 "batch_size": cfg.train.batch_size, "weight_decay": cfg.train.weight_decay, "seed": cfg.train.seed}
                if P.sensitivity_retrain_epochs > 0 else None
            ),
        },
        baseline_acc=baseline[0],
        baseline_loss=baseline[1],
        config_yaml=to_yaml(cfg),
    )
    return spec, criteria


def run_sensitivity(cfg: Config, *, overwrite: bool = False) -> Optional[Path]:
    """Compute (or finish) the sensitivity file of ``cfg``; return its path on the writer, None elsewhere."""
    P = cfg.prune
    options = {}
    if P.backend == "array":
        options = {k: v for k, v in (("task_id", P.task_id), ("num_tasks", P.num_tasks)) if v is not None}
    backend = get_backend(P.backend, **options)
    device = setup_runtime(cfg.run, local_rank())
    checkpoint = resolve_path(P.checkpoint, cfg.run.out, "checkpoint.pt")
    path = resolve_path(P.sensitivity, cfg.run.out, "sensitivity.h5")
    model = load_source_model(checkpoint, cfg, device)
    dataset = dataset_from_config(cfg, device)
    _check_classes(model, dataset, checkpoint)
    x_eval, y_eval = _eval_split(cfg, dataset)
    baseline = accuracy(model, x_eval, y_eval, batch_size=P.eval_batch_size, loss=cfg.train.loss)
    spec, criteria = sensitivity_spec(cfg, model, baseline, tuple(dataset.input_shape))
    needs_images = any(is_activation_criterion(c) for c in criteria)
    ctx = SensitivityContext(
        model=model, groups=spec.layers, widths=spec.widths, ratios=[float(r) for r in spec.ratios],
        criteria=criteria, kept=spec.kept, x_eval=x_eval, y_eval=y_eval, dataset=dataset, cfg=cfg,
        images=activation_images(cfg, dataset) if needs_images else None,
    )
    is_array = backend.kind == "array"
    target = sensitivity_shard_path(path, backend.rank, backend.size) if is_array else path
    extra = {"shard_task": backend.rank, "shard_count": backend.size} if is_array else {}
    writer, pending = open_writer_everywhere(
        backend, lambda: SensitivityWriter(target, spec, overwrite=overwrite, extra_attrs=extra)
    )
    if is_array:
        # Each task owns a fixed block of the whole scan, so a requeued task keeps its block.
        done_here = writer.done_mask() if writer is not None else np.zeros(spec.num_cells, bool)
        lo, hi = backend.bounds(spec.num_cells)  # type: ignore[attr-defined]
        items = [int(k) for k in range(spec.num_cells)]
        todo = int((~done_here[lo:hi]).sum())
    else:
        done_here = None
        items = [int(k) for k in pending]
        todo = len(items)

    def compute(flat: int) -> tuple[int, float, float]:
        if done_here is not None and done_here[flat]:
            return flat, float("nan"), float("nan")
        layer, ratio, crit = spec.cell(flat)
        acc, loss = evaluate_cell(ctx, layer, ratio, crit)
        return flat, acc, loss

    is_main = backend.is_writer and (backend.rank == 0 or is_array)
    bar = progress(todo, f"sensitivity {backend.kind}x{backend.size}", enabled=is_main and cfg.run.progress, unit="cell")
    began = time.perf_counter()

    def on_result(_item: int, result: tuple[int, float, float]) -> None:
        flat, acc, loss = result
        if writer is not None and not (done_here is not None and done_here[flat]):
            writer.write(flat, acc, loss)
            bar.update(1)

    try:
        backend.run(items, compute, on_result)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    elapsed = time.perf_counter() - began
    if writer is None:
        return None
    if is_main:
        rate = todo / elapsed if elapsed > 0 else float("nan")
        print(
            f"computed {todo} cell(s) in {elapsed:.1f}s ({rate:.2f} cells/s) on {backend.size} {backend.kind} worker(s); "
            f"unpruned accuracy {baseline[0]:.2f}%",
            flush=True,
        )
        if is_array:
            first = sensitivity_shard_path(path, 0, backend.size)
            pattern = first.with_name(first.name.replace("-0-of-", "-*-of-"))
            print(f"shard {backend.rank} of tasks 0..{backend.size - 1}; when all are done: effrep prune merge {pattern} -o {path}", flush=True)
        report("sensitivity", target)
    return target


