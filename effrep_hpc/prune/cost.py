"""FLOPs and parameters before and after pruning, in the paper's convention, without building weights.

The paper's ResNet-34 totals leave out the 1x1 projection shortcuts (see ``models.flops``); the CIFAR
nets have none, so ``include_shortcuts=False`` is the default here and changes nothing for them.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from effrep_hpc.models import count_flops_params, create_model, model_spec
from effrep_hpc.prune.groups import check_zoo_model
from effrep_hpc.prune.presets import preset_for_model
from effrep_hpc.prune.select import keep_counts
from effrep_hpc.prune.surgery import pruned_arch


def compare_costs(
    before: nn.Module, after: nn.Module, input_shape: Sequence[int], *, include_shortcuts: bool = False
) -> dict[str, Any]:
    """FLOPs (MACs) and params of both models and the reductions in percent."""
    f0, p0 = count_flops_params(before, input_shape, include_shortcuts=include_shortcuts)
    f1, p1 = count_flops_params(after, input_shape, include_shortcuts=include_shortcuts)
    return {
        "flops_before": f0,
        "flops_after": f1,
        "params_before": p0,
        "params_after": p1,
        "flops_reduction_pct": 100.0 * (1.0 - f1 / f0),
        "params_reduction_pct": 100.0 * (1.0 - p1 / p0),
        "flops_speedup": f0 / f1,
    }


def ratios_for(model: nn.Module, preset: Optional[str] = None, ratios: Optional[Mapping[Any, float]] = None) -> dict[Any, float]:
    """Per-layer ratios from a preset (checked against the model) updated by explicit ``ratios``."""
    out: dict[Any, float] = {}
    if preset:
        out.update(preset_for_model(preset, model.arch_name).ratios)  # type: ignore[arg-type]
    if ratios:
        out.update(ratios)
    return out


def planned_cost(
    name: str,
    *,
    preset: Optional[str] = None,
    ratios: Optional[Mapping[Any, float]] = None,
    input_shape: Optional[Sequence[int]] = None,
    num_classes: Optional[int] = None,
    include_shortcuts: bool = False,
    arch: Optional[Mapping[str, Any]] = None,
    multiple: int = 1,
) -> dict[str, Any]:
    """Costs of model ``name`` before and after pruning by a preset and/or ratios (no weights allocated)."""
    shape = tuple(input_shape or model_spec(name).input_shape)
    kwargs = dict(arch or {})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    with torch.device("meta"):
        model = create_model(name, **kwargs)
        counts = keep_counts(model, ratios_for(model, preset, ratios), multiple=multiple)
        after = check_zoo_model(create_model(name, **pruned_arch(model, counts)))
    report = compare_costs(model, after, shape, include_shortcuts=include_shortcuts)
    report.update(
        {
            "model": name,
            "input_shape": list(shape),
            "include_shortcuts": include_shortcuts,
            "round_to": multiple,
            "widths_after": {k: v for k, v in after.arch.items() if k != "num_classes"},
        }
    )
    if preset:
        p = preset_for_model(preset, name)
        report.update(
            {
                "preset": p.name,
                "paper_flops_reduction_pct": p.paper_flops_reduction,
                "paper_params_reduction_pct": p.paper_params_reduction,
            }
        )
    return report


def _weight_module(model: nn.Module, unit: str) -> str:
    from effrep_hpc.models.layers import ConvBN, LinearBN

    mod = model.get_submodule(unit)
    if isinstance(mod, ConvBN):
        return f"{unit}.conv"
    if isinstance(mod, LinearBN):
        return f"{unit}.linear"
    return unit


def group_flops(
    model: nn.Module, input_shape: Sequence[int], *, include_shortcuts: bool = False
) -> tuple[int, dict[str, int]]:
    """Total MACs and, per prune group, the MACs of the layers it cuts (its writers and readers).

    MACs are linear in both channel counts, so keeping k of n filters of one group leaves
    ``total - (1 - k/n) * group_flops[group]``: the FLOPs of the model with only that group pruned.
    """
    from effrep_hpc.models import layer_flops
    from effrep_hpc.prune.groups import prune_groups

    per_module = layer_flops(model, input_shape)

    def counted(unit: str) -> int:
        if not include_shortcuts and "shortcut" in unit.split("."):
            return 0
        return per_module.get(_weight_module(model, unit), 0)

    total = sum(v for n, v in per_module.items() if include_shortcuts or "shortcut" not in n.split("."))
    out = {}
    for g in prune_groups(model):
        out[g.name] = sum(counted(u) for u in g.writers) + sum(counted(u) for u, _ in g.readers)
    return total, out
