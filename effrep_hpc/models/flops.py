"""FLOPs and parameter counts, in the filter-pruning paper's convention.

FLOPs are multiply-accumulates (MACs) of conv and linear layers for one input sample: a conv costs
``out_elements * in_channels/groups * kernel_area``, a linear ``in_features * out_features``. Bias adds, BN,
ReLU, pooling and residual additions are not counted. Params are all trainable parameters (conv, BN affine,
linear weights and biases; BN running statistics are buffers and are not counted).

How this matches the published totals (checked by tests/models/test_zoo_flops.py; all within 1%):

- VGG-16 (CIFAR, Li et al. 2017): 313,463,808 MACs vs 3.13e8; 14,987,210 params vs 1.5e7. The FC layers
  add only 2.7e5 MACs, so counting them (as here) or not gives the same 3.13e8.
- ResNet-56 / ResNet-110 (CIFAR, option A, so there are no shortcut convs): 125,485,696 vs 1.25e8 and
  252,887,680 vs 2.53e8 MACs; 853,018 vs 8.5e5 and 1,727,962 vs 1.72e6 params.
- ResNet-34 at 224x224 vs the published 3.64e9 MACs / 2.16e7 params: counting everything gives
  3,663,761,408 (+0.65%) / 21,797,672 (+0.92%); leaving out the three 1x1 projection shortcuts (conv and
  BN) gives 3,644,493,824 (+0.12%) / 21,623,848 (+0.11%). So the paper's totals evidently cover the
  residual-branch convs and the FC layer (5.1e5 MACs, too few to tell) but not the projection shortcuts.
  ``count_flops_params`` counts everything by default; ``include_shortcuts=False`` reproduces the paper's
  convention, and ``layer_flops`` gives the per-layer split.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from effrep_hpc.errors import UserError
from effrep_hpc.models.factory import model_spec

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(
            f"input_shape must be positive ints without the batch dim, e.g. (3, 32, 32); got {input_shape!r}"
        )
    return shape


def _wrong_shape(model: nn.Module, shape: tuple[int, ...], exc: RuntimeError) -> UserError:
    """The one-line error for an input shape the model cannot take, with the shape it was registered for."""
    name = getattr(model, "arch_name", None) or type(model).__name__
    try:
        takes = f"; it takes {'x'.join(map(str, model_spec(name).input_shape))} (its registered input shape)"
    except KeyError:
        takes = ""
    detail = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    return UserError(f"{name} cannot take input shape {'x'.join(map(str, shape))} ({detail}){takes}")


def _macs(module: nn.Linear | _ConvNd, out: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    kernel = math.prod(module.kernel_size)
    return out.numel() * (module.in_channels // module.groups) * kernel


def _is_shortcut(name: str) -> bool:
    return "shortcut" in name.split(".")


def layer_flops(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs of each conv/linear module (by name) for one sample of ``input_shape``, via forward hooks.

    The model runs in eval mode (BN1d rejects a batch of one in training) on the device and dtype of its
    parameters, so a model built under ``torch.device("meta")`` is counted without any arithmetic.
    """
    shape = _check_shape(input_shape)
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    counts: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, _COUNTED):

            def hook(mod: nn.Linear | _ConvNd, _inp: tuple, out: torch.Tensor, name: str = name) -> None:
                counts[name] = counts.get(name, 0) + _macs(mod, out)

            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=device, dtype=dtype))
    except RuntimeError as exc:  # the only input here is the shape: a layer that rejects it (channels, size, flatten)
        raise _wrong_shape(model, shape, exc) from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return counts


def count_params(model: nn.Module, *, include_shortcuts: bool = True) -> int:
    """Number of parameters (BN running statistics are buffers and excluded); see count_flops_params."""
    return sum(p.numel() for n, p in model.named_parameters() if include_shortcuts or not _is_shortcut(n))


def count_flops_params(
    model: nn.Module, input_shape: Sequence[int], *, include_shortcuts: bool = True
) -> tuple[int, int]:
    """``(MACs of conv + linear layers for one sample, parameters)``: the pruning paper's FLOPs/params.

    ``include_shortcuts=False`` leaves out modules under a ``shortcut`` attribute (the ResNets' projection
    shortcuts), the convention under which the published ResNet-34 totals match to 0.1%.
    """
    flops = layer_flops(model, input_shape)
    total = sum(v for n, v in flops.items() if include_shortcuts or not _is_shortcut(n))
    return total, count_params(model, include_shortcuts=include_shortcuts)
