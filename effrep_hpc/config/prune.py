"""`prune:` filter pruning: criterion, preset or ratios, sensitivity scans and retraining."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from effrep_hpc.config.base import result


@dataclass
class PruneConfig:
    """Filter pruning: criterion, strategy, preset or per-layer ratios, sensitivity and retraining."""

    # l1, l2, random, largest, mean_mean, mean_std, mean_l1, mean_l2, var_l2
    criterion: str = result("l1", only=("prune-retrain",))
    strategy: Literal["independent", "greedy"] = result("independent", only=("prune-retrain",))
    # vgg16-a, resnet56-a/b, resnet110-a/b, resnet34-a/b (paper ratios)
    preset: Optional[str] = result(None, only=("prune-retrain",))
    ratios: dict[str, Any] = result(factory=dict, only=("prune-retrain",))  # layer name or paper id -> fraction removed
    checkpoint: Optional[str] = None  # the trained model; default: <run.out>/checkpoint.pt
    out: Optional[str] = None  # apply/retrain/scratch outputs; default: <run.out>/pruned
    # > 1: round each pruned layer's kept filters down to a multiple (8 suits CPU/GPU kernels), so at least
    # the requested fraction goes (never below one multiple); the widths are printed with the results
    round_to: int = result(1, only=("prune-retrain",))
    seed: int = result(0)  # random criterion and the sample of images for activation criteria
    activation_images: int = result(256)  # N training images for the activation criteria
    # prune-and-retrain (the paper: constant lr 1e-3, 40 epochs on CIFAR-10); optimizer, momentum,
    # weight decay and batch size come from the train section, which `prune scratch` uses whole
    iterations: int = result(1, only=("prune-retrain",))  # > 1: prune in that many equal steps, retraining after each
    retrain_epochs: int = result(40, only=("prune-retrain",))  # per step
    retrain_lr: float = result(0.001, only=("prune-retrain", "sensitivity"))
    retrain_schedule: Literal["constant", "multistep", "cosine"] = result("constant", only=("prune-retrain", "sensitivity"))
    retrain_milestones: list[int] = result(factory=list, only=("prune-retrain",))
    # sensitivity scan: every layer x ratio x criterion, one layer pruned at a time
    sensitivity: Optional[str] = None  # the HDF5 file; default: <run.out>/sensitivity.h5
    layers: Optional[list[str]] = result(None, only=("sensitivity",))  # default: every prunable layer
    sensitivity_ratios: list[float] = result(factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], only=("sensitivity",))
    sensitivity_criteria: list[str] = result(factory=lambda: ["l1"], only=("sensitivity",))
    # > 0: retrain each pruned model this long before evaluating
    sensitivity_retrain_epochs: int = result(0, only=("sensitivity",))
    eval_split: Literal["test", "train"] = result("test", only=("sensitivity",))
    eval_size: Optional[int] = result(None, only=("sensitivity",))  # evaluate on a seeded subset of this many samples
    eval_batch_size: int = 1024
    # measured speed-up printed with the results (CPU timings use run.threads)
    speed_batch_size: int = 32
    speed_repeats: int = 20

    def _check(self) -> list[str]:
        from effrep_hpc.prune.names import criterion_name
        from effrep_hpc.prune.presets import get_preset

        problems = []
        for key, names in (("criterion", [self.criterion]), ("sensitivity_criteria", self.sensitivity_criteria)):
            for name in names:
                try:
                    criterion_name(name)
                except ValueError as exc:
                    problems.append(f"prune.{key}: {exc}")
        if not self.sensitivity_criteria:
            problems.append("prune.sensitivity_criteria: give at least one criterion, e.g. [l1, random, largest]")
        if self.preset is not None:
            try:
                get_preset(self.preset)
            except ValueError as exc:
                problems.append(f"prune.preset: {exc}")
        for layer, ratio in self.ratios.items():
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
                problems.append(
                    f"prune.ratios[{layer}]: must be a number in [0, 1), the fraction of filters removed (got {ratio!r})"
                )
        if not self.sensitivity_ratios:
            problems.append("prune.sensitivity_ratios: give at least one ratio, e.g. [0.1, 0.5, 0.9]")
        for i, ratio in enumerate(self.sensitivity_ratios):
            if not 0 <= ratio < 1:
                problems.append(f"prune.sensitivity_ratios[{i}]: must lie in [0, 1) (got {ratio})")
        if len(set(self.sensitivity_ratios)) != len(self.sensitivity_ratios):
            problems.append(f"prune.sensitivity_ratios: values repeat ({self.sensitivity_ratios})")
        positive = ("round_to", "activation_images", "iterations", "retrain_epochs", "eval_batch_size",
                    "speed_batch_size", "speed_repeats")
        for key in positive:
            if getattr(self, key) < 1:
                problems.append(f"prune.{key}: must be >= 1 (got {getattr(self, key)})")
        if self.sensitivity_retrain_epochs < 0:
            problems.append(f"prune.sensitivity_retrain_epochs: must be >= 0 (got {self.sensitivity_retrain_epochs})")
        if self.retrain_lr <= 0:
            problems.append(f"prune.retrain_lr: must be > 0 (got {self.retrain_lr})")
        if self.eval_size is not None and self.eval_size < 1:
            problems.append(f"prune.eval_size: must be >= 1 (got {self.eval_size})")
        if sorted(self.retrain_milestones) != list(self.retrain_milestones) or any(m < 1 for m in self.retrain_milestones):
            problems.append(f"prune.retrain_milestones: must be increasing epochs >= 1 (got {self.retrain_milestones})")
        if self.layers is not None and not self.layers:
            problems.append("prune.layers: give at least one layer, or null for all")
        return problems


