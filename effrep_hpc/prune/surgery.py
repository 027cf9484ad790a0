"""Physical surgery: cut filters out of a zoo model and rebuild it as a plain, smaller model.

The pruned model is ``create_model(arch_name, **arch)`` with the slot widths reduced, loaded with the
kept slices of the original state_dict: writer convs keep their kept rows and BN entries, readers keep
the matching input channels (for a flattened map, the ``in_repeat`` features of each kept channel), and
everything else is copied. So it saves as arch + state_dict and loads without unpickling any module.

``mask_model`` is the reference it must agree with: the same filters zeroed in place of removed. A
zeroed filter alone is not enough, because BN would turn its zero output into the constant
``beta - gamma * mean / std``; zeroing the filter's BN scale and shift too makes the channel exactly
zero after BN, ReLU, pooling and residual sums, which is what removing it computes.
"""

from __future__ import annotations

import copy
from typing import Mapping, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from effrep_hpc.models import create_model
from effrep_hpc.models.layers import ConvBN, LinearBN, Slot, ZooModel
from effrep_hpc.prune.groups import PruneGroup, check_zoo_model, prune_groups

# Tolerance for the floor in num_keep: 10 * (1 - 0.9) is 0.9999999999999998 in floating point.
_EPS = 1e-6


def num_keep(width: int, ratio: float, multiple: int = 1) -> int:
    """Filters kept when the fraction ``ratio`` is removed: floor(width * (1 - ratio)), at least one.

    This rounding (removed = ceil(width * ratio)) is the one under which the paper's ResNet FLOP and
    parameter reductions come out exactly (e.g. 10% of 16 filters removes 2). ``multiple`` > 1 then
    rounds a pruned layer's count down to a multiple, so at least the requested fraction is removed:
    CPU and GPU convolution kernels work on blocks of 8 or 16 channels, so 19 channels cost as much as
    24 or 32 and the FLOPs saved would not show in wall time. A count below one multiple becomes one
    multiple (never zero), and a layer of at most ``multiple`` filters keeps its unrounded count,
    because rounding could only keep all of it.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must lie in [0, 1) (the fraction of filters removed), got {ratio!r}")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    kept = max(1, int(width * (1.0 - ratio) + _EPS))
    if multiple > 1 and ratio > 0 and width > multiple:
        kept = max(multiple, kept - kept % multiple)
    return kept


def _groups_by_name(model: nn.Module) -> dict[str, PruneGroup]:
    return {g.name: g for g in prune_groups(model)}


def _check_indices(group: PruneGroup, idx: Tensor) -> Tensor:
    idx = torch.as_tensor(idx).reshape(-1).to(torch.long).cpu()
    if idx.numel() == 0:
        raise ValueError(f"group {group.name!r}: at least one filter must be kept")
    if int(idx.min()) < 0 or int(idx.max()) >= group.width:
        raise ValueError(f"group {group.name!r} has {group.width} filters; kept index out of range: {idx.tolist()}")
    uniq = torch.unique(idx)
    if uniq.numel() != idx.numel():
        raise ValueError(f"group {group.name!r}: kept filter indices repeat: {idx.tolist()}")
    return uniq  # sorted: channel order is preserved


def _slot_indices(model: nn.Module, keep: Mapping[str, Tensor]) -> dict[Slot, Tensor]:
    groups = _groups_by_name(model)
    out: dict[Slot, Tensor] = {}
    for name, idx in keep.items():
        if name not in groups:
            raise ValueError(f"{name!r} is not a prune group of {model.arch_name} (groups: {', '.join(groups)})")
        g = groups[name]
        out[g.slot] = _check_indices(g, idx)
    return out


def pruned_arch(model: nn.Module, counts: Mapping[str, int]) -> dict:
    """The arch dict of ``model`` with each named group's width set to its kept count."""
    m = check_zoo_model(model)
    groups = _groups_by_name(m)
    arch = m.arch
    for name, count in counts.items():
        if name not in groups:
            raise ValueError(f"{name!r} is not a prune group of {m.arch_name} (groups: {', '.join(groups)})")
        g = groups[name]
        if not 1 <= int(count) <= g.width:
            raise ValueError(f"group {name!r} has {g.width} filters; cannot keep {count}")
        key, index = g.slot
        if index is None:
            arch[key] = int(count)
        else:
            arch[key][index] = int(count)
    return arch


