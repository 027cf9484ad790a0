"""The in-memory ``Dataset`` record, the dataset name table, and helpers every source shares."""

from __future__ import annotations

import operator
import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from effrep_hpc.registry import Registry

# A loader takes keyword arguments only (root, seed, cache_dir plus its own options) and returns a
# Dataset on the CPU; load_dataset moves it to the requested device.
Loader = Callable[..., "Dataset"]

DATASETS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: make a loader available to ``load_dataset(name)``."""
    return DATASETS.register(name)


@dataclass(eq=False)
class Dataset:
    """A train/test split held in memory as tensors on one device (inputs float32, labels int64)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    # JSON-serialisable provenance (normalisation constants, seeds, source directory) so that
    # store/ can record exactly which data a result came from.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(s) for s in self.input_shape)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if tuple(x.shape[1:]) != self.input_shape:
                raise ValueError(
                    f"dataset {self.name!r}: x_{split} has sample shape {tuple(x.shape[1:])}, "
                    f"expected input_shape {self.input_shape}"
                )
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise ValueError(
                    f"dataset {self.name!r}: y_{split} must be int64 of shape ({len(x)},), "
                    f"got {y.dtype} of shape {tuple(y.shape)}"
                )
            if x.device != y.device or x.device != self.x_train.device:
                raise ValueError(f"dataset {self.name!r}: all tensors must be on one device")

    @property
    def device(self) -> torch.device:
        """The device every tensor of this dataset lives on."""
        return self.x_train.device

    @property
    def num_train(self) -> int:
        """Number of training samples."""
        return len(self.y_train)

    @property
    def num_test(self) -> int:
        """Number of test samples."""
        return len(self.y_test)

    def to(self, device: str | torch.device) -> Dataset:
        """Return a copy with every tensor on ``device`` (self when already there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            meta=dict(self.meta),
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, device={self.device})"
        )


def default_cache_dir() -> Path:
    """Where generated datasets are cached: ``$EFFREP_CACHE`` or ``~/.cache/effrep_hpc``."""
    env = os.environ.get("EFFREP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "effrep_hpc"


def check_seed(seed: Any, what: str = "seed") -> int:
    """Return ``seed`` as a non-negative int, or raise ValueError saying what was wrong."""
    try:
        value = operator.index(seed)
    except TypeError:
        raise ValueError(f"{what} must be a non-negative integer (got {seed!r})") from None
    if isinstance(seed, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer (got {seed!r})")
    return value


def check_count(value: Any, what: str, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum``, or raise ValueError naming ``what``."""
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer >= {minimum} (got {value!r})") from None
    if isinstance(value, bool) or n < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum} (got {value!r})")
    return n


def child_seed(seed: int, stream: str) -> int:
    """Derive an independent seed for one named random stream, so e.g. the test subset does not
    change when only the train size does."""
    state = np.random.SeedSequence([seed, zlib.crc32(stream.encode())]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def seeded_generator(seed: int, stream: str) -> torch.Generator:
    """A CPU torch.Generator for the named stream of ``seed``."""
    return torch.Generator().manual_seed(child_seed(seed, stream) & 0x7FFF_FFFF_FFFF_FFFF)


def seeded_subset(
    x: Tensor, y: Tensor, size: Optional[int], *, seed: int, stream: str, what: str
) -> tuple[Tensor, Tensor]:
    """Take ``size`` samples chosen uniformly at random (seeded, original order kept); None keeps all."""
    if size is None:
        return x, y
    size = check_count(size, what)
    if size > len(y):
        raise ValueError(f"{what}={size} is larger than the {len(y)} samples available")
    if size == len(y):
        return x, y
    idx = torch.randperm(len(y), generator=seeded_generator(seed, stream))[:size].sort().values
    return x[idx], y[idx]
