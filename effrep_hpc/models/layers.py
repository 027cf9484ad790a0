"""Building blocks shared by the zoo: conv+BN and linear+BN units, the model base class, width checks.

Every prunable layer is a ``ConvBN`` (or ``LinearBN``) unit so a pruning tool finds a conv and the BN that
normalises its output channels as one object, with the same two attribute names (``conv``/``linear``, ``bn``)
in every family.
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# An arch entry that sets a layer's channel count: (key of ``model.arch``, index into that list, or None
# when the entry is a scalar such as ``hidden``).
Slot = tuple[str, int | None]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


class ConvBN(nn.Module):
    """A bias-free conv followed by its BN (and optionally ReLU); the unit a filter pruner cuts."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int | None = None,
        ndim: int = 2,
        act: bool = True,
    ) -> None:
        super().__init__()
        if ndim not in _CONV:
            raise ValueError(f"ConvBN supports ndim 1 or 2, got {ndim}")
        # No conv bias: the BN right after it has its own shift, a bias would only be a redundant parameter.
        self.conv = _CONV[ndim](
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if padding is None else padding,
            bias=False,
        )
        self.bn = _BN[ndim](out_channels)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return F.relu(y) if self.act else y


class LinearBN(nn.Module):
    """A linear layer followed by BatchNorm1d and ReLU (hidden FC layers); ``norm=False``: biased, no BN."""

    def __init__(self, in_features: int, out_features: int, norm: bool = True) -> None:
        super().__init__()
        # Without BN the layer needs its bias; with BN a bias would be cancelled by the mean subtraction.
        self.linear = nn.Linear(in_features, out_features, bias=not norm)
        self.bn = nn.BatchNorm1d(out_features) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.linear(x)))


@dataclass(frozen=True)
class LayerIO:
    """Which arch entries set one weight layer's input and output widths (the channel dependency graph).

    ``name`` is the module name (a ``ConvBN``, ``LinearBN`` or the plain ``nn.Linear`` classifier);
    ``in_slot``/``out_slot`` are ``(arch key, index)`` pairs, ``None`` when the width is fixed (model input,
    class count). ``in_repeat`` > 1 means the layer reads a flattened ``C x spatial`` map: input channel
    ``c`` owns features ``c*in_repeat : (c+1)*in_repeat`` (channel-major flatten).
    """

    name: str
    in_slot: Slot | None
    out_slot: Slot | None
    in_repeat: int = 1


class ZooModel(nn.Module):
    """Base of every zoo model: carries its rebuild spec and exposes its layers in forward order.

    ``create_model(model.arch_name, **model.arch)`` rebuilds the same architecture.
    """

    def __init__(self, arch_name: str, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch_name = arch_name
        self._arch = copy.deepcopy(arch)

    @property
    def arch(self) -> dict[str, Any]:
        """JSON-serialisable constructor kwargs (a copy: edit it and rebuild, never mutate the model)."""
        return copy.deepcopy(self._arch)

    def conv_bn_pairs(self) -> list[tuple[str, nn.Module, nn.Module]]:
        """``(unit name, conv, bn)`` for every ConvBN unit, in forward order (a block's shortcut after conv2)."""
        return [(n, m.conv, m.bn) for n, m in self.named_modules() if isinstance(m, ConvBN)]

    def linear_bn_pairs(self) -> list[tuple[str, nn.Linear, nn.BatchNorm1d | nn.Identity]]:
        """``(unit name, linear, bn)`` for every hidden LinearBN unit, in forward order."""
        return [(n, m.linear, m.bn) for n, m in self.named_modules() if isinstance(m, LinearBN)]

    def layer_io(self) -> list[LayerIO]:
        """Every weight layer with the arch entries that set its in/out widths, in forward order."""
        raise NotImplementedError

    def slot_width(self, slot: Slot) -> int:
        """The width an arch slot currently holds, e.g. ``slot_width(("inner_widths", 3))``."""
        key, index = slot
        if key not in self._arch:
            raise KeyError(f"{self.arch_name} has no arch entry {key!r} (has {sorted(self._arch)})")
        value = self._arch[key]
        return int(value if index is None else value[index])


def check_widths(name: str, widths: Sequence[int] | None, default: Sequence[int]) -> list[int]:
    """Return ``widths`` (or ``default``) as a list of positive ints of the default's length, else raise."""
    if widths is None:
        return [int(w) for w in default]
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(f"{name} must be a list of {len(default)} positive ints, got {widths!r}")
    if len(widths) != len(default):
        raise ValueError(
            f"{name} must have {len(default)} entries (one per layer), got {len(widths)}: {list(widths)}"
        )
    return [check_width(f"{name}[{i}]", w) for i, w in enumerate(widths)]


def check_width(name: str, width: Any) -> int:
    """Return ``width`` as a positive int, else raise ValueError naming the offending entry."""
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or int(width) < 1:
        raise ValueError(f"{name} must be a positive int, got {width!r}")
    return int(width)


def check_num_classes(num_classes: Any) -> int:
    """Return ``num_classes`` as an int >= 1, else raise ValueError."""
    return check_width("num_classes", num_classes)


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU gain) and BN weight 1 / bias 0; linears keep torch defaults."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            # fan_out keeps the backward signal's variance constant, the torchvision ResNet convention.
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
