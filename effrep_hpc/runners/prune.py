"""`effrep prune ...`: sensitivity scans over dist/, and prune / retrain / from-scratch runs of a checkpoint.

Sensitivity: every (layer, ratio, criterion) cell is one work item. Each worker prunes a copy of the
trained model at that one layer (physically: the copy is a smaller model), evaluates it (optionally after
a short retraining) and sends ``(acc, loss)`` to the writer, which records it in the sensitivity file
through ``store.sensitivity``. Running the same command again, with any number of ranks, computes only
the missing cells.

Prune and retrain: the trained model is pruned once (or in ``prune.iterations`` equal steps) by a preset
and/or per-layer ratios, saved as arch + state_dict, and retrained with the paper's recipe (constant lr
1e-3). Every epoch ends with an atomic checkpoint, so a killed run resumes where it stopped. ``scratch``
trains the pruned architecture from random weights with the ``train`` section: the paper's baseline.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from effrep_hpc.config import Config, to_yaml
from effrep_hpc.data import augment as augment_batch
from effrep_hpc.data.base import seeded_generator
from effrep_hpc.dist import get_backend
from effrep_hpc.dist.env import local_rank
from effrep_hpc.landscape.directions import weights_hash
from effrep_hpc.models import create_model
from effrep_hpc.prune import (
    compare_costs,
    criterion_name,
    group_scores,
    is_activation_criterion,
    keep_counts,
    keep_top,
    measured_speedup,
    num_keep,
    paper_layer_ids,
    prune_groups,
    prune_model,
    pruned_arch,
    ratios_for,
    resolve_layer,
    select_filters,
)
from effrep_hpc.prune.cost import group_flops
from effrep_hpc.runners.common import load_model, progress, report, resolve_path, setup_runtime
from effrep_hpc.runners.train import dataset_from_config, run_train
from effrep_hpc.store.checkpoint import load_checkpoint, save_checkpoint
from effrep_hpc.store.curves import MetricsFile
from effrep_hpc.store.sensitivity import SensitivitySpec, SensitivityWriter, sensitivity_shard_path
from effrep_hpc.train.loop import evaluate, train_epoch
from effrep_hpc.train.optim import build_optimizer, build_scheduler

RETRAIN_FIELDS = ["epoch", "step", "width_fraction", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]
# prune.* keys that decide what a prune/retrain run computes (the rest: sensitivity, speed, output path).
PLAN_KEYS = (
    "criterion", "strategy", "preset", "ratios", "round_to", "checkpoint", "seed", "activation_images", "iterations",
    "retrain_epochs", "retrain_lr", "retrain_schedule", "retrain_milestones",
)


# ------------------------------------------------------------------------------------------------
# shared pieces


def load_source_model(path: Path, cfg: Config, device: torch.device) -> nn.Module:
    """The trained model of a checkpoint, rebuilt from its arch spec (it may itself be a pruned one)."""
    return load_model(path, cfg, device, "prune.checkpoint")


def _check_classes(model: nn.Module, dataset: Any, path: Path) -> None:
    out_features = model.arch.get("num_classes")  # type: ignore[union-attr]
    if out_features is not None and int(out_features) != dataset.num_classes:
        raise ValueError(
            f"the model in {path} predicts {out_features} classes but data {dataset.name!r} has {dataset.num_classes}"
        )


def activation_images(cfg: Config, dataset: Any) -> Optional[Tensor]:
    """A seeded sample of ``prune.activation_images`` training inputs (what activation criteria measure)."""
    n = min(cfg.prune.activation_images, dataset.num_train)
    idx = torch.randperm(dataset.num_train, generator=seeded_generator(cfg.prune.seed, "prune-activations"))[:n]
    return dataset.x_train[idx.sort().values.to(dataset.device)]


def accuracy(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1024, loss: str = "ce") -> tuple[float, float]:
    """(accuracy in percent, mean loss) of ``model`` on ``x``, ``y`` in eval mode."""
    loss_sum, correct, n = evaluate(model, x, y, batch_size=batch_size, loss=loss)
    return 100.0 * correct / n, loss_sum / n


def plan_ratios(cfg: Config, model: nn.Module) -> dict[Any, float]:
    """The per-layer ratios of ``prune.preset`` updated by ``prune.ratios``; an error if neither is set."""
    P = cfg.prune
    if not P.preset and not P.ratios:
        raise ValueError(
            "nothing to prune: set prune.preset (e.g. vgg16-a) or prune.ratios (e.g. 'prune.ratios={features.0: 0.5}'); "
            "`effrep prune sensitivity` helps choose"
        )
    return ratios_for(model, P.preset, P.ratios)


def _retrain_epochs(
    model: nn.Module,
    cfg: Config,
    dataset: Any,
    *,
    epochs: int,
    generator: torch.Generator,
    on_epoch: Optional[Callable[[int, dict[str, float], torch.optim.Optimizer, Any], None]] = None,
    start_epoch: int = 0,
    optimizer_state: Optional[dict] = None,
    scheduler_state: Optional[dict] = None,
) -> dict[str, float]:
    """Fine-tune ``model`` with the prune.retrain_* recipe; return the last epoch's metrics."""
    t, P = cfg.train, cfg.prune
    optimizer = build_optimizer(
        model.parameters(), t.optimizer, lr=P.retrain_lr, momentum=t.momentum, nesterov=t.nesterov,
        weight_decay=t.weight_decay,
    )
    scheduler = build_scheduler(optimizer, P.retrain_schedule, epochs=epochs, milestones=P.retrain_milestones, gamma=t.gamma)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if scheduler_state is not None:
        scheduler.load_state_dict(scheduler_state)
    device = dataset.device
    aug_gen = generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(t.seed + 1)
    aug = (lambda xb: augment_batch(xb, generator=aug_gen)) if cfg.data.augment else None
    final: dict[str, float] = {}
    for epoch in range(start_epoch, epochs):
        began = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        tl, tc, tn = train_epoch(
            model, optimizer, dataset.x_train, dataset.y_train, batch_size=t.batch_size, generator=generator,
            loss=t.loss, augment=aug,
        )
        scheduler.step()
        el, ec, en = evaluate(model, dataset.x_test, dataset.y_test, loss=t.loss)
        final = {
            "train_loss": tl / tn, "train_acc": 100.0 * tc / tn, "test_loss": el / en, "test_acc": 100.0 * ec / en,
            "lr": lr, "seconds": time.perf_counter() - began,
        }
        if on_epoch is not None:
            on_epoch(epoch, final, optimizer, scheduler)
    return final