def _unit_params(model: nn.Module, unit: str) -> tuple[str, list[str]]:
    """(weight key, keys of per-output-channel vectors) of one weight layer in the state_dict."""
    mod = model.get_submodule(unit)
    if isinstance(mod, ConvBN):
        return f"{unit}.conv.weight", [f"{unit}.bn.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(mod, LinearBN):
        return f"{unit}.linear.weight", [f"{unit}.bn.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(mod, nn.Linear):
        return f"{unit}.weight", [f"{unit}.bias"] if mod.bias is not None else []
    raise ValueError(f"do not know how to cut {unit!r} ({type(mod).__name__})")


def _expand(idx: Tensor, repeat: int) -> Tensor:
    if repeat == 1:
        return idx
    return (idx[:, None] * repeat + torch.arange(repeat)[None, :]).reshape(-1)


def prune_model(model: nn.Module, keep: Mapping[str, Tensor]) -> ZooModel:
    """A new, smaller model keeping filters ``keep[group name]`` (indices) of each named group.

    Groups not named keep all their filters. The result lives on the device and dtype of ``model``
    and has its train/eval mode; ``model`` itself is not changed.
    """
    m = check_zoo_model(model)
    by_slot = _slot_indices(m, keep)
    arch = pruned_arch(m, {name: len(idx) for name, idx in keep.items()})
    first = next(iter(m.parameters()))
    new = check_zoo_model(create_model(m.arch_name, **arch))
    state = m.state_dict()
    new_state: dict[str, Tensor] = {}
    for entry in m.layer_io():
        weight_key, vector_keys = _unit_params(m, entry.name)
        w = state[weight_key]
        out_idx = by_slot.get(entry.out_slot) if entry.out_slot is not None else None
        in_idx = by_slot.get(entry.in_slot) if entry.in_slot is not None else None
        if out_idx is not None:
            w = w.index_select(0, out_idx.to(w.device))
        if in_idx is not None:
            w = w.index_select(1, _expand(in_idx, entry.in_repeat).to(w.device))
        new_state[weight_key] = w.clone()
        for key in vector_keys:
            v = state[key]
            new_state[key] = (v.index_select(0, out_idx.to(v.device)) if out_idx is not None else v).clone()
    for key, value in state.items():
        if key not in new_state:
            new_state[key] = value.clone()  # BN step counters and anything without channels
    new.load_state_dict(new_state, strict=True)
    new.to(device=first.device, dtype=first.dtype)
    new.train(m.training)
    return new


@torch.no_grad()
def mask_model(model: nn.Module, keep: Mapping[str, Tensor]) -> ZooModel:
    """A copy of ``model`` with every filter not in ``keep`` zeroed (conv rows and BN scale and shift)."""
    m = check_zoo_model(model)
    groups = _groups_by_name(m)
    by_slot = _slot_indices(m, keep)
    masked = copy.deepcopy(m)
    for name in keep:
        g = groups[name]
        drop = torch.ones(g.width, dtype=torch.bool)
        drop[by_slot[g.slot]] = False
        for unit in g.writers:
            mod = cast("ConvBN | LinearBN", masked.get_submodule(unit))  # the writers of a prune group
            layer = mod.conv if isinstance(mod, ConvBN) else mod.linear
            d = drop.to(layer.weight.device)
            layer.weight[d] = 0
            bn = cast(_BatchNorm, mod.bn)  # pruned units carry BN (see _unit_params)
            bn.weight[d] = 0
            bn.bias[d] = 0
    return masked
