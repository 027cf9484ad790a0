"""Which filters must be cut together: prune groups built from a zoo model's channel dependency graph.

A group is one arch slot (``model.layer_io()``): every layer that writes the slot loses the same output
channels (conv rows and BN entries), every layer that reads it loses the matching input channels.

- VGG: one group per conv (``features.K``), read by the next conv or, across the flatten, by the FC.
- CIFAR ResNets: one group per block's first conv (``layerS.B.conv1``), read by its conv2 (what Li et
  al. prune). Option-A (zero-padding) shortcuts tie the stage widths together, so those are not groups.
- ResNets with projection shortcuts (18/34): also one group per stage (``layerS``): the stem (stage 1),
  every conv2 of the stage and its projection shortcut. As in the paper, the identity maps matter more
  than the residual ones, so the channels are ranked by the projection shortcut's filters (for stage 1,
  which has none, by the stem, where the identity path starts).

Layer ids follow the paper: 1, 2, ... over the convs in forward order, projection shortcuts left out
(VGG-16 conv_1..conv_13; ResNet-56 stem = 1, block b's convs = 2b and 2b+1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from effrep_hpc.models.layers import ConvBN, LayerIO, Slot, ZooModel
from effrep_hpc.registry import did_you_mean


@dataclass(frozen=True)
class PruneGroup:
    """Filters cut together: a slot, its writers (filters cut) and readers (input channels cut)."""

    name: str
    slot: Slot
    width: int
    writers: tuple[str, ...]
    readers: tuple[tuple[str, int], ...]  # (unit name, in_repeat)
    scorer: str  # the unit whose filters (or feature maps) rank the channels
    layer_ids: tuple[int, ...]  # paper ids of the writers (projection shortcuts have none)


def _is_shortcut(name: str) -> bool:
    return "shortcut" in name.split(".")


def check_zoo_model(model: nn.Module) -> ZooModel:
    """Return ``model`` if it is a zoo model with a channel graph, else raise a ValueError that says why."""
    if not isinstance(model, ZooModel):
        raise ValueError(
            f"filter pruning needs a zoo model (create_model(...)) whose architecture is data; got {type(model).__name__}"
        )
    return model


def paper_layer_ids(model: nn.Module) -> dict[str, int]:
    """Unit name -> the paper's layer id (1-based over the convs in forward order, shortcuts left out)."""
    m = check_zoo_model(model)
    names = [n for n, _, _ in m.conv_bn_pairs() if not _is_shortcut(n)]
    return {n: i + 1 for i, n in enumerate(names)}


def _has_pad_shortcut(model: nn.Module) -> bool:
    # Imported here: only ResNets have them, and the check must not care which families exist.
    from effrep_hpc.models.resnet import PadShortcut

    return any(isinstance(m, PadShortcut) for m in model.modules())


def _group_name(slot: Slot, writers: list[str]) -> str:
    if len(writers) == 1:
        return writers[0]
    key, index = slot
    if key == "stage_widths" and index is not None:
        return f"layer{index + 1}"
    return key if index is None else f"{key}[{index}]"


def prune_groups(model: nn.Module) -> list[PruneGroup]:
    """Every prunable group of ``model``, ordered by where its ranking layer sits in the forward pass."""
    m = check_zoo_model(model)
    io: list[LayerIO] = m.layer_io()
    ids = paper_layer_ids(m)
    position = {entry.name: i for i, entry in enumerate(io)}
    writers: dict[Slot, list[str]] = {}
    readers: dict[Slot, list[tuple[str, int]]] = {}
    for entry in io:
        if entry.out_slot is not None:
            writers.setdefault(entry.out_slot, []).append(entry.name)
        if entry.in_slot is not None:
            readers.setdefault(entry.in_slot, []).append((entry.name, entry.in_repeat))
    tied_stages = _has_pad_shortcut(m)
    groups = []
    for slot, names in writers.items():
        if not all(isinstance(m.get_submodule(n), ConvBN) for n in names):
            continue  # hidden FC layers: not filters (the paper prunes convs only)
        if slot[0] == "stage_widths" and tied_stages:
            continue  # option-A identity maps carry channel c of one stage into channel c of the next
        shortcuts = [n for n in names if _is_shortcut(n)]
        scorer = shortcuts[0] if shortcuts else names[0]
        groups.append(
            PruneGroup(
                name=_group_name(slot, names),
                slot=slot,
                width=m.slot_width(slot),
                writers=tuple(names),
                readers=tuple(readers.get(slot, [])),
                scorer=scorer,
                layer_ids=tuple(ids[n] for n in names if n in ids),
            )
        )
    groups.sort(key=lambda g: position[g.scorer])
    return groups


def group_of_slot(groups: list[PruneGroup], slot: Slot | None) -> PruneGroup | None:
    """The group that owns ``slot`` (None for a fixed width or a slot that cannot be pruned)."""
    for g in groups:
        if g.slot == slot:
            return g
    return None


