"""Filter importance: one score per output filter of a conv (higher = more important = kept).

Weight criteria score a filter from its kernel weights alone:

- ``l1`` (Li et al.'s default): the sum of absolute kernel weights, ``sum |F_j|``.
- ``l2``: the Euclidean norm of the filter.
- ``random``: a seeded uniform draw, the paper's baseline (the same seed gives nested selections
  across ratios, so a random curve is one random order cut at every ratio).
- ``largest``: minus the L1 norm, so that the *largest* filters go first (the paper's contrast).

Activation criteria score a filter from the feature map it produces, measured before BN and ReLU over
N training images (Li et al., Appendix; the last one is Polyak & Wolf's contribution variance). With
``x`` the (N, H, W) maps of one channel and per-image statistics over the spatial positions:

- ``mean_mean``: mean over images of the spatial mean of ``x_n``;
- ``mean_std``: mean over images of the spatial standard deviation (population) of ``x_n``;
- ``mean_l1``: mean over images of ``||x_n||_1``;
- ``mean_l2``: mean over images of ``||x_n||_2``;
- ``var_l2``: variance (population) over images of ``||x_n||_2``.

Greedy scoring (``in_keep``) leaves out the kernels that read feature maps already removed from the
previous layer, so a filter is judged by what it will still compute.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from effrep_hpc.prune.names import (  # noqa: F401  (re-exported: the torch-free half of this module)
    ACTIVATION_CRITERIA,
    CRITERIA,
    WEIGHT_CRITERIA,
    criterion_name,
    is_activation_criterion,
)


def weight_scores(
    weight: Tensor,
    criterion: str = "l1",
    *,
    in_keep: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Score each filter (dim 0) of a conv/linear weight by ``criterion``; ``in_keep`` restricts dim 1.

    ``random`` draws from ``generator`` (CPU), so a caller that seeds it per layer gets the same
    selection on every rank and in every order.
    """
    name = criterion_name(criterion)
    if name not in WEIGHT_CRITERIA:
        raise ValueError(f"criterion {name!r} scores feature maps; use activation_scores with sample images")
    if weight.dim() < 2:
        raise ValueError(f"expected a weight with filters on dim 0 and inputs on dim 1, got shape {tuple(weight.shape)}")
    w = weight.detach()
    if in_keep is not None:
        w = w.index_select(1, in_keep.to(device=w.device, dtype=torch.long))
    flat = w.reshape(w.shape[0], -1).double()
    if name == "l1":
        scores = flat.abs().sum(dim=1)
    elif name == "l2":
        scores = flat.pow(2).sum(dim=1).sqrt()
    elif name == "largest":
        scores = -flat.abs().sum(dim=1)
    else:
        scores = torch.rand(w.shape[0], generator=generator, dtype=torch.float64)
    return scores.float().cpu()


def feature_map_stats(maps: Tensor) -> dict[str, Tensor]:
    """Per-image, per-channel statistics of feature maps ``(N, C, *spatial)``: ``mean``, ``std``, ``l1``, ``l2``.

    Each is ``(N, C)`` float64 over the spatial positions (std is the population one). Collected batch by
    batch, they are all the activation criteria need, so the maps themselves never have to be kept.
    """
    if maps.dim() < 2 or maps.shape[0] < 1:
        raise ValueError(f"expected feature maps of shape (N, C, ...) with N >= 1, got {tuple(maps.shape)}")
    x = maps.detach().double().reshape(maps.shape[0], maps.shape[1], -1)  # (N, C, positions)
    return {
        "mean": x.mean(dim=2),
        "std": x.std(dim=2, unbiased=False),
        "l1": x.abs().sum(dim=2),
        "l2": x.pow(2).sum(dim=2).sqrt(),
    }


def stats_scores(stats: dict[str, Tensor], criterion: str) -> Tensor:
    """Score each channel from :func:`feature_map_stats` output (images concatenated on dim 0)."""
    name = criterion_name(criterion)
    if name not in ACTIVATION_CRITERIA:
        raise ValueError(f"criterion {name!r} scores weights; use weight_scores")
    if name == "var_l2":
        scores = stats["l2"].var(dim=0, unbiased=False)
    else:
        scores = stats[name.split("_", 1)[1]].mean(dim=0)
    return scores.float().cpu()


def activation_scores(maps: Tensor, criterion: str) -> Tensor:
    """Score each channel of pre-BN feature maps ``(N, C, *spatial)`` by an activation criterion."""
    name = criterion_name(criterion)
    if name not in ACTIVATION_CRITERIA:
        raise ValueError(f"criterion {name!r} scores weights; use weight_scores")
    return stats_scores(feature_map_stats(maps), name)


def keep_top(scores: Tensor, count: int) -> Tensor:
    """Indices (ascending) of the ``count`` highest scores; ties go to the lower index (stable)."""
    n = int(scores.numel())
    if not 1 <= count <= n:
        raise ValueError(f"must keep between 1 and {n} filters, got {count}")
    order = torch.argsort(scores.reshape(-1), descending=True, stable=True)
    return order[:count].sort().values
