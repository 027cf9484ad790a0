"""Wall-clock timing of forward passes, fair between an original and a pruned model.

Repetitions are interleaved (each round runs every model once, in a rotating order), so slow drift of
a shared machine (other jobs, frequency scaling) hits all models alike; the median of the rounds is
reported. Run after warm-up rounds, which let oneDNN pick kernels and fill caches.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import torch
from torch import Tensor, nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_forward(models: Sequence[nn.Module], x: Tensor, *, warmup: int = 3, repeats: int = 20) -> list[list[float]]:
    """Seconds per forward pass of each model on ``x``: one list of ``repeats`` timings per model."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1 (got {warmup}, {repeats})")
    for m in models:
        m.eval()
    times: list[list[float]] = [[] for _ in models]
    n = len(models)
    for r in range(warmup + repeats):
        for k in range(n):
            i = (r + k) % n  # rotate who goes first, so no model always runs on a cold cache
            _sync(x.device)
            began = time.perf_counter()
            models[i](x)
            _sync(x.device)
            if r >= warmup:
                times[i].append(time.perf_counter() - began)
    return times


def median_times(models: Sequence[nn.Module], x: Tensor, *, warmup: int = 3, repeats: int = 20) -> list[float]:
    """Median seconds per forward pass of each model on ``x`` (interleaved repetitions)."""
    return [statistics.median(t) for t in time_forward(models, x, warmup=warmup, repeats=repeats)]


def measured_speedup(original: nn.Module, pruned: nn.Module, x: Tensor, *, warmup: int = 3, repeats: int = 20) -> float:
    """Median time of ``original`` over median time of ``pruned`` on the same input."""
    t0, t1 = median_times([original, pruned], x, warmup=warmup, repeats=repeats)
    return t0 / t1
