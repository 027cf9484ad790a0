"""`effrep train`, and the one resumable training that plain, pruned-retrain and quantized training go through.

A :class:`TrainingRun` (store/checkpoint.py's files plus train/fit.py's loop) refuses a checkpoint of another run
before writing anything (naming every differing result key), restores model, optimizer, schedule and RNG states,
and after every epoch writes the metrics row, the ``train.keep_every`` snapshot and the training state (atomic). A
killed command re-run continues from its last finished epoch and, on CPU with a fixed seed, ends with exactly the
weights of an uninterrupted run. Under torchrun or srun, torch.distributed processes share the batches; rank 0 writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from effrep_hpc.config import Config, Scope
from effrep_hpc.data.base import child_seed
from effrep_hpc.models import create_model
from effrep_hpc.quant.algorithms import QuantizedOptimizer
from effrep_hpc.runners.common import dataset_from_config, env_world, init_process_group, progress, setup_runtime
from effrep_hpc.store.checkpoint import TrainingFiles
from effrep_hpc.train.fit import ROW_FIELDS, Probe, Row, augmenter, check_finite, fit_epochs
from effrep_hpc.train.optim import build_optimizer, build_scheduler

SCOPE = Scope("train", ("data", "model", "train"))


@dataclass
class TrainOutputs:
    """Where a training run wrote its results, its final row, and what the printed result starts with."""

    checkpoint: Path
    metrics: Path
    final: Row
    weights_dir: Optional[Path] = None
    label: str = ""  # e.g. "bc 1 bit, "


def describe(outputs: TrainOutputs, cfg: Config) -> str:
    """The final metrics and where every output went (rank 0 only)."""
    f = outputs.final
    lines = [f"{outputs.label}epoch {int(f['epoch'])}: train loss {f['train_loss']:.4f} acc {f['train_acc']:.2f}%  "
             f"test loss {f['test_loss']:.4f} acc {f['test_acc']:.2f}%"] if f else []
    paths = {"metrics": outputs.metrics, "weights": outputs.weights_dir, "checkpoint": outputs.checkpoint}
    return outputs_text(lines, **paths) if env_world()[0] == 0 else ""


def outputs_text(lines: list[str], **paths: Optional[Path]) -> str:
    """``lines`` plus one ``label: path`` line per output that exists (how runners say where results went)."""
    return "\n".join([*lines, *(f"{label}: {p}" for label, p in paths.items() if p is not None and p.exists())])


def seeded_model(cfg: Config, dataset: Any) -> nn.Module:
    """The configured model, initialised from ``train.seed`` (initialisation is part of the seeded run)."""
    torch.manual_seed(cfg.train.seed)
    return create_model(cfg.model.name, num_classes=dataset.num_classes, **cfg.model.kwargs).to(dataset.device)


def step_rule(cfg: Config, model: nn.Module, rule: str = "train", epochs: Optional[int] = None) -> tuple[Any, Any]:
    """Optimizer and lr schedule: ``train`` (train.*), ``retrain`` (prune.retrain_*) or ``quant`` (quant.algorithm)."""
    t, P, q, retrain = cfg.train, cfg.prune, cfg.quant, rule == "retrain"
    lr, schedule, milestones = (
        (P.retrain_lr, P.retrain_schedule, P.retrain_milestones) if retrain else (t.lr, t.schedule, t.milestones))
    common: dict[str, Any] = dict(lr=lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
    if rule == "quant":
        grid = {k: getattr(q, k) for k in ("bits", "grid", "delta_rule", "delta", "delta_scale", "quantize_first_last", "clip")}
        seed = child_seed(t.seed, "quant-rounding") & (2**63 - 1)
        optimizer: Any = QuantizedOptimizer(model, q.algorithm, seed=seed, **grid, **common)
    else:
        optimizer = build_optimizer(model.parameters(), t.optimizer, **common)
    n = epochs or (P.retrain_epochs if retrain else t.epochs)
    return optimizer, build_scheduler(optimizer, schedule, epochs=n, milestones=milestones, gamma=t.gamma)


def _ddp(model: nn.Module, device: torch.device) -> tuple[nn.Module, int, int, Callable[[torch.Tensor], torch.Tensor]]:
    rank, world, _ = env_world()
    # SyncBatchNorm (global-batch statistics) exists only on GPUs; on CPU each process normalises its shard (plain DDP)
    net = nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" else model
    net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    def reduce(sums: torch.Tensor) -> torch.Tensor:
        sums = sums.to(device)  # NCCL reduces device tensors only
        torch.distributed.all_reduce(sums)
        return sums.cpu()

    return net, rank, world, reduce


class TrainingRun(TrainingFiles):
    """One resumable training run: its files (store/checkpoint.py), data-order generator, progress bar and loop."""

    def __init__(self, cfg: Config, scope: Scope, checkpoint: Optional[Path], *, epochs: int, fields: tuple[str, ...] = (),
                 desc: Optional[str] = None, lr_key: str = "train.lr", **files: Any) -> None:
        """``files`` go to TrainingFiles; ``desc`` names the bar (None: no bar); ``lr_key``: what a divergence says to lower."""
        super().__init__(checkpoint, config=cfg, scope=scope, epochs=epochs, fields=[*ROW_FIELDS, *fields],
                         keep_every=cfg.train.keep_every, **files)
        self.cfg, self.resumed_from = cfg, 0
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.desc, self.total, self.lr_key = desc, epochs, lr_key
        self.bar: Any = None  # created when training starts, so its rate and ETA leave data loading out

    def close(self) -> None:
        """Close the bar and the files."""
        if self.bar is not None:
            self.bar.close()
        super().close()

    def fit(
        self, model: nn.Module, optimizer: Any, scheduler: Any, dataset: Any, *, epochs: int, ddp: bool = False,
        probe: Optional[Probe] = None, label: Optional[Callable[[int], Row]] = None,
        extra: Optional[Callable[[], dict[str, Any]]] = None, tag: str = "",
    ) -> Row:
        """Train ``model`` up to ``epochs``, first restoring the checkpoint's state if not yet done; return the last row.

        ``label(epoch)`` adds or replaces row values (a global epoch number, the prune step), ``extra()``
        is the checkpoint's ``extra`` dict, ``tag`` starts the divergence message (e.g. ``bc, 1 bit``).
        """
        t, device = self.cfg.train, dataset.x_train.device
        start = self.resumed_from = self.restore(model, optimizer, scheduler, self.generator)
        if self.bar is None:
            enabled = bool(self.desc) and bool(self.writer) and self.cfg.run.progress
            self.bar = progress(self.total, self.desc or "", enabled=enabled, unit="epoch", initial=len(self.curves))
        net, rank, world, reduce = _ddp(model, device) if ddp else (model, 0, 1, None)
        if start == 0:
            self.snapshot(model, 0)

        def on_epoch(epoch: int, row: Row) -> None:
            row.update(label(epoch) if label is not None else {})
            self.add_row(row)
            check_finite(row, self.curves, resumed_from=start, batch_size=t.batch_size, tag=tag, lr_key=self.lr_key)
            self.snapshot(model, epoch + 1, last=epoch + 1 == epochs)
            self.save(model, optimizer, scheduler, self.generator, epoch=epoch + 1, extra=extra() if extra is not None else None)
            self.bar.set_postfix(loss=f"{row['train_loss']:.3f}", test_acc=f"{row['test_acc']:.1f}", refresh=False)
            self.bar.update(1)

        final = fit_epochs(
            net, optimizer, scheduler, dataset, start_epoch=start, epochs=epochs, batch_size=t.batch_size,
            generator=self.generator, loss=t.loss, augment=augmenter(self.cfg.data.augment, self.generator, device, t.seed),
            rank=rank, world=world, reduce=reduce, probe=probe, on_epoch=on_epoch,
        )
        return final or (self.curves[-1] if self.curves else {})


def run_train(cfg: Config, *, overwrite: bool = False) -> TrainOutputs:
    """Train (or resume training) the model of ``cfg``; return the output paths and final metrics."""
    rank, _, local = env_world()
    device = setup_runtime(cfg.run, local)
    group = init_process_group(device)
    ckpt, metrics, weights = (Path(cfg.run.out) / name for name in ("checkpoint.pt", "metrics.h5", "weights"))
    dataset = dataset_from_config(cfg, device)  # first: a data set that cannot be loaded leaves no file behind
    with TrainingRun(cfg, SCOPE, ckpt, kind="train", epochs=cfg.train.epochs, metrics=metrics, weights=weights,
                     overwrite=overwrite, writer=rank == 0, desc=f"train {cfg.model.name}") as run:
        model = seeded_model(cfg, dataset)
        final = run.fit(model, *step_rule(cfg, model), dataset, epochs=cfg.train.epochs, ddp=group is not None)
    if group is not None:
        group.barrier()
        group.close()
    return TrainOutputs(checkpoint=ckpt, metrics=metrics, final=final, weights_dir=weights)
