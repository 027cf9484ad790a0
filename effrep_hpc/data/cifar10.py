"""CIFAR-10 from the standard python-pickle batches (``cifar-10-batches-py``) on the user's disk."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from effrep_hpc.data.base import Dataset, register_dataset, seeded_subset
from effrep_hpc.data.safe_pickle import ForbiddenGlobalError, safe_load

SUBDIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
# Per-channel mean/std of the 50k training images on the 0..1 scale (125.3/123.0/113.9 and
# 63.0/62.1/66.7 out of 255, the constants the loss-landscape paper's CIFAR-10 code normalises with).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def find_batch_dir(root: str | Path) -> Path:
    """The directory holding all six batch files: ``root`` itself or ``root/cifar-10-batches-py``."""
    root = Path(root).expanduser()
    expected = TRAIN_FILES + TEST_FILES
    candidates = [root, root / SUBDIR]
    for cand in candidates:
        if all((cand / f).is_file() for f in expected):
            return cand
    # Report the candidate that got furthest, so a half-copied directory names what is missing.
    best = max(candidates, key=lambda c: sum((c / f).is_file() for f in expected))
    missing = [f for f in expected if not (best / f).is_file()]
    where = " or ".join(str(c) for c in candidates)
    state = f"missing in {best}: {', '.join(missing)}" if best.is_dir() else f"{root} is not a directory"
    raise FileNotFoundError(
        f"CIFAR-10 python batches not found: expected {', '.join(expected)} in {where} ({state}). "
        f"Download and extract {_URL} and pass root=<the directory that contains {SUBDIR}>."
    )


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file: uint8 images (N, 3072) and int64 labels (N,), checked for shape and range."""
    try:
        batch = safe_load(path)
    except ForbiddenGlobalError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable CIFAR-10 batch file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict with 'data' and 'labels', got {type(batch).__name__}")
    data = np.asarray(_field(batch, "data", path))
    labels = np.asarray(_field(batch, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise ValueError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be {len(data)} integers, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    return data, labels.astype(np.int64)


def _field(batch: dict[Any, Any], key: str, path: str | Path) -> Any:
    """``batch[b'key']`` (the original Python 2 files) or ``batch['key']`` (re-saved by Python 3)."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise ValueError(f"{path}: no {key!r} entry (keys: {sorted(map(repr, batch))})")


def normalize(images: Tensor) -> Tensor:
    """uint8 (N, 3, 32, 32) -> float32 scaled to 0..1, then standardised per channel."""
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return images.to(torch.float32).div_(255.0).sub_(mean).div_(std)


def _read_split(folder: Path, files: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """Concatenate batch files into uint8 images (N, 3, 32, 32) and int64 labels."""
    parts = [read_batch(folder / f) for f in files]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(data).view(-1, *IMAGE_SHAPE), torch.from_numpy(labels)


@register_dataset("cifar10")
def load_cifar10(
    *,
    root: Optional[Path] = None,
    seed: int = 0,
    cache_dir: Optional[Path] = None,
    train_size: Optional[int] = None,
    test_size: Optional[int] = None,
) -> Dataset:
    """CIFAR-10 as float32 (N, 3, 32, 32), normalised per channel; ``train_size``/``test_size`` take a
    subset chosen with ``seed`` (the test subset does not depend on the train size)."""
    if root is None:
        raise ValueError(
            f"cifar10 needs root=<directory>: the folder {SUBDIR} from {_URL}, or its parent"
        )
    folder = find_batch_dir(root)
    x_train, y_train = _read_split(folder, TRAIN_FILES)
    x_test, y_test = _read_split(folder, TEST_FILES)
    # Subset while still uint8: converting all 50k images first would cost 600 MB for nothing.
    x_train, y_train = seeded_subset(x_train, y_train, train_size, seed=seed, stream="train", what="train_size")
    x_test, y_test = seeded_subset(x_test, y_test, test_size, seed=seed, stream="test", what="test_size")
    return Dataset(
        name="cifar10",
        x_train=normalize(x_train),
        y_train=y_train,
        x_test=normalize(x_test),
        y_test=y_test,
        num_classes=NUM_CLASSES,
        input_shape=IMAGE_SHAPE,
        meta={"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD), "root": str(folder)},
    )
