"""Filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017): pure functions on models.

Three parts with one job each, as in Torch-Pruning:

- ``criteria``: scores per filter (``l1`` default, ``l2``, ``random``, ``largest``; activation
  statistics ``mean_mean``, ``mean_std``, ``mean_l1``, ``mean_l2``, ``var_l2`` of pre-BN maps).
- ``groups``: the dependency structure, which filters must be cut together (one group per arch slot of
  a zoo model; paper layer ids; resolving user keys and checking ratios in [0, 1)).
- ``surgery``: the cut itself, returning a plain smaller zoo model rebuilt from its arch dict
  (``mask_model`` zeroes instead, the reference surgery must match).

On top: ``select`` (independent or greedy ranking, keep counts), ``presets`` (the paper's pruned
models as data), ``cost`` (FLOPs/params before and after), ``timing`` (interleaved, median) and
``widths`` (a pruned model's widths as text).

Typical use::

    pruned, keep = prune_by_ratios(model, get_preset("resnet56-b").ratios)   # keys: paper layer ids
    pruned, keep = prune_by_ratios(model, {"features.0": 0.5}, criterion="l2", strategy="greedy")
    save_checkpoint(path, {"arch_name": pruned.arch_name, "arch": pruned.arch, "model": pruned.state_dict()})

No files, no communication, no printing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from effrep_hpc.registry import lazy_exports

if TYPE_CHECKING:  # type checkers see the real names; at run time they load on first use
    from effrep_hpc.prune.cost import (  # noqa: F401
        compare_costs,
        planned_cost,
        ratios_for,
    )
    from effrep_hpc.prune.criteria import (  # noqa: F401
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
    from effrep_hpc.prune.groups import (  # noqa: F401
        PruneGroup,
        check_ratio,
        paper_layer_ids,
        prune_groups,
        resolve_layer,
        resolve_ratios,
    )
    from effrep_hpc.prune.presets import (  # noqa: F401
        PRESETS,
        Preset,
        get_preset,
        preset_for_model,
        preset_names,
    )
    from effrep_hpc.prune.select import (  # noqa: F401
        STRATEGIES,
        collect_stats,
        compose_keep,
        group_scores,
        keep_counts,
        layer_seed,
        prune_by_ratios,
        select_filters,
    )
    from effrep_hpc.prune.surgery import (  # noqa: F401
        mask_model,
        num_keep,
        prune_model,
        pruned_arch,
    )
    from effrep_hpc.prune.timing import (  # noqa: F401
        measured_speedup,
        median_times,
        time_forward,
    )
    from effrep_hpc.prune.widths import widths_text  # noqa: F401


# name -> module; loaded on first use, so `effrep_hpc.prune.presets`, `.names` and `.widths` (plain data) import without torch
_LAZY = {
    'ACTIVATION_CRITERIA': 'effrep_hpc.prune.criteria',
    'CRITERIA': 'effrep_hpc.prune.criteria',
    'PRESETS': 'effrep_hpc.prune.presets',
    'Preset': 'effrep_hpc.prune.presets',
    'PruneGroup': 'effrep_hpc.prune.groups',
    'STRATEGIES': 'effrep_hpc.prune.select',
    'WEIGHT_CRITERIA': 'effrep_hpc.prune.criteria',
    'activation_scores': 'effrep_hpc.prune.criteria',
    'check_ratio': 'effrep_hpc.prune.groups',
    'collect_stats': 'effrep_hpc.prune.select',
    'compare_costs': 'effrep_hpc.prune.cost',
    'compose_keep': 'effrep_hpc.prune.select',
    'criterion_name': 'effrep_hpc.prune.criteria',
    'feature_map_stats': 'effrep_hpc.prune.criteria',
    'get_preset': 'effrep_hpc.prune.presets',
    'group_scores': 'effrep_hpc.prune.select',
    'is_activation_criterion': 'effrep_hpc.prune.criteria',
    'keep_counts': 'effrep_hpc.prune.select',
    'keep_top': 'effrep_hpc.prune.criteria',
    'layer_seed': 'effrep_hpc.prune.select',
    'mask_model': 'effrep_hpc.prune.surgery',
    'measured_speedup': 'effrep_hpc.prune.timing',
    'median_times': 'effrep_hpc.prune.timing',
    'num_keep': 'effrep_hpc.prune.surgery',
    'paper_layer_ids': 'effrep_hpc.prune.groups',
    'planned_cost': 'effrep_hpc.prune.cost',
    'preset_for_model': 'effrep_hpc.prune.presets',
    'preset_names': 'effrep_hpc.prune.presets',
    'prune_by_ratios': 'effrep_hpc.prune.select',
    'prune_groups': 'effrep_hpc.prune.groups',
    'prune_model': 'effrep_hpc.prune.surgery',
    'pruned_arch': 'effrep_hpc.prune.surgery',
    'ratios_for': 'effrep_hpc.prune.cost',
    'resolve_layer': 'effrep_hpc.prune.groups',
    'resolve_ratios': 'effrep_hpc.prune.groups',
    'select_filters': 'effrep_hpc.prune.select',
    'stats_scores': 'effrep_hpc.prune.criteria',
    'time_forward': 'effrep_hpc.prune.timing',
    'weight_scores': 'effrep_hpc.prune.criteria',
    'widths_text': 'effrep_hpc.prune.widths',
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
