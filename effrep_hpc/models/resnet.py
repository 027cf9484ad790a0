"""ResNets with BasicBlocks: CIFAR ResNet-20..110 and Wide-ResNet-56-k (option A), ImageNet ResNet-18/34,
and the same CIFAR layout shrunk for the small CPU datasets (``digits_resnet*`` on 1x8x8, ``mnist1d_resnet*`` on
1x40 with 1D convolutions).

Widths are data: ``stage_widths`` (one per stage: the stem, every block's second conv and the stage's
projection shortcut write it, because the residual additions tie them) and ``inner_widths`` (one per block:
the out-channels of the block's first conv, which only that block's second conv reads; the layers the
filter-pruning paper prunes in ResNets).

Shortcuts. CIFAR nets use option A of He et al.: an identity that subsamples with the block's stride and
appends zero channels when the stage widens (input channel ``c`` lands on output channel ``c``; where the
zeros go is a permutation of randomly initialised channels, so it does not matter, and appending keeps the
channel map simple for pruning). Option A cannot shrink channels, so a block whose stage is narrower than
its input (only possible with custom ``stage_widths``) gets a 1x1-conv + BN projection instead. The wide
nets keep option A: 16k -> 32k -> 64k only widens. ImageNet nets use projection shortcuts wherever the shape
changes (option B). ``*_noshort`` variants drop every skip connection (the loss-landscape paper's contrast).

Small-data nets. ``digits_resnet{20,56,110}`` and ``mnist1d_resnet{20,56,110}`` (and ``*_noshort``) are the
CIFAR family, 6n+2 layers in three stages, with one input channel and stage widths 8/16/32 (so ResNet-110
trains an epoch of digits in seconds on one core); ``k`` multiplies those defaults (the width study).
Digits run the stages at 8x8, 4x4, 2x2; mnist1d uses Conv1d at lengths 40, 20, 10. The classes, shortcuts and
pruning slots are the CIFAR nets' own: only the stem's input channels and the conv dimensionality differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from effrep_hpc.models.factory import register_model
from effrep_hpc.models.layers import (
    ConvBN,
    LayerIO,
    Slot,
    ZooModel,
    check_num_classes,
    check_width,
    check_widths,
    init_weights,
)


class PadShortcut(nn.Module):
    """Option-A shortcut: strided subsampling, then zero channels appended up to the block's width."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.dim() - 2  # 1 (Conv1d nets) or 2
        if self.stride != 1:
            x = x[(slice(None), slice(None), *[slice(None, None, self.stride)] * spatial)]
        # F.pad lists (before, after) pairs from the last dim backwards: the channel dim comes last.
        return F.pad(x, (0, 0) * spatial + (0, self.extra_channels)) if self.extra_channels else x


