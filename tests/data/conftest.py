"""Fixtures for the data tests: tiny CIFAR-10 batch files in the standard python-pickle format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def write_cifar_batches(folder: Path, per_batch: int = 20, *, protocol: int = 2, seed: int = 0) -> dict[str, dict]:
    """Write the six CIFAR-10 batch files into ``folder`` the way the official archive lays them out
    (dict with b'batch_label', b'labels' list, b'data' uint8 (N, 3072), b'filenames'); return them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in CIFAR_FILES:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
        written[name] = batch
    return written


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """A parent directory holding ``cifar-10-batches-py`` with 20 images per batch file."""
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    return tmp_path


@pytest.fixture
def make_cifar():
    """The batch writer itself, for tests that need other sizes, protocols or broken directories."""
    return write_cifar_batches
