"""Filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017): pure functions on models.

Three parts with one job each, as in Torch-Pruning:

- ``criteria``: scores per filter (``l1`` default, ``l2``, ``random``, ``largest``; activation
  statistics ``mean_mean``, ``mean_std``, ``mean_l1``, ``mean_l2``, ``var_l2`` of pre-BN maps).
- ``groups``: the dependency structure, which filters must be cut together (one group per arch slot of
  a zoo model; paper layer ids; resolving user keys and checking ratios in [0, 1)).
- ``surgery``: the cut itself, returning a plain smaller zoo model rebuilt from its arch dict
  (``mask_model`` zeroes instead, the reference surgery must match).

On top: ``select`` (independent or greedy ranking, keep counts), ``presets`` (the paper's pruned
models as data), ``cost`` (FLOPs/params before and after) and ``timing`` (interleaved, median).

Typical use::

    pruned, keep = prune_by_ratios(model, get_preset("resnet56-b").ratios)   # keys: paper layer ids
    pruned, keep = prune_by_ratios(model, {"features.0": 0.5}, criterion="l2", strategy="greedy")
    save_checkpoint(path, {"arch_name": pruned.arch_name, "arch": pruned.arch, "model": pruned.state_dict()})

No files, no communication, no printing here.
"""

from __future__ import annotations

from effrep_hpc.prune.cost import compare_costs, planned_cost, ratios_for
from effrep_hpc.prune.criteria import (
    ACTIVATION_CRITERIA,
    CRITERIA,
    WEIGHT_CRITERIA,
    activation_scores,
    criterion_name,
    feature_map_stats,
    is_activation_criterion,
    keep_top,
    stats_scores,
    weight_scores,
)
from effrep_hpc.prune.groups import (
    PruneGroup,
    check_ratio,
    paper_layer_ids,
    prune_groups,
    resolve_layer,
    resolve_ratios,
)
from effrep_hpc.prune.presets import PRESETS, Preset, get_preset, preset_for_model, preset_names
from effrep_hpc.prune.select import (
    STRATEGIES,
    collect_stats,
    group_scores,
    keep_counts,
    layer_seed,
    prune_by_ratios,
    select_filters,
)
from effrep_hpc.prune.surgery import mask_model, num_keep, prune_model, pruned_arch
from effrep_hpc.prune.timing import measured_speedup, median_times, time_forward

__all__ = [
    "ACTIVATION_CRITERIA",
    "CRITERIA",
    "PRESETS",
    "STRATEGIES",
    "WEIGHT_CRITERIA",
    "Preset",
    "PruneGroup",
    "activation_scores",
    "check_ratio",
    "collect_stats",
    "compare_costs",
    "criterion_name",
    "feature_map_stats",
    "get_preset",
    "group_scores",
    "is_activation_criterion",
    "keep_counts",
    "keep_top",
    "layer_seed",
    "mask_model",
    "measured_speedup",
    "median_times",
    "num_keep",
    "paper_layer_ids",
    "planned_cost",
    "preset_for_model",
    "preset_names",
    "prune_by_ratios",
    "prune_groups",
    "prune_model",
    "pruned_arch",
    "ratios_for",
    "resolve_layer",
    "resolve_ratios",
    "select_filters",
    "stats_scores",
    "time_forward",
    "weight_scores",
]
