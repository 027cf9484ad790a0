"""A seeded synthetic classification task of any input shape, labelled by a fixed random teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from effrep_hpc.data.base import Dataset, check_count, check_seed, register_dataset, seeded_generator

DEFAULT_INPUT_SHAPE = (3, 32, 32)


def teacher_labels(x: Tensor, weight: Tensor) -> Tensor:
    """Label each sample by the argmax of a fixed linear map: a task a linear model can fit exactly."""
    return (x.flatten(1) @ weight).argmax(dim=1)


@register_dataset("synthetic")
def load_synthetic(
    *,
    root: Optional[Path] = None,
    seed: int = 0,
    cache_dir: Optional[Path] = None,
    input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
    num_classes: int = 10,
    train_size: int = 1024,
    test_size: int = 256,
) -> Dataset:
    """Standard-normal inputs labelled by a seeded random linear teacher; same seed -> same data."""
    seed = check_seed(seed)
    try:
        shape = tuple(check_count(s, "input_shape entries") for s in input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a sequence of positive integers (got {input_shape!r})") from None
    if not shape:
        raise ValueError("input_shape must have at least one dimension, e.g. (3, 32, 32)")
    num_classes = check_count(num_classes, "num_classes", minimum=2)
    train_size = check_count(train_size, "train_size")
    test_size = check_count(test_size, "test_size")

    dim = 1
    for s in shape:
        dim *= s
    # Unit-norm teacher columns: with isotropic inputs no class wins just by having a longer
    # weight vector, so classes come out roughly balanced. Separate streams keep the teacher and the
    # test set unchanged when only train_size changes.
    weight = torch.randn(dim, num_classes, generator=seeded_generator(seed, "teacher"))
    weight /= weight.norm(dim=0, keepdim=True)
    x_train = torch.randn(train_size, *shape, generator=seeded_generator(seed, "train"))
    x_test = torch.randn(test_size, *shape, generator=seeded_generator(seed, "test"))
    return Dataset(
        name="synthetic",
        x_train=x_train,
        y_train=teacher_labels(x_train, weight),
        x_test=x_test,
        y_test=teacher_labels(x_test, weight),
        num_classes=num_classes,
        input_shape=shape,
        meta={"seed": seed, "teacher": "argmax of a unit-column random linear map"},
    )