# ------------------------------------------------------------------------------------------------
# prune, retrain, from scratch


@dataclass
class PruneOutputs:
    """Where a prune run wrote its results, and the summary rows (stage -> numbers)."""

    out: Path
    pruned: Optional[Path]
    checkpoint: Optional[Path]
    metrics: Optional[Path]
    summary: Path
    rows: dict[str, dict[str, Any]]


def _plan(cfg: Config) -> dict[str, Any]:
    P = dataclasses.asdict(cfg.prune)
    plan = {k: P[k] for k in PLAN_KEYS}
    plan["ratios"] = {str(k): v for k, v in plan["ratios"].items()}
    return {"prune": plan, "data": dataclasses.asdict(cfg.data), "model": cfg.model.name,
            "train": {k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in ("epochs", "milestones", "keep_every")}}


def _write_summary(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    """Merge ``rows`` into the JSON summary at ``path`` (written atomically)."""
    current: dict[str, Any] = {}
    if path.is_file():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    current.update(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(current, indent=1) + "\n")
    os.replace(tmp, path)


def _row(model: nn.Module, dataset: Any, cfg: Config, **extra: Any) -> dict[str, Any]:
    from effrep_hpc.models import count_flops_params

    flops, params = count_flops_params(model, dataset.input_shape, include_shortcuts=False)
    acc, loss = accuracy(model, dataset.x_test, dataset.y_test, loss=cfg.train.loss)
    return {"test_acc": acc, "test_loss": loss, "flops": flops, "params": params, **extra}


def _speed_input(dataset: Any, batch: int) -> Tensor:
    x = dataset.x_test
    reps = -(-batch // x.shape[0])
    return (x.repeat(reps, *([1] * (x.dim() - 1))) if reps > 1 else x)[:batch].contiguous()


def _pruned_payload(model: nn.Module, cfg: Config, keep: dict[str, Tensor], source: Path, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "arch_name": model.arch_name,
        "arch": model.arch,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "keep": {k: v.cpu() for k, v in keep.items()},
        "source": str(source),
        "config": to_yaml(cfg),
        **extra,
    }


def _step_counts(
    model0_widths: dict[str, int], ratios: dict[str, float], step: int, steps: int, multiple: int = 1
) -> dict[str, int]:
    """Kept filters per group after ``step`` of ``steps`` equal steps towards the final ratios."""
    return {g: num_keep(model0_widths[g], r * step / steps, multiple) for g, r in ratios.items()}


def run_prune(cfg: Config, *, retrain: bool, overwrite: bool = False) -> PruneOutputs:
    """Prune the checkpoint of ``cfg`` (and, with ``retrain``, fine-tune it; resumable); write the summary."""
    from effrep_hpc.prune.groups import resolve_ratios

    P = cfg.prune
    device = setup_runtime(cfg.run, local_rank())
    checkpoint = resolve_path(P.checkpoint, cfg.run.out, "checkpoint.pt")
    out = Path(P.out) if P.out else Path(cfg.run.out) / "pruned"
    pruned_path, ckpt_path, metrics_path = out / "pruned.pt", out / "checkpoint.pt", out / "metrics.h5"
    retrained_path, summary_path = out / "retrained.pt", out / "summary.json"
    source = load_source_model(checkpoint, cfg, device)
    dataset = dataset_from_config(cfg, device)
    _check_classes(source, dataset, checkpoint)
    ratios = resolve_ratios(source, plan_ratios(cfg, source))
    widths0 = {g.name: g.width for g in prune_groups(source)}
    images = activation_images(cfg, dataset) if is_activation_criterion(P.criterion) else None
    plan = _plan(cfg)
    steps = P.iterations if retrain else 1
    E = P.retrain_epochs

    state = None
    if retrain and ckpt_path.exists() and not overwrite:
        state = load_checkpoint(ckpt_path)
        if state.get("plan") != json.loads(json.dumps(plan)):
            raise ValueError(
                f"{ckpt_path} belongs to a prune-and-retrain run with different settings; resume with the same "
                f"config, choose another prune.out, or pass --overwrite to start over"
            )
    elif overwrite:
        stale = (pruned_path, ckpt_path, metrics_path, retrained_path, summary_path) if retrain else (pruned_path, summary_path)
        for p in stale:
            p.unlink(missing_ok=True)

    rows: dict[str, dict[str, Any]] = {"original": _row(source, dataset, cfg, speedup=1.0)}
    generator = torch.Generator().manual_seed(cfg.train.seed)
    model: nn.Module = source
    step, epoch = 0, 0
    history: list[dict[str, Any]] = []
    resume_opt = resume_sched = None
    if state is not None:
        model = create_model(state["arch_name"], **state["arch"]).to(device)
        model.load_state_dict(state["model"])
        step, epoch = int(state["step"]), int(state["epoch"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history = list(state.get("history", []))
        if epoch < E:
            resume_opt, resume_sched = state["optimizer"], state["scheduler"]
    metrics = (
        MetricsFile(metrics_path, config_yaml=to_yaml(cfg), fields=RETRAIN_FIELDS, epochs=steps * E, resume=state is not None)
        if retrain else None
    )
    done_epochs = (step - 1) * E + epoch if state is not None else 0
    bar = progress(steps * E, "prune+retrain", enabled=retrain and cfg.run.progress, unit="epoch", initial=done_epochs)

    def on_epoch(e: int, final: dict[str, float], optimizer: Any, scheduler: Any) -> None:
        row = (step - 1) * E + e
        kept = {g.name: g.width for g in prune_groups(model)}
        frac = sum(kept[g] for g in ratios) / max(1, sum(widths0[g] for g in ratios))
        metrics.write_epoch(row, {"epoch": row + 1, "step": step, "width_fraction": frac, **final})  # type: ignore[union-attr]
        save_checkpoint(ckpt_path, {
            "kind": "prune-retrain", "arch_name": model.arch_name, "arch": model.arch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
            "epoch": e + 1, "plan": plan, "history": history, "config": to_yaml(cfg), "final": final,
        })
        bar.set_postfix(step=f"{step}/{steps}", test_acc=f"{final['test_acc']:.1f}", refresh=False)
        bar.update(1)

    try:
        while True:
            if state is None or epoch >= E:
                if step == steps:
                    break
                # The next step prunes the current weights down to this step's widths.
                step += 1
                counts = _step_counts(widths0, ratios, step, steps, P.round_to)
                keep = select_filters(model, counts, criterion=P.criterion, strategy=P.strategy, images=images, seed=P.seed)
                model = prune_model(model, keep)
                acc_now, _ = accuracy(model, dataset.x_test, dataset.y_test, loss=cfg.train.loss)
                history.append({"step": step, "widths": {g: int(c) for g, c in counts.items()}, "test_acc_after_pruning": acc_now})
                if step == steps:
                    save_checkpoint(pruned_path, _pruned_payload(model, cfg, keep, checkpoint, "pruned", ratios=ratios,
                                                                 step=step, history=history))
                epoch = 0
                if not retrain:
                    break
            _retrain_epochs(model, cfg, dataset, epochs=E, generator=generator, on_epoch=on_epoch, start_epoch=epoch,
                            optimizer_state=resume_opt, scheduler_state=resume_sched)
            resume_opt = resume_sched = None
            epoch, state = E, None
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()

    pruned_state = load_checkpoint(pruned_path)
    pruned = create_model(pruned_state["arch_name"], **pruned_state["arch"]).to(device)
    pruned.load_state_dict(pruned_state["model"])
    x_speed = _speed_input(dataset, P.speed_batch_size)
    speed = measured_speedup(source, pruned, x_speed, repeats=P.speed_repeats)
    costs = compare_costs(source, pruned, dataset.input_shape)
    extra = {"speedup": speed, "flops_reduction_pct": costs["flops_reduction_pct"], "params_reduction_pct": costs["params_reduction_pct"]}
    rows["pruned"] = _row(pruned, dataset, cfg, **extra)
    if retrain:
        save_checkpoint(retrained_path, _pruned_payload(model, cfg, {}, checkpoint, "retrained", history=history))
        rows["retrained"] = _row(model, dataset, cfg, epochs=steps * E, iterations=steps, **extra)
    rows["_meta"] = {"batch_size": int(x_speed.shape[0]), "threads": torch.get_num_threads(), "device": str(device),
                     "widths_after": {k: v for k, v in pruned.arch.items() if k != "num_classes"}}  # type: ignore[union-attr]
    _write_summary(summary_path, rows)
    return PruneOutputs(out=out, pruned=pruned_path, checkpoint=ckpt_path if retrain else None,
                        metrics=metrics_path if retrain else None, summary=summary_path, rows=rows)


def run_scratch(cfg: Config, *, overwrite: bool = False) -> PruneOutputs:
    """Train the pruned architecture from random weights with the ``train`` section (resumable)."""
    P = cfg.prune
    device = setup_runtime(cfg.run, local_rank())
    checkpoint = resolve_path(P.checkpoint, cfg.run.out, "checkpoint.pt")
    out = Path(P.out) if P.out else Path(cfg.run.out) / "pruned"
    if checkpoint.is_file():
        source = load_source_model(checkpoint, cfg, torch.device("cpu"))
    else:
        source = create_model(cfg.model.name, **cfg.model.kwargs)
    counts = keep_counts(source, plan_ratios(cfg, source), multiple=P.round_to)
    arch = {k: v for k, v in pruned_arch(source, counts).items() if k != "num_classes"}
    scratch_cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, kwargs=arch),
        run=dataclasses.replace(cfg.run, out=str(out / "scratch")),
        train=dataclasses.replace(cfg.train, keep_every=0),
    )
    result = run_train(scratch_cfg, overwrite=overwrite)
    state = load_checkpoint(result.checkpoint)
    model = create_model(state["arch_name"], **state["arch"]).to(device)
    model.load_state_dict(state["model"])
    dataset = dataset_from_config(cfg, device)
    rows = {"scratch": _row(model, dataset, cfg, epochs=cfg.train.epochs)}
    summary = out / "summary.json"
    _write_summary(summary, rows)
    return PruneOutputs(out=out, pruned=None, checkpoint=result.checkpoint, metrics=result.metrics, summary=summary, rows=rows)


def format_summary(rows: dict[str, dict[str, Any]]) -> str:
    """The before/after table: accuracy, FLOPs, params and measured speed-up per stage."""
    meta = rows.get("_meta", {})
    lines = [f"{'model':<11} {'test acc':>9} {'FLOPs':>13} {'params':>11} {'FLOPs x':>8} {'measured x':>11}"]
    base = rows.get("original")
    for stage in ("original", "pruned", "retrained", "scratch"):
        r = rows.get(stage)
        if r is None:
            continue
        flop_ratio = f"{base['flops'] / r['flops']:.2f}" if base else "-"
        speed = f"{r['speedup']:.2f}" if r.get("speedup") is not None else "-"
        lines.append(f"{stage:<11} {r['test_acc']:>8.2f}% {r['flops']:>13,} {r['params']:>11,} {flop_ratio:>8} {speed:>11}")
    if meta:
        lines.append(f"(measured: median forward time, batch {meta.get('batch_size')}, {meta.get('threads')} thread(s), {meta.get('device')})")
    return "\n".join(lines)
