"""Multi-layer perceptrons with BN on flattened inputs (the quantized-training experiments' small nets)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from effrep_hpc.models.factory import register_model
from effrep_hpc.models.layers import LayerIO, LinearBN, ZooModel, check_num_classes, check_widths, init_weights


class MLP(ZooModel):
    """Flatten, then ``LinearBN`` + ReLU per hidden width (``hidden.i``), then a linear ``classifier``."""

    def __init__(self, arch_name: str, in_features: int, widths: list[int], num_classes: int, norm: bool = True) -> None:
        super().__init__(arch_name, {"widths": list(widths), "num_classes": num_classes, "norm": norm})
        layers, fin = [], in_features
        for w in widths:
            layers.append(LinearBN(fin, w, norm))
            fin = w
        self.hidden = nn.Sequential(*layers)
        self.classifier = nn.Linear(fin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(torch.flatten(x, 1)))

    def layer_io(self) -> list[LayerIO]:
        """Hidden layer i reads widths[i-1] (the flat input for i = 0) and writes widths[i]."""
        n = len(self.hidden)
        io = [LayerIO(f"hidden.{i}", None if i == 0 else ("widths", i - 1), ("widths", i)) for i in range(n)]
        return io + [LayerIO("classifier", ("widths", n - 1), None)]


@register_model("digits_mlp", input_shape=(1, 8, 8), num_classes=10)
def digits_mlp(*, num_classes: int = 10, widths: Sequence[int] | None = None, norm: bool = True) -> MLP:
    """MLP for 8x8 digits: 64 -> 128 -> 128 (each Linear + BN + ReLU) -> classes; ``norm=False`` drops BN."""
    hidden = check_widths("widths", widths, (128, 128))
    if not isinstance(norm, bool):
        raise ValueError(f"norm must be true or false (got {norm!r})")
    return MLP("digits_mlp", math.prod((1, 8, 8)), hidden, check_num_classes(num_classes), norm)
