"""`effrep prune sensitivity`: every (layer, ratio, criterion) cell is one work item of the shared driver.

Each worker prunes a copy of the trained model at one layer (physically: the copy is a smaller model),
evaluates it (optionally after a short, per-cell seeded retraining) and sends ``(acc, loss)`` to the
writer, which records it in the sensitivity file. Re-running, with any number of ranks, computes only
the missing cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from effrep_hpc.config import Config, Scope, to_yaml
from effrep_hpc.data.base import seeded_subset
from effrep_hpc.dist.env import local_rank
from effrep_hpc.landscape.directions import weights_hash
from effrep_hpc.prune.criteria import criterion_name, is_activation_criterion
from effrep_hpc.prune.groups import paper_layer_ids, prune_groups, resolve_layer
from effrep_hpc.prune.select import group_scores
from effrep_hpc.prune.sensitivity import cell_seed, layer_facts, prune_one
from effrep_hpc.runners import common
from effrep_hpc.runners.driver import Job, backend_for, open_output, run_job, setup_guard
from effrep_hpc.runners.prune import retrain
from effrep_hpc.store.sensitivity import SensitivitySpec, SensitivityWriter
from effrep_hpc.train.fit import accuracy


@dataclass
class SensitivityContext:
    """What every rank needs to evaluate a cell: the model, the data and the scan's axes."""

    model: nn.Module
    spec: SensitivitySpec
    x_eval: Tensor
    y_eval: Tensor
    dataset: Any
    cfg: Config
    images: Optional[Tensor]
    scores: dict[tuple[str, str], Tensor] = field(default_factory=dict)  # per-rank cache (group, criterion)


def evaluate_cell(ctx: SensitivityContext, layer: int, ratio: int, crit: int) -> tuple[float, float]:
    """Accuracy (percent) and loss of the model with one layer pruned at one ratio by one criterion."""
    P, spec = ctx.cfg.prune, ctx.spec
    key = (spec.layers[layer], spec.criteria[crit])
    if key not in ctx.scores:
        ctx.scores[key] = group_scores(ctx.model, key[0], key[1], images=ctx.images, seed=P.seed)
    model = prune_one(ctx.model, key[0], ctx.scores[key], int(spec.kept[layer, ratio]), spec.widths[layer])
    if P.sensitivity_retrain_epochs > 0:
        flat = (layer * len(spec.ratios) + ratio) * len(spec.criteria) + crit
        generator = torch.Generator().manual_seed(cell_seed(ctx.cfg.train.seed, flat))
        retrain(model, ctx.cfg, ctx.dataset, epochs=P.sensitivity_retrain_epochs, generator=generator)
    return accuracy(model, ctx.x_eval, ctx.y_eval, batch_size=P.eval_batch_size, loss=ctx.cfg.train.loss)


def _eval_split(cfg: Config, dataset: Any) -> tuple[Tensor, Tensor]:
    P = cfg.prune
    x, y = (dataset.x_test, dataset.y_test) if P.eval_split == "test" else (dataset.x_train, dataset.y_train)
    size = None if P.eval_size is None else min(P.eval_size, len(y))  # more than there are: all of them
    return seeded_subset(x, y, size, seed=cfg.data.seed, stream=f"prune-eval-{P.eval_split}", what="prune.eval_size")


def sensitivity_spec(
    cfg: Config, model: nn.Module, baseline: tuple[float, float], input_shape: tuple[int, ...]
) -> SensitivitySpec:
    """The scan's axes and per-layer facts for ``model`` (criteria in canonical spelling)."""
    P = cfg.prune
    groups = prune_groups(model)
    picked = [resolve_layer(model, groups, k) for k in P.layers or []]  # a layer named twice is scanned once
    chosen = groups if P.layers is None else list({g.name: g for g in picked}.values())
    criteria = [criterion_name(c) for c in P.sensitivity_criteria]
    if len(set(criteria)) != len(criteria):
        raise ValueError(f"prune.sensitivity_criteria names a criterion twice: {P.sensitivity_criteria}")
    ratios = [float(r) for r in P.sensitivity_ratios]
    ids = paper_layer_ids(model)
    facts = layer_facts(model, chosen, ratios, input_shape)
    retrains = P.sensitivity_retrain_epochs > 0
    return SensitivitySpec(
        layers=[g.name for g in chosen], ratios=np.asarray(ratios), criteria=criteria,
        layer_ids=[ids.get(g.scorer, min(g.layer_ids) if g.layer_ids else 0) for g in chosen],
        widths=[g.width for g in chosen], kept=facts.kept, flops_fraction=facts.flops_fraction, filter_l1=facts.filter_l1,
        model_hash=weights_hash(model), arch_name=model.arch_name, arch=model.arch,  # type: ignore[arg-type]
        eval={
            "data": cfg.data.name, "data_seed": cfg.data.seed, "split": P.eval_split, "size": P.eval_size,
            "loss": cfg.train.loss, "seed": P.seed,
            "activation_images": P.activation_images if any(is_activation_criterion(c) for c in criteria) else None,
            "retrain_epochs": P.sensitivity_retrain_epochs,
            "retrain": {"lr": P.retrain_lr, "schedule": P.retrain_schedule, "optimizer": cfg.train.optimizer,
                        "batch_size": cfg.train.batch_size, "weight_decay": cfg.train.weight_decay,
                        "seed": cfg.train.seed} if retrains else None,
        },
        baseline_acc=baseline[0], baseline_loss=baseline[1], config_yaml=to_yaml(cfg),
    )


def run_sensitivity(cfg: Config, *, overwrite: bool = False) -> Optional[Path]:
    """Compute (or finish) the sensitivity file of ``cfg``; return its path on the writer, None elsewhere."""
    P = cfg.prune
    backend = backend_for(cfg)
    with setup_guard(backend):  # every rank's setup has worked before any rank waits for another
        device = common.setup_runtime(cfg.run, local_rank())
        checkpoint = common.resolve_path(P.checkpoint, cfg.run.out, "checkpoint.pt")
        dataset = common.dataset_from_config(cfg, device)
        model = common.load_model(checkpoint, cfg, device, "prune.checkpoint", dataset.num_classes)
        x_eval, y_eval = _eval_split(cfg, dataset)
        baseline = accuracy(model, x_eval, y_eval, batch_size=P.eval_batch_size, loss=cfg.train.loss)
        spec = sensitivity_spec(cfg, model, baseline, tuple(dataset.input_shape))
        images = common.activation_images(cfg, dataset) if any(map(is_activation_criterion, spec.criteria)) else None
        ctx = SensitivityContext(model, spec, x_eval, y_eval, dataset, cfg, images)
    # A cell is decided by the data, the scan's prune keys, the loss, and the train section when cells retrain.
    scope = Scope("sensitivity", ("data", "prune", "train" if P.sensitivity_retrain_epochs > 0 else "train.loss"))
    output = open_output(
        backend, common.resolve_path(P.sensitivity, cfg.run.out, "sensitivity.h5"),
        lambda path, attrs: SensitivityWriter(path, spec, overwrite=overwrite, extra_attrs=attrs, scope=scope),
    )
    pending = set(int(k) for k in output.pending)
    job = Job(
        "sensitivity", "cell", range(spec.num_cells),
        compute=lambda flat: evaluate_cell(ctx, *spec.cell(flat)),
        write=lambda flat, result: output.writer.write(flat, *result),  # type: ignore[union-attr]
        todo=lambda flat: flat if flat in pending else None,
        tail=lambda: f"; unpruned accuracy {baseline[0]:.2f}%",
    )
    return run_job(backend, job, output, show_progress=cfg.run.progress)
