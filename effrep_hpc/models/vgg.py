"""Plain conv stacks (VGG family): conv-BN-ReLU layers with fixed max-pool positions, then an FC head.

The same class serves the CIFAR VGGs of the papers and the small 8x8-digits / mnist1d nets: a variant fixes
the input, the kernel, where the pools sit and the head; the widths are data (``widths``, ``hidden``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Sequence

import torch
from torch import nn

from effrep_hpc.models.factory import register_model
from effrep_hpc.models.layers import (
    ConvBN,
    LayerIO,
    LinearBN,
    ZooModel,
    check_num_classes,
    check_width,
    check_widths,
    init_weights,
)


@dataclass(frozen=True)
class VGGLayout:
    """What a VGG variant fixes: input, kernel, pool positions, head type and default widths."""

    in_channels: int
    input_size: tuple[int, ...]  # spatial size; its length (1 or 2) picks Conv1d or Conv2d
    widths: tuple[int, ...]  # default out-channels, one per conv
    pools: tuple[int, ...]  # indices of the convs that a 2x max-pool follows
    hidden: int  # default width of the BN'd hidden FC layer; 0 = classifier reads the features directly
    kernel_size: int = 3
    global_pool: bool = False  # average the last map over space before the head (else flatten it)


# A read-only table of frozen layouts: no caller can change what a registered name builds.
_LAYOUTS = MappingProxyType({
    # loss-landscape VGG-9: 7 convs in blocks of 2-2-3, FC 256*4*4 -> 256 (BN) -> classes. Unlike the
    # research code, convs and the hidden FC carry no bias (the BN after each shifts): 1,408 fewer params.
    "vgg9": VGGLayout(3, (32, 32), (64, 64, 128, 128, 256, 256, 256), (1, 3, 6), 256),
    # Pruning paper VGG-16 (Zagoruyko's CIFAR variant, BN after every conv and after FC 512 -> 512).
    "vgg16": VGGLayout(
        3, (32, 32), (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512), (1, 3, 6, 9, 12), 512
    ),
    # 8x8 digits: two convs at 8x8, pool, one at 4x4, global average, linear (~99% on sklearn digits in
    # 5 epochs, ~0.15 s per epoch of 1.4k samples on one CPU thread).
    "digits_cnn": VGGLayout(1, (8, 8), (32, 64, 64), (1,), 0, global_pool=True),
    # 8x8 digits, VGG-shaped for pruning: 2-2-2 convs at 8x8, 4x4, 2x2, pool to 1x1, FC 64 (BN), classes.
    "digits_vgg": VGGLayout(1, (8, 8), (16, 16, 32, 32, 64, 64), (1, 3, 5), 64),
    # mnist1d (length 40): k=5 convs 2 at 40, 2 at 20, pool to 10; flatten keeps position (the signal's
    # shape carries the class), FC 64 (BN), classes (~97% test accuracy on mnist1d's default 4k/1k split).
    "mnist1d_net": VGGLayout(1, (40,), (32, 32, 64, 64), (1, 3), 64, kernel_size=5),
})


class VGG(ZooModel):
    """Conv-BN-ReLU stack with max-pools after the layout's pool indices, then [LinearBN] + Linear."""

    def __init__(
        self, arch_name: str, layout: VGGLayout, widths: list[int], hidden: int, num_classes: int
    ) -> None:
        super().__init__(arch_name, {"widths": list(widths), "hidden": hidden, "num_classes": num_classes})
        ndim = len(layout.input_size)
        pool = nn.MaxPool1d if ndim == 1 else nn.MaxPool2d
        layers: list[nn.Module] = []
        size = list(layout.input_size)
        cin = layout.in_channels
        for i, w in enumerate(widths):
            layers.append(ConvBN(cin, w, layout.kernel_size, ndim=ndim))
            if i in layout.pools:
                # ceil_mode as in the loss-landscape VGG: odd sizes keep their border instead of dropping it.
                layers.append(pool(kernel_size=2, stride=2, ceil_mode=True))
                size = [math.ceil(s / 2) for s in size]
            cin = w
        self.features = nn.Sequential(*layers)
        self.global_pool = layout.global_pool
        self.feature_repeat = 1 if layout.global_pool else math.prod(size)
        flat = widths[-1] * self.feature_repeat
        self.fc = LinearBN(flat, hidden) if hidden else None
        self.classifier = nn.Linear(hidden if hidden else flat, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.global_pool:
            x = x.mean(dim=tuple(range(2, x.dim())))
        x = torch.flatten(x, 1)
        if self.fc is not None:
            x = self.fc(x)
        return self.classifier(x)

    def layer_io(self) -> list[LayerIO]:
        """Conv i reads widths[i-1] and writes widths[i]; the head reads the last conv's (flattened) map."""
        names = [n for n, _, _ in self.conv_bn_pairs()]
        io = [
            LayerIO(n, None if i == 0 else ("widths", i - 1), ("widths", i)) for i, n in enumerate(names)
        ]
        last = ("widths", len(names) - 1)
        if self.fc is not None:
            io.append(LayerIO("fc", last, ("hidden", None), self.feature_repeat))
            io.append(LayerIO("classifier", ("hidden", None), None))
        else:
            io.append(LayerIO("classifier", last, None, self.feature_repeat))
        return io


def _vgg(arch_name: str, widths: Sequence[int] | None, hidden: int | None, num_classes: int) -> VGG:
    layout = _LAYOUTS[arch_name]
    w = check_widths("widths", widths, layout.widths)
    if hidden is None:
        h = layout.hidden
    elif isinstance(hidden, int) and not isinstance(hidden, bool) and hidden == 0:
        h = 0
    else:
        h = check_width("hidden (0 for no hidden FC layer)", hidden)
    return VGG(arch_name, layout, w, h, check_num_classes(num_classes))


@register_model("vgg9", input_shape=(3, 32, 32), num_classes=10)
def vgg9(*, num_classes: int = 10, widths: Sequence[int] | None = None, hidden: int | None = None) -> VGG:
    """VGG-9 of the loss-landscape paper (7 conv + 2 FC, CIFAR); widths default 64,64,128,128,256x3, hidden 256."""
    return _vgg("vgg9", widths, hidden, num_classes)


@register_model("vgg16", input_shape=(3, 32, 32), num_classes=10)
def vgg16(*, num_classes: int = 10, widths: Sequence[int] | None = None, hidden: int | None = None) -> VGG:
    """CIFAR VGG-16 of the filter-pruning paper: 13 conv (BN) + FC 512 (BN) + classifier; 3.13e8 MACs."""
    return _vgg("vgg16", widths, hidden, num_classes)


@register_model("digits_cnn", input_shape=(1, 8, 8), num_classes=10)
def digits_cnn(
    *, num_classes: int = 10, widths: Sequence[int] | None = None, hidden: int | None = None
) -> VGG:
    """Small CNN for 8x8 digits: conv 32, 64, pool, conv 64, global average, linear (hidden 0 = none)."""
    return _vgg("digits_cnn", widths, hidden, num_classes)


@register_model("digits_vgg", input_shape=(1, 8, 8), num_classes=10)
def digits_vgg(
    *, num_classes: int = 10, widths: Sequence[int] | None = None, hidden: int | None = None
) -> VGG:
    """VGG-style net for 8x8 digits (6 conv with BN, FC 64): a cheap stand-in for VGG-16 in pruning runs."""
    return _vgg("digits_vgg", widths, hidden, num_classes)


@register_model("mnist1d_net", input_shape=(1, 40), num_classes=10)
def mnist1d_net(
    *, num_classes: int = 10, widths: Sequence[int] | None = None, hidden: int | None = None
) -> VGG:
    """Conv1d + BN net for mnist1d (1x40): 4 convs k=5 with two pools, flatten, FC 64 (BN), linear."""
    return _vgg("mnist1d_net", widths, hidden, num_classes)
