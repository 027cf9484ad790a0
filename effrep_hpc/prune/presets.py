"""The pruned models of Li et al. (ICLR 2017) as data: which layers, at which ratio, and the paper's totals.

Layer ids are the paper's (1-based over the convs in forward order, projection shortcuts left out; see
``groups``). In the ResNets only the first conv of a block is pruned (ids 2, 4, 6, ...), at one ratio
per stage, skipping the layers the sensitivity analysis found fragile (the first and last blocks of
stages). Kept filters are floor(width * (1 - ratio)); under that rounding the FLOP and parameter
reductions below come out as published (tests/prune checks them to 0.2 points).

This module is plain data (no torch), so configs can validate a preset name cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from effrep_hpc.registry import unknown_name_message


@dataclass(frozen=True)
class Preset:
    """One pruned model of the paper: the model it applies to and the ratio of each pruned layer id."""

    name: str
    model: str
    ratios: Mapping[int, float]  # paper layer id -> fraction of filters removed
    description: str
    paper_flops_reduction: float  # percent, Table 2 of the paper
    paper_params_reduction: float  # percent
    skipped: tuple[int, ...] = field(default=())


def _resnet_first_convs(
    blocks: tuple[int, ...], stage_ratios: tuple[float, ...], skip: tuple[int, ...]
) -> dict[int, float]:
    """Ratios by paper id for every block's first conv (id 2b for block b), per stage, minus ``skip``."""
    ratios: dict[int, float] = {}
    b = 0
    for n, ratio in zip(blocks, stage_ratios):
        for _ in range(n):
            b += 1
            if ratio > 0 and 2 * b not in skip:
                ratios[2 * b] = ratio
    return ratios


_R56 = (9, 9, 9)
_R110 = (18, 18, 18)
_R34 = (3, 4, 6, 3)
_R34_SKIP = (2, 8, 14, 16, 26, 28, 30, 32)

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            Preset(
                "vgg16-a", "vgg16", {i: 0.5 for i in (1, 8, 9, 10, 11, 12, 13)},
                "VGG-16 on CIFAR-10: half the filters of conv_1 and of conv_8..conv_13 (the 2x2 and 4x4 maps)",
                34.2, 64.0,
            ),
            Preset(
                "resnet56-a", "resnet56", _resnet_first_convs(_R56, (0.1, 0.1, 0.1), (16, 20, 38, 54)),
                "ResNet-56: 10% of every block's first conv, skipping layers 16, 20, 38, 54",
                10.4, 9.4, (16, 20, 38, 54),
            ),
            Preset(
                "resnet56-b", "resnet56", _resnet_first_convs(_R56, (0.6, 0.3, 0.1), (16, 18, 20, 34, 38, 54)),
                "ResNet-56: first convs at 60%/30%/10% per stage, skipping layers 16, 18, 20, 34, 38, 54",
                27.6, 13.7, (16, 18, 20, 34, 38, 54),
            ),
            Preset(
                "resnet110-a", "resnet110", _resnet_first_convs(_R110, (0.5, 0.0, 0.0), (36,)),
                "ResNet-110: 50% of the first convs of stage 1, skipping layer 36",
                15.9, 2.3, (36,),
            ),
            Preset(
                "resnet110-b", "resnet110", _resnet_first_convs(_R110, (0.5, 0.4, 0.3), (36, 38, 74)),
                "ResNet-110: first convs at 50%/40%/30% per stage, skipping layers 36, 38, 74",
                38.6, 32.4, (36, 38, 74),
            ),
            Preset(
                "resnet34-a", "resnet34", _resnet_first_convs(_R34, (0.3, 0.3, 0.3, 0.0), _R34_SKIP),
                "ResNet-34 (ImageNet): first convs at 30% in stages 1-3, skipping layers 2, 8, 14, 16, 26, 28, 30, 32",
                15.5, 7.6, _R34_SKIP,
            ),
            Preset(
                "resnet34-b", "resnet34", _resnet_first_convs(_R34, (0.5, 0.6, 0.4, 0.0), _R34_SKIP),
                "ResNet-34 (ImageNet): first convs at 50%/60%/40% in stages 1-3, skipping the same layers as A",
                24.2, 10.8, _R34_SKIP,
            ),
        )
    }
)


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def preset_names() -> list[str]:
    """The preset names (``vgg16-a``, ``resnet56-b``, ...)."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (spelling as in the paper also works: ``VGG-16-A``), else ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"a preset is a name such as 'resnet56-b', got {name!r}")
    for preset in PRESETS.values():
        if _key(preset.name) == _key(name):
            return preset
    raise ValueError(unknown_name_message("pruning preset", name, preset_names()))


def preset_for_model(name: str, model_name: str) -> Preset:
    """The preset ``name``, checked to be made for ``model_name`` (else ValueError naming the right model)."""
    preset = get_preset(name)
    if preset.model != model_name:
        fitting = [p.name for p in PRESETS.values() if p.model == model_name]
        hint = f"; presets for {model_name}: {', '.join(fitting)}" if fitting else f"; {model_name} has no preset"
        raise ValueError(f"preset {preset.name!r} is defined for model {preset.model!r}, not {model_name!r}{hint}")
    return preset
