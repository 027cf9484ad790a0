"""Sensitivity analysis math (Li et al., Figure 2): per-layer facts of a scan and one pruned cell.

Pure functions on a model: which filters each ratio keeps, the FLOPs left when only that layer is
pruned, each layer's sorted filter L1 norms (Figure 2(a)), and the model with one layer cut.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence, cast

import numpy as np
from torch import Tensor, nn

from effrep_hpc.models.layers import ConvBN
from effrep_hpc.prune.cost import group_flops
from effrep_hpc.prune.criteria import keep_top
from effrep_hpc.prune.groups import PruneGroup
from effrep_hpc.prune.surgery import num_keep, prune_model


@dataclass
class LayerFacts:
    """Per layer of a sensitivity scan: filters kept per ratio, FLOPs left per ratio, sorted filter L1 norms."""

    kept: np.ndarray  # (layers, ratios) int64
    flops_fraction: np.ndarray  # (layers, ratios): model FLOPs left with only that layer pruned, over the original
    filter_l1: np.ndarray  # (layers, max width): L1 norms sorted descending over the largest, NaN-padded


def layer_facts(
    model: nn.Module, groups: Sequence[PruneGroup], ratios: Sequence[float], input_shape: Sequence[int]
) -> LayerFacts:
    """The facts of ``groups`` at ``ratios`` (FLOPs are linear in each group's width, so one count suffices)."""
    total, per_group = group_flops(model, input_shape)
    kept = np.array([[num_keep(g.width, r) for r in ratios] for g in groups], dtype=np.int64)
    flops = np.array([[(total - (1 - k / g.width) * per_group[g.name]) / total for k in kept[i]] for i, g in enumerate(groups)])
    l1 = np.full((len(groups), max(g.width for g in groups)), np.nan)
    for i, g in enumerate(groups):
        norms = cast(ConvBN, model.get_submodule(g.scorer)).conv.weight.detach().abs().reshape(g.width, -1).sum(1).double().cpu()
        norms = norms.sort(descending=True).values
        l1[i, : g.width] = (norms / norms.max()).numpy() if float(norms.max()) > 0 else norms.numpy()
    return LayerFacts(kept, flops, l1)


def prune_one(model: nn.Module, group: str, scores: Tensor, keep: int, width: int) -> nn.Module:
    """A copy of ``model`` with only ``group`` cut to its ``keep`` best-scored filters (a plain copy when all stay)."""
    if keep >= width:
        return copy.deepcopy(model)
    return prune_model(model, {group: keep_top(scores, keep)})


def cell_seed(train_seed: int, flat: int) -> int:
    """The retraining seed of cell ``flat``: fixed per cell, so a value does not depend on which rank computes it."""
    return train_seed * 1_000_003 + flat
