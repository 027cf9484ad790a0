"""`train:` optimizer, schedule and length of training (plain, pruned retrain, quantized: one loop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from effrep_hpc.config.base import result


@dataclass
class TrainConfig:
    """Optimizer, schedule and length of training."""

    optimizer: Literal["sgd", "adam"] = result("sgd")
    lr: float = result(0.1)
    momentum: float = result(0.9)
    nesterov: bool = result(False)
    weight_decay: float = result(5e-4)
    schedule: Literal["constant", "multistep", "cosine"] = result("multistep")
    milestones: list[int] = result(factory=lambda: [5, 8], skip=("prune-retrain",))
    gamma: float = result(0.1)
    epochs: int = result(10, skip=("prune-retrain",))
    batch_size: int = result(128)
    seed: int = result(0)
    loss: Literal["ce", "mse"] = result("ce")
    keep_every: int = 1  # keep the weights of every k-th epoch for trajectories (0: keep none)

    def _check(self) -> list[str]:
        problems = []
        if self.lr <= 0:
            problems.append(f"train.lr: must be > 0 (got {self.lr})")
        if self.epochs < 1:
            problems.append(f"train.epochs: must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"train.batch_size: must be >= 1 (got {self.batch_size})")
        if not 0 <= self.momentum < 1:
            problems.append(f"train.momentum: must be in [0, 1) (got {self.momentum})")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            problems.append("train.nesterov: needs train.optimizer=sgd and train.momentum > 0")
        if self.weight_decay < 0:
            problems.append(f"train.weight_decay: must be >= 0 (got {self.weight_decay})")
        if self.keep_every < 0:
            problems.append(f"train.keep_every: must be >= 0 (got {self.keep_every})")
        if sorted(self.milestones) != list(self.milestones) or any(m < 1 for m in self.milestones):
            problems.append(f"train.milestones: must be increasing epochs >= 1 (got {self.milestones})")
        return problems


