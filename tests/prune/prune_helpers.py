"""Helpers shared by the pruning tests (a module name of its own, so imports never hit another conftest)."""

from __future__ import annotations

import torch
from torch import nn

from effrep_hpc.models import create_model


def calibrated(name: str, shape: tuple[int, ...], *, seed: int = 0, **kw: object) -> nn.Module:
    """A zoo model with BN statistics from random data and random BN affines, in eval mode.

    Fresh BN layers (mean 0, var 1, scale 1, shift 0) would hide a surgery that forgets the BN entries;
    calibrating on data keeps activations of order one so float32 logits can be compared at 1e-5.
    """
    torch.manual_seed(seed)
    model = create_model(name, **kw)
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for bn in bns:
        bn.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(torch.randn(8, *shape, generator=gen))
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen) + 0.5)
            bn.bias.copy_(0.1 * torch.randn(bn.bias.shape, generator=gen))
    return model.eval()
