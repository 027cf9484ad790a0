"""The one training loop: epochs of :func:`train_epoch` + :func:`evaluate` as metric rows, for every kind of training.

Plain training, pruned retraining and quantized training differ only in what is passed in: the
optimizer is the step rule (a ``QuantizedOptimizer`` is a torch optimizer, so quantized training
plugs in here unchanged), ``probe`` measures extra numbers around an epoch (the fraction of quantized
weights that changed), ``reduce`` sums the metric counts over processes under DDP (identity when
alone), and ``on_epoch`` receives each finished row: that is where the caller checkpoints, so what an
epoch leaves behind is not this module's business. No files, no printing, no config objects.

A row: ``epoch`` (1-based), ``train_loss``/``train_acc`` (mean over the epoch's batches as trained,
accuracy in percent), ``test_loss``/``test_acc`` (after the epoch, eval mode), ``lr`` (the epoch's
learning rate, before the schedule steps), the probe's numbers, and ``seconds`` (wall time).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional, Protocol

import torch
from torch import Tensor, nn

from effrep_hpc.data import augment as augment_batch
from effrep_hpc.errors import UserError
from effrep_hpc.train.loop import evaluate, train_epoch

ROW_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
Row = dict[str, float]
# Called before an epoch; the function it returns is called after it and gives extra row values.
Probe = Callable[[], Callable[[], Row]]


class DivergedError(UserError):
    """Training produced a non-finite loss; carries the curves up to that epoch and the epoch training resumed from.

    Exit code 3: the input was valid but the run failed, and the user must act (lower the learning rate).
    A sweep catches it and records the run as failed instead.
    """

    exit_code = 3

    def __init__(self, message: str, curves: list[Row], resumed_from: int) -> None:
        super().__init__(message)
        self.curves, self.resumed_from = curves, resumed_from


def check_finite(
    row: Row, curves: list[Row], *, resumed_from: int, batch_size: int, tag: str = "", lr_key: str = "train.lr"
) -> None:
    """Raise :class:`DivergedError` when the row's training loss is not finite; the message names ``lr_key`` to lower."""
    if not math.isfinite(row["train_loss"]):
        raise DivergedError(
            f"diverged: training loss {row['train_loss']} in epoch {int(row['epoch'])} ({tag + ', ' if tag else ''}lr "
            f"{row['lr']:g}, batch {batch_size}); lower {lr_key}", list(curves), resumed_from,
        )


class TrainData(Protocol):
    """In-memory tensors of a train/test split on one device (a :class:`effrep_hpc.data.base.Dataset`)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def augmenter(enabled: bool, generator: torch.Generator, device: torch.device, seed: int) -> Optional[Callable[[Tensor], Tensor]]:
    """Random crop + flip per batch (None when disabled), drawn from ``generator`` on the CPU.

    On a GPU the draws come from a device generator seeded with ``seed + 1``, since a CPU generator
    cannot drive device-side sampling; that stream is not checkpointed, so GPU resumes are not bitwise.
    """
    if not enabled:
        return None
    gen = generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed + 1)
    return lambda xb: augment_batch(xb, generator=gen)


def change_probe(optimizer: Any) -> Probe:
    """A probe adding ``changed``, the fraction of weights an epoch changed (needs ``snapshot``/``changed_fraction``)."""

    def before() -> Callable[[], Row]:
        start = optimizer.snapshot()
        return lambda: {"changed": optimizer.changed_fraction(start)}

    return before


def accuracy(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1024, loss: str = "ce") -> tuple[float, float]:
    """(accuracy in percent, mean loss) of ``model`` on ``x``, ``y`` in eval mode."""
    loss_sum, correct, n = evaluate(model, x, y, batch_size=batch_size, loss=loss)
    return 100.0 * correct / n, loss_sum / n


def fit_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data: TrainData,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    start_epoch: int = 0,
    loss: str = "ce",
    augment: Optional[Callable[[Tensor], Tensor]] = None,
    rank: int = 0,
    world: int = 1,
    reduce: Optional[Callable[[Tensor], Tensor]] = None,
    probe: Optional[Probe] = None,
    on_epoch: Optional[Callable[[int, Row], None]] = None,
) -> Optional[Row]:
    """Train epochs ``start_epoch .. epochs-1``, calling ``on_epoch(epoch, row)`` after each; return the last row.

    The schedule steps once per epoch. Under DDP ``model`` is the wrapped module, each process trains
    and evaluates its ``rank::world`` shard, and ``reduce`` sums the float64 count vector across
    processes, so every process gets the same row. None when no epoch was left to train.
    """
    if not 0 <= start_epoch <= epochs:
        raise ValueError(f"start_epoch {start_epoch} is outside 0..{epochs}; was the checkpoint made for more epochs?")
    row: Optional[Row] = None
    for epoch in range(start_epoch, epochs):
        began = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        finish = probe() if probe is not None else None
        tr = train_epoch(
            model, optimizer, data.x_train, data.y_train, batch_size=batch_size, generator=generator,
            loss=loss, augment=augment, rank=rank, world=world,
        )
        scheduler.step()
        te = evaluate(model, data.x_test, data.y_test, loss=loss, rank=rank, world=world)
        sums = torch.tensor([*tr, *te], dtype=torch.float64)
        tl, tc, tn, el, ec, en = (reduce(sums) if reduce is not None else sums).tolist()
        row = {"epoch": epoch + 1, "train_loss": tl / tn, "train_acc": 100.0 * tc / tn,
               "test_loss": el / en, "test_acc": 100.0 * ec / en, "lr": lr}
        if finish is not None:
            row.update(finish())
        row["seconds"] = time.perf_counter() - began
        if on_epoch is not None:
            on_epoch(epoch, row)
    return row
