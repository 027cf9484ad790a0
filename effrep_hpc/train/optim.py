"""Optimizers and learning-rate schedules from explicit arguments."""

from __future__ import annotations

import math
from typing import Iterable

import torch


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    kind: str,
    *,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD (optionally Nesterov momentum) or Adam with L2 weight decay."""
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r} (valid: sgd, adam)")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    *,
    epochs: int,
    milestones: list[int] | tuple[int, ...] = (),
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch schedule: ``constant``, ``multistep`` (x gamma at each milestone) or ``cosine`` (to 0)."""
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    if kind == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    if kind == "cosine":
        # A closed-form lambda (not CosineAnnealingLR's recursive form) so a resumed schedule is exact.
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs)))
    raise ValueError(f"unknown schedule {kind!r} (valid: constant, multistep, cosine)")
