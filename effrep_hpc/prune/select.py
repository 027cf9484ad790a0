"""Which filters to keep: score every group's channels and keep the top ones, layer by layer.

Strategies (Li et al., Section 3.3):

- ``independent``: each group is ranked on the model as it is, all layers at once.
- ``greedy``: groups are ranked in forward order, each on what earlier decisions left: for weight
  criteria the kernels that read feature maps already removed are left out of a filter's score; for
  activation criteria the maps are measured on the model with the earlier filters already masked.
"""

from __future__ import annotations

import zlib
from typing import Any, Mapping, Optional, Sequence, cast

import torch
from torch import Tensor, nn

from effrep_hpc.models.layers import ConvBN
from effrep_hpc.prune.criteria import (
    criterion_name,
    feature_map_stats,
    is_activation_criterion,
    keep_top,
    stats_scores,
    weight_scores,
)
from effrep_hpc.prune.groups import PruneGroup, check_zoo_model, group_of_slot, prune_groups, resolve_ratios
from effrep_hpc.prune.surgery import mask_model, num_keep, prune_model

STRATEGIES = ("independent", "greedy")


def layer_seed(seed: int, group: str) -> int:
    """A seed for one group's random scores that depends only on ``seed`` and the group's name.

    So a random selection is the same on every rank, in every order, and across ratios (nested).
    """
    return (int(seed) * 1_000_003 + zlib.crc32(group.encode())) & 0x7FFF_FFFF_FFFF_FFFF


def keep_counts(model: nn.Module, ratios: Mapping[Any, float], *, multiple: int = 1) -> dict[str, int]:
    """Kept filters per group for per-layer removal ratios keyed by layer name or paper id.

    ``multiple`` > 1 rounds each pruned layer's count down to a multiple of that many filters (see ``num_keep``).
    """
    groups = {g.name: g for g in prune_groups(model)}
    return {name: num_keep(groups[name].width, r, multiple) for name, r in resolve_ratios(model, ratios).items()}


def compose_keep(steps: Sequence[Optional[Mapping[str, Any]]]) -> dict[str, Tensor]:
    """Kept indices into the original model after pruning in ``steps`` (iterative pruning).

    Each step's indices refer to the model the previous step left, so step k's map is read through the
    earlier ones: ``original[keep] == final`` for every group pruned in any step.
    """
    out: dict[str, Tensor] = {}
    for n, keep in enumerate(steps, 1):
        if keep is None:
            raise ValueError(f"the kept filter indices of pruning step {n} are missing (a run from an older version?); "
                             "prune again with --overwrite")
        for group, idx in keep.items():
            step_idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1).cpu()
            out[group] = out[group][step_idx] if group in out else step_idx.clone()
    return out