class BasicBlock(nn.Module):
    """Two 3x3 ConvBN units (``conv1`` with the stride, ``conv2`` without ReLU) plus the skip connection.

    ``shortcut`` is ``None`` without a skip, ``nn.Identity``, a ``PadShortcut`` or a projection ``ConvBN``.
    ``ndim`` 1 makes every conv a Conv1d (kernel 3, the same strides).
    """

    def __init__(self, cin: int, inner: int, cout: int, stride: int, shortcut: str, ndim: int = 2) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, inner, 3, stride=stride, ndim=ndim)
        self.conv2 = ConvBN(inner, cout, 3, act=False, ndim=ndim)
        self.shortcut: nn.Module | None
        if shortcut == "none":
            self.shortcut = None
        elif stride == 1 and cin == cout:
            self.shortcut = nn.Identity()
        elif shortcut == "A" and cout >= cin:
            self.shortcut = PadShortcut(stride, cout - cin)
        else:
            self.shortcut = ConvBN(cin, cout, 1, stride=stride, padding=0, act=False, ndim=ndim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


@dataclass(frozen=True)
class ResNetLayout:
    """What a ResNet variant fixes: stem type, blocks per stage, default stage widths, shortcut kind, input."""

    stem: str  # "cifar": 3x3 conv; "imagenet": 7x7/2 conv + 3x3/2 max-pool
    blocks: tuple[int, ...]
    stage_widths: tuple[int, ...]
    shortcut: str  # "A": zero-pad identity; "B": projection where the shape changes; "none": no skips
    in_channels: int = 3
    ndim: int = 2  # conv dimensionality: 2 for images, 1 for signals (mnist1d)


def _cifar(n: int, k: int = 1, shortcut: str = "A") -> ResNetLayout:
    return ResNetLayout("cifar", (n, n, n), (16 * k, 32 * k, 64 * k), shortcut)


# Small enough that ResNet-110 trains an epoch of 8x8 digits in seconds on one core; ``k`` scales them.
_SMALL_WIDTHS = (8, 16, 32)
_SMALL_DEPTHS = (20, 56, 110)
_SMALL_DATA = {"digits": ((1, 8, 8), 2), "mnist1d": ((1, 40), 1)}  # prefix -> (input shape, conv ndim)


def _small(n: int, shortcut: str, ndim: int) -> ResNetLayout:
    return ResNetLayout("cifar", (n, n, n), _SMALL_WIDTHS, shortcut, in_channels=1, ndim=ndim)


# A read-only table of frozen layouts: no caller can change what a registered name builds.
_LAYOUTS = MappingProxyType(
    {
        **{f"resnet{d}": _cifar((d - 2) // 6) for d in (20, 32, 44, 56, 110)},
        **{f"resnet{d}_noshort": _cifar((d - 2) // 6, shortcut="none") for d in (20, 32, 44, 56, 110)},
        **{f"wrn56_{k}": _cifar(9, k) for k in (2, 4, 8)},
        **{f"wrn56_{k}_noshort": _cifar(9, k, "none") for k in (2, 4, 8)},
        "resnet18": ResNetLayout("imagenet", (2, 2, 2, 2), (64, 128, 256, 512), "B"),
        "resnet34": ResNetLayout("imagenet", (3, 4, 6, 3), (64, 128, 256, 512), "B"),
        **{
            f"{data}_resnet{d}{suffix}": _small((d - 2) // 6, shortcut, ndim)
            for data, (_, ndim) in _SMALL_DATA.items()
            for d in _SMALL_DEPTHS
            for suffix, shortcut in (("", "A"), ("_noshort", "none"))
        },
    }
)


class ResNet(ZooModel):
    """Stem, stages ``layer1..layerN`` of BasicBlocks (stride 2 from the second stage), global pool, ``fc``."""

    def __init__(
        self,
        arch_name: str,
        layout: ResNetLayout,
        stage_widths: list[int],
        inner_widths: list[int],
        num_classes: int,
    ) -> None:
        super().__init__(
            arch_name,
            {"stage_widths": list(stage_widths), "inner_widths": list(inner_widths), "num_classes": num_classes},
        )
        if layout.stem == "cifar":
            self.stem = ConvBN(layout.in_channels, stage_widths[0], 3, ndim=layout.ndim)
            self.maxpool: nn.Module | None = None
        else:
            self.stem = ConvBN(3, stage_widths[0], 7, stride=2, padding=3)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.num_stages = len(layout.blocks)
        cin, b = stage_widths[0], 0
        for s, n in enumerate(layout.blocks):
            blocks = []
            for k in range(n):
                stride = 2 if (s > 0 and k == 0) else 1
                blocks.append(BasicBlock(cin, inner_widths[b], stage_widths[s], stride, layout.shortcut, layout.ndim))
                cin, b = stage_widths[s], b + 1
            self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(stage_widths[-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.maxpool is not None:
            x = self.maxpool(x)
        for s in range(self.num_stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(x.mean(dim=tuple(range(2, x.dim()))))  # global average over the 1 or 2 spatial dims

    def blocks(self) -> list[tuple[str, BasicBlock]]:
        """``(name, block)`` for every residual block in forward order (aligned with ``inner_widths``)."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, BasicBlock)]

    def block_first_convs(self) -> list[str]:
        """Names of each block's first ConvBN unit (``inner_widths[i]`` sets the i-th one's filters)."""
        return [f"{n}.conv1" for n, _ in self.blocks()]

    def layer_io(self) -> list[LayerIO]:
        """Stem and conv2/shortcut write their stage's slot; conv1 writes its block's inner slot."""
        io = [LayerIO("stem", None, ("stage_widths", 0))]
        prev: Slot = ("stage_widths", 0)
        for i, (name, block) in enumerate(self.blocks()):
            stage: Slot = ("stage_widths", int(name.split(".")[0][len("layer") :]) - 1)
            io.append(LayerIO(f"{name}.conv1", prev, ("inner_widths", i)))
            io.append(LayerIO(f"{name}.conv2", ("inner_widths", i), stage))
            if isinstance(block.shortcut, ConvBN):
                io.append(LayerIO(f"{name}.shortcut", prev, stage))
            prev = stage
        io.append(LayerIO("fc", prev, None))
        return io


def _resnet(
    arch_name: str,
    stage_widths: Sequence[int] | None,
    inner_widths: Sequence[int] | None,
    num_classes: int,
    k: int = 1,
) -> ResNet:
    layout = _LAYOUTS[arch_name]
    k = check_width("k", k)
    if k != 1 and stage_widths is not None:
        # The arch keeps the widths, not k: a rebuild passes stage_widths alone, so both at once is ambiguous.
        raise ValueError(f"{arch_name}: give k (a multiplier of the default widths) or stage_widths, not both")
    stages = check_widths("stage_widths", stage_widths, [w * k for w in layout.stage_widths])
    default_inner = [w for w, n in zip(stages, layout.blocks) for _ in range(n)]
    inner = check_widths("inner_widths", inner_widths, default_inner)
    return ResNet(arch_name, layout, stages, inner, check_num_classes(num_classes))


# Public constructors: ``inner_widths`` has one entry per block (default: its stage width), ``stage_widths``
# one per stage. CIFAR ResNet-d has (d-2)/6 blocks per stage.

_W = Sequence[int] | None
_CIFAR_SHAPE = (3, 32, 32)


@register_model("resnet20", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet20(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """CIFAR ResNet-20 (3x3 blocks, widths 16/32/64, option-A shortcuts)."""
    return _resnet("resnet20", stage_widths, inner_widths, num_classes)


@register_model("resnet20_noshort", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet20_noshort(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """ResNet-20 without skip connections."""
    return _resnet("resnet20_noshort", stage_widths, inner_widths, num_classes)


@register_model("resnet32", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet32(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """CIFAR ResNet-32 (3x5 blocks, option A)."""
    return _resnet("resnet32", stage_widths, inner_widths, num_classes)


@register_model("resnet32_noshort", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet32_noshort(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """ResNet-32 without skip connections."""
    return _resnet("resnet32_noshort", stage_widths, inner_widths, num_classes)


@register_model("resnet44", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet44(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """CIFAR ResNet-44 (3x7 blocks, option A)."""
    return _resnet("resnet44", stage_widths, inner_widths, num_classes)


@register_model("resnet44_noshort", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet44_noshort(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """ResNet-44 without skip connections."""
    return _resnet("resnet44_noshort", stage_widths, inner_widths, num_classes)


@register_model("resnet56", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet56(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """CIFAR ResNet-56 (3x9 blocks, option A): 1.25e8 MACs, 8.5e5 params as in the pruning paper."""
    return _resnet("resnet56", stage_widths, inner_widths, num_classes)


@register_model("resnet56_noshort", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet56_noshort(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """ResNet-56 without skip connections (the loss-landscape paper's chaotic-landscape example)."""
    return _resnet("resnet56_noshort", stage_widths, inner_widths, num_classes)


@register_model("resnet110", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet110(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """CIFAR ResNet-110 (3x18 blocks, option A): 2.53e8 MACs, 1.72e6 params as in the pruning paper."""
    return _resnet("resnet110", stage_widths, inner_widths, num_classes)


@register_model("resnet110_noshort", input_shape=_CIFAR_SHAPE, num_classes=10)
def resnet110_noshort(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """ResNet-110 without skip connections."""
    return _resnet("resnet110_noshort", stage_widths, inner_widths, num_classes)


@register_model("wrn56_2", input_shape=_CIFAR_SHAPE, num_classes=10)
def wrn56_2(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """Wide ResNet-56-2 of the loss-landscape paper: ResNet-56 with widths 32/64/128 (option A)."""
    return _resnet("wrn56_2", stage_widths, inner_widths, num_classes)


@register_model("wrn56_2_noshort", input_shape=_CIFAR_SHAPE, num_classes=10)
def wrn56_2_noshort(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """Wide ResNet-56-2 without skip connections."""
    return _resnet("wrn56_2_noshort", stage_widths, inner_widths, num_classes)


@register_model("wrn56_4", input_shape=_CIFAR_SHAPE, num_classes=10)
def wrn56_4(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """Wide ResNet-56-4: widths 64/128/256 (option A)."""
    return _resnet("wrn56_4", stage_widths, inner_widths, num_classes)


@register_model("wrn56_4_noshort", input_shape=_CIFAR_SHAPE, num_classes=10)
def wrn56_4_noshort(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """Wide ResNet-56-4 without skip connections."""
    return _resnet("wrn56_4_noshort", stage_widths, inner_widths, num_classes)


@register_model("wrn56_8", input_shape=_CIFAR_SHAPE, num_classes=10)
def wrn56_8(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """Wide ResNet-56-8: widths 128/256/512 (option A)."""
    return _resnet("wrn56_8", stage_widths, inner_widths, num_classes)


@register_model("wrn56_8_noshort", input_shape=_CIFAR_SHAPE, num_classes=10)
def wrn56_8_noshort(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """Wide ResNet-56-8 without skip connections."""
    return _resnet("wrn56_8_noshort", stage_widths, inner_widths, num_classes)


@register_model("resnet18", input_shape=(3, 224, 224), num_classes=1000)
def resnet18(*, num_classes: int = 1000, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """ImageNet ResNet-18 (2-2-2-2 BasicBlocks, widths 64..512, projection shortcuts)."""
    return _resnet("resnet18", stage_widths, inner_widths, num_classes)


@register_model("resnet34", input_shape=(3, 224, 224), num_classes=1000)
def resnet34(*, num_classes: int = 1000, inner_widths: _W = None, stage_widths: _W = None) -> ResNet:
    """ImageNet ResNet-34 (3-4-6-3 BasicBlocks, projection shortcuts): 3.64e9 MACs at 224x224."""
    return _resnet("resnet34", stage_widths, inner_widths, num_classes)


def _register_small(data: str, depth: int, suffix: str) -> None:
    """Register ``<data>_resnet<depth><suffix>``: the CIFAR layout on the small dataset's input."""
    name = f"{data}_resnet{depth}{suffix}"
    shape, ndim = _SMALL_DATA[data]

    def build(*, num_classes: int = 10, inner_widths: _W = None, stage_widths: _W = None, k: int = 1) -> ResNet:
        return _resnet(name, stage_widths, inner_widths, num_classes, k)

    skip = "without skip connections" if suffix else "option-A shortcuts"
    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"ResNet-{depth} for {'x'.join(map(str, shape))} {data} ({ndim}D convs, widths 8k/16k/32k, {skip})."
    register_model(name, input_shape=shape, num_classes=10)(build)


# digits_resnet20 ... mnist1d_resnet110_noshort: twelve constructors that differ only in their layout.
for _data in _SMALL_DATA:
    for _depth in _SMALL_DEPTHS:
        for _suffix in ("", "_noshort"):
            _register_small(_data, _depth, _suffix)