def _tied_stages(model: ZooModel) -> dict[str, str]:
    """Unit and stage names -> the stage (``layerS``) whose width option-A shortcuts tie (empty without them)."""
    if not _has_pad_shortcut(model):
        return {}
    out = {}
    for entry in model.layer_io():
        key, index = entry.out_slot or (None, None)
        if key == "stage_widths" and index is not None:
            out[entry.name] = out[f"layer{index + 1}"] = f"layer{index + 1}"
    return out


def _option_a_refusal(what: str, stage: str, arch_name: str, groups: list[PruneGroup]) -> str:
    """Why a stage width of a CIFAR ResNet (option-A shortcuts) cannot be pruned, and what can be."""
    writes = "" if what == f"stage {stage!r}" else f"it writes the output width of stage {stage!r}, and "
    return (
        f"{what} of {arch_name} cannot be pruned: {writes}option-A (zero-padding identity) shortcuts tie the "
        "stage widths (within a stage every block adds its input to its output channel by channel; into the next stage "
        "channel c carries on as channel c, padded with zeros), so a stage's output width cannot be pruned "
        f"independently; prune the blocks' first convs instead ({groups[0].name}, ..., {groups[-1].name}; "
        f"paper ids {prunable_ids(groups)})"
    )


def resolve_layer(model: nn.Module, groups: list[PruneGroup], key: Any) -> PruneGroup:
    """The group a user means by ``key``: a group name, any of its writer units, or a paper layer id."""
    if not groups:
        raise ValueError(
            f"{getattr(model, 'arch_name', type(model).__name__)} has no prunable conv layers "
            "(filter pruning removes conv filters; choose a CNN such as vgg16 or resnet56)"
        )
    ids = paper_layer_ids(model)
    zoo = check_zoo_model(model)
    tied = _tied_stages(zoo)
    if isinstance(key, bool):
        raise ValueError(f"a layer is a name such as {groups[0].name!r} or a paper layer id, got {key!r}")
    text = str(key).strip()
    if text.isdigit():
        lid = int(text)
        for g in groups:
            if lid in g.layer_ids:
                return g
        by_id = {v: k for k, v in ids.items()}
        if lid in by_id and by_id[lid] in tied:
            raise ValueError(_option_a_refusal(f"layer {lid} ({by_id[lid]})", tied[by_id[lid]], zoo.arch_name, groups))
        if lid in by_id:
            raise ValueError(
                f"layer {lid} ({by_id[lid]}) of {model.arch_name} cannot be pruned on its own: its output width "
                f"is tied to others by residual connections (prunable ids: {prunable_ids(groups)})"
            )
        raise ValueError(f"{model.arch_name} has conv layers 1..{len(ids)}; there is no layer {lid}")
    for g in groups:
        if text == g.name or text in g.writers:
            return g
    if text in tied:
        what = f"stage {text!r}" if text == tied[text] else f"layer {text!r}"
        raise ValueError(_option_a_refusal(what, tied[text], zoo.arch_name, groups))
    names = [g.name for g in groups]
    hint = did_you_mean(text, names)
    if text in ids:
        raise ValueError(
            f"layer {text!r} of {model.arch_name} cannot be pruned: its output width is tied to the residual "
            f"stage (prunable: {', '.join(names)})"
        )
    raise ValueError(
        f"unknown layer {text!r} for {model.arch_name}{hint} (prunable layers: {', '.join(names)}; "
        f"or paper layer ids {prunable_ids(groups)})"
    )


def prunable_ids(groups: list[PruneGroup]) -> str:
    """A compact text of the paper layer ids that some group contains, e.g. ``2,4,...,54``."""
    ids = sorted(i for g in groups for i in g.layer_ids)
    if len(ids) > 6:
        return f"{ids[0]},{ids[1]},...,{ids[-1]}"
    return ",".join(map(str, ids))


def resolve_ratios(model: nn.Module, ratios: Mapping[Any, float]) -> dict[str, float]:
    """Map user keys (names or paper ids) to group names, checking each ratio lies in [0, 1)."""
    groups = prune_groups(model)
    out: dict[str, float] = {}
    seen: dict[str, Any] = {}
    for key, ratio in ratios.items():
        g = resolve_layer(model, groups, key)
        value = check_ratio(ratio, f"ratio of layer {key!r}")
        if g.name in out and out[g.name] != value:
            raise ValueError(
                f"layers {seen[g.name]!r} and {key!r} are the same prune group {g.name!r} but get different "
                f"ratios ({out[g.name]} and {value}); give one"
            )
        out[g.name], seen[g.name] = value, key
    return out


def check_ratio(ratio: Any, what: str = "ratio") -> float:
    """Return ``ratio`` as a float in [0, 1) (the fraction of filters removed), else raise ValueError."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise ValueError(f"{what} must be a number in [0, 1) (the fraction of filters removed), got {ratio!r}")
    value = float(ratio)
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{what} must lie in [0, 1): it is the fraction of filters removed and at least one must stay (got {ratio!r})"
        )
    return value
