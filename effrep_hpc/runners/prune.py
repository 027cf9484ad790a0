"""`effrep prune apply|retrain|scratch`: prune a trained checkpoint (once, or in ``prune.iterations`` equal steps) by a
preset and/or per-layer ratios, retrain it with prune.retrain_* through the one resumable training (runners/train.py),
or train the pruned architecture from random weights with the ``train`` section (the paper's baseline).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from effrep_hpc.config import Config, Scope, to_yaml
from effrep_hpc.dist.env import local_rank
from effrep_hpc.models import count_flops_params, create_model, rebuild_model
from effrep_hpc.prune.cost import compare_costs, ratios_for
from effrep_hpc.prune.groups import prune_groups, resolve_ratios
from effrep_hpc.prune.names import is_activation_criterion
from effrep_hpc.prune.select import compose_keep, keep_counts, select_filters
from effrep_hpc.prune.surgery import num_keep, prune_model, pruned_arch
from effrep_hpc.prune.timing import measured_speedup
from effrep_hpc.runners import common
from effrep_hpc.runners.train import TrainingRun, outputs_text, run_train, step_rule
from effrep_hpc.store.atomic import remove_outputs
from effrep_hpc.store.checkpoint import load_checkpoint, model_payload, save_checkpoint
from effrep_hpc.store.summary import format_summary, read_summary, update_summary  # noqa: F401 (format_summary re-exported)
from effrep_hpc.train.fit import Row, accuracy, augmenter, fit_epochs

SCOPE = Scope("prune-retrain", ("data", "model", "train", "prune"))


def plan_ratios(cfg: Config, model: nn.Module) -> dict[Any, float]:
    """The per-layer ratios of ``prune.preset`` updated by ``prune.ratios``; an error if neither is set."""
    if not cfg.prune.preset and not cfg.prune.ratios:
        raise ValueError(
            "nothing to prune: set prune.preset (e.g. vgg16-a) or prune.ratios (e.g. 'prune.ratios={features.0: 0.5}'); "
            "`effrep prune sensitivity` helps choose"
        )
    return ratios_for(model, cfg.prune.preset, cfg.prune.ratios)


def retrain(model: nn.Module, cfg: Config, dataset: Any, *, epochs: int, generator: torch.Generator) -> Row:
    """Fine-tune ``model`` in place with the prune.retrain_* recipe, writing nothing; return the last row."""
    t, augment = cfg.train, augmenter(cfg.data.augment, generator, dataset.device, cfg.train.seed)
    return fit_epochs(model, *step_rule(cfg, model, "retrain", epochs), dataset, epochs=epochs, batch_size=t.batch_size,
                      generator=generator, loss=t.loss, augment=augment) or {}


@dataclass
class PruneOutputs:
    """Where a prune run wrote its results, and the summary rows (stage -> numbers)."""

    out: Path
    pruned: Optional[Path]
    checkpoint: Optional[Path]
    metrics: Optional[Path]
    summary: Path
    rows: dict[str, dict[str, Any]]


def _paths(cfg: Config) -> tuple[Path, Path]:
    """The trained checkpoint and the output directory of a prune run."""
    P = cfg.prune
    return common.resolve_path(P.checkpoint, cfg.run.out, "checkpoint.pt"), common.resolve_path(P.out, cfg.run.out, "pruned")


def _row(model: nn.Module, dataset: Any, cfg: Config, **extra: Any) -> dict[str, Any]:
    flops, params = count_flops_params(model, dataset.input_shape, include_shortcuts=False)
    acc, loss = accuracy(model, dataset.x_test, dataset.y_test, loss=cfg.train.loss)
    return {"test_acc": acc, "test_loss": loss, "flops": flops, "params": params, **extra}


def run_prune(cfg: Config, *, retrain: bool, overwrite: bool = False) -> PruneOutputs:
    """Prune the checkpoint of ``cfg`` (and, with ``retrain``, fine-tune it; resumable); write the summary."""
    P, yaml = cfg.prune, to_yaml(cfg)
    device = common.setup_runtime(cfg.run, local_rank())
    checkpoint, out = _paths(cfg)
    ckpt, metrics = (out / "checkpoint.pt", out / "metrics.h5") if retrain else (None, None)
    steps, E = (P.iterations if retrain else 1), P.retrain_epochs
    dataset = common.dataset_from_config(cfg, device)
    source = common.load_model(checkpoint, cfg, device, "prune.checkpoint", dataset.num_classes)
    ratios = resolve_ratios(source, plan_ratios(cfg, source))
    widths0 = {g.name: g.width for g in prune_groups(source)}
    images = common.activation_images(cfg, dataset) if is_activation_criterion(P.criterion) else None
    rows: dict[str, dict[str, Any]] = {"original": _row(source, dataset, cfg, speedup=1.0)}
    with TrainingRun(cfg, SCOPE, ckpt, kind="prune-retrain", epochs=steps * E, metrics=metrics, lock=out / "checkpoint.pt",
                     overwrite=overwrite, fields=("step", "width_fraction"), desc="prune+retrain" if retrain else None,
                     lr_key="prune.retrain_lr") as run:
        if overwrite:
            remove_outputs(out / "pruned.pt", out / "retrained.pt", out / "summary.json")
        state = run.state
        step, history = (int(state["extra"]["step"]), list(state["extra"]["history"])) if state else (0, [])
        model = rebuild_model(state).to(device) if state else source

        def retrain_step() -> None:
            frac = sum(g.width for g in prune_groups(model) if g.name in ratios) / max(1, sum(widths0[g] for g in ratios))
            run.fit(model, *step_rule(cfg, model, "retrain"), dataset, epochs=E, extra=lambda: {"step": step, "history": history},
                    label=lambda e: {"epoch": (step - 1) * E + e + 1, "step": step, "width_fraction": frac})

        if state is not None:
            retrain_step()  # finish the step the checkpoint stopped in (nothing when it had finished)
        while step < steps:  # each step prunes the current weights down to that step's widths
            step += 1
            counts = {g: num_keep(widths0[g], r * step / steps, P.round_to) for g, r in ratios.items()}
            keep = select_filters(model, counts, criterion=P.criterion, strategy=P.strategy, images=images, seed=P.seed)
            model = prune_model(model, keep)
            after = accuracy(model, dataset.x_test, dataset.y_test, loss=cfg.train.loss)[0]
            history.append({"step": step, "widths": {g: int(c) for g, c in counts.items()}, "test_acc_after_pruning": after,
                            "keep": {g: v.tolist() for g, v in keep.items()}})  # indices into the previous step's model
            if step == steps:
                fields = {"keep": compose_keep([h.get("keep") for h in history]), "source": str(checkpoint), "ratios": ratios}
                save_checkpoint(out / "pruned.pt", model_payload("pruned", model, yaml, **fields, step=step, history=history))
            if retrain:
                retrain_step()

    pruned = rebuild_model(load_checkpoint(out / "pruned.pt"), out / "pruned.pt").to(device)
    x, n = dataset.x_test, P.speed_batch_size  # the speed batch: test inputs, repeated when there are fewer
    x_speed = x.repeat(-(-n // x.shape[0]), *([1] * (x.dim() - 1)))[:n].contiguous()
    costs = compare_costs(source, pruned, dataset.input_shape)
    extra = {"speedup": measured_speedup(source, pruned, x_speed, repeats=P.speed_repeats),
             **{k: costs[k] for k in ("flops_reduction_pct", "params_reduction_pct")}}
    rows["pruned"] = _row(pruned, dataset, cfg, **extra)
    if retrain:
        save_checkpoint(out / "retrained.pt", model_payload("retrained", model, yaml, source=str(checkpoint), history=history))
        rows["retrained"] = _row(model, dataset, cfg, epochs=steps * E, iterations=steps, **extra)
    rows["_meta"] = {"batch_size": int(x_speed.shape[0]), "threads": torch.get_num_threads(), "device": str(device),
                     "widths_after": {k: v for k, v in getattr(pruned, "arch", {}).items() if k != "num_classes"}}
    update_summary(out / "summary.json", rows)
    return PruneOutputs(out, out / "pruned.pt", ckpt, metrics, out / "summary.json", rows)


def run_scratch(cfg: Config, *, overwrite: bool = False) -> PruneOutputs:
    """Train the pruned architecture from random weights with the ``train`` section (resumable)."""
    P = cfg.prune
    checkpoint, out = _paths(cfg)
    source = (common.load_model(checkpoint, cfg, torch.device("cpu"), "prune.checkpoint") if checkpoint.is_file()
              else create_model(cfg.model.name, **cfg.model.kwargs))
    arch = pruned_arch(source, keep_counts(source, plan_ratios(cfg, source), multiple=P.round_to))
    arch.pop("num_classes", None)
    result = run_train(dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, kwargs=arch), run=dataclasses.replace(cfg.run, out=str(out / "scratch")),
    ), overwrite=overwrite)
    device = common.setup_runtime(cfg.run, local_rank())
    model = rebuild_model(load_checkpoint(result.checkpoint), result.checkpoint).to(device)
    rows = {"scratch": _row(model, common.dataset_from_config(cfg, device), cfg, epochs=cfg.train.epochs)}
    update_summary(out / "summary.json", rows)
    return PruneOutputs(out, None, result.checkpoint, result.metrics, out / "summary.json", rows)


def describe(outputs: PruneOutputs, cfg: Config) -> str:
    """The before/after table of the whole summary (all stages run so far) and where the outputs went."""
    paths = {k: getattr(outputs, k) for k in ("pruned", "checkpoint", "metrics", "summary")}
    return outputs_text([format_summary(read_summary(outputs.summary))], **paths)