@torch.no_grad()
def collect_stats(
    model: nn.Module, images: Tensor, units: list[str], *, batch_size: int = 256
) -> dict[str, dict[str, Tensor]]:
    """Per-image statistics of the pre-BN conv outputs of ``units`` over ``images`` (eval mode)."""
    if images is None or images.shape[0] < 1:
        raise ValueError("activation criteria need sample images (prune.activation_images >= 1)")
    chunks: dict[str, list[dict[str, Tensor]]] = {u: [] for u in units}
    hooks = []
    for unit in units:
        mod = model.get_submodule(unit)
        if not isinstance(mod, ConvBN):
            raise ValueError(f"{unit!r} is not a conv unit; activation criteria score conv feature maps")

        def hook(_m: nn.Module, _inp: tuple, out: Tensor, unit: str = unit) -> None:
            chunks[unit].append(feature_map_stats(out))

        hooks.append(mod.conv.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        for start in range(0, images.shape[0], batch_size):
            model(images[start : start + batch_size])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {u: {k: torch.cat([c[k] for c in chunks[u]]) for k in chunks[u][0]} for u in units}


def _scorer_in_group(model: nn.Module, groups: list[PruneGroup], g: PruneGroup) -> Optional[PruneGroup]:
    entry = next(e for e in model.layer_io() if e.name == g.scorer)  # type: ignore[operator]
    return group_of_slot(groups, entry.in_slot)


def group_scores(
    model: nn.Module,
    group: str,
    criterion: str = "l1",
    *,
    images: Optional[Tensor] = None,
    seed: int = 0,
    in_keep: Optional[Tensor] = None,
    batch_size: int = 256,
) -> Tensor:
    """Importance of each filter of one group (higher = kept), ranked on the group's scoring layer."""
    m = check_zoo_model(model)
    by_name = {g.name: g for g in prune_groups(m)}
    if group not in by_name:
        raise ValueError(f"{group!r} is not a prune group of {m.arch_name} (groups: {', '.join(by_name)})")
    g = by_name[group]
    name = criterion_name(criterion)
    if is_activation_criterion(name):
        if images is None:
            raise ValueError(f"criterion {name!r} needs sample images to measure feature maps")
        stats = collect_stats(m, images, [g.scorer], batch_size=batch_size)
        return stats_scores(stats[g.scorer], name)
    weight = cast(ConvBN, m.get_submodule(g.scorer)).conv.weight
    gen = torch.Generator().manual_seed(layer_seed(seed, g.name))
    return weight_scores(weight, name, in_keep=in_keep, generator=gen)


def select_filters(
    model: nn.Module,
    counts: Mapping[str, int],
    *,
    criterion: str = "l1",
    strategy: str = "independent",
    images: Optional[Tensor] = None,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, Tensor]:
    """Indices of the filters to keep (ascending) for each group in ``counts`` (group name -> kept count).

    ``images`` (a few hundred training inputs) are needed for activation criteria only.
    """
    m = check_zoo_model(model)
    name = criterion_name(criterion)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (valid: {', '.join(STRATEGIES)})")
    groups = prune_groups(m)
    by_name = {g.name: g for g in groups}
    unknown = [k for k in counts if k not in by_name]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a prune group of {m.arch_name} (groups: {', '.join(by_name)})")
    for g in groups:
        if g.name in counts and not 1 <= int(counts[g.name]) <= g.width:
            raise ValueError(f"group {g.name!r} has {g.width} filters; cannot keep {counts[g.name]}")
    todo = [g for g in groups if g.name in counts and int(counts[g.name]) < g.width]
    activation = is_activation_criterion(name)
    if activation and images is None:
        raise ValueError(f"criterion {name!r} needs sample images to measure feature maps")
    stats: dict[str, dict[str, Tensor]] = {}
    if activation and strategy == "independent" and todo:
        stats = collect_stats(m, images, [g.scorer for g in todo], batch_size=batch_size)  # type: ignore[arg-type]
    keep: dict[str, Tensor] = {}
    for g in todo:
        if activation and strategy == "independent":
            scores = stats_scores(stats[g.scorer], name)
        elif activation:
            # Greedy: measure this layer's maps with the filters chosen so far already removed.
            current = mask_model(m, keep) if keep else m
            scores = group_scores(current, g.name, name, images=images, batch_size=batch_size)
        else:
            in_keep = None
            if strategy == "greedy":
                source = _scorer_in_group(m, groups, g)
                if source is not None and source.name in keep:
                    in_keep = keep[source.name]
            scores = group_scores(m, g.name, name, seed=seed, in_keep=in_keep)
        keep[g.name] = keep_top(scores, int(counts[g.name]))
    return keep


def prune_by_ratios(
    model: nn.Module,
    ratios: Mapping[Any, float],
    *,
    criterion: str = "l1",
    strategy: str = "independent",
    images: Optional[Tensor] = None,
    seed: int = 0,
    multiple: int = 1,
) -> tuple[nn.Module, dict[str, Tensor]]:
    """Select and cut in one step: the pruned model and the kept indices per group."""
    counts = keep_counts(model, ratios, multiple=multiple)
    keep = select_filters(model, counts, criterion=criterion, strategy=strategy, images=images, seed=seed)
    return prune_model(model, keep), keep
