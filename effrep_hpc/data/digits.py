"""scikit-learn's bundled 8x8 handwritten digits (1797 images, no download) as a 1x8x8 dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from effrep_hpc.data.base import Dataset, check_seed, register_dataset, seeded_subset


@register_dataset("digits")
def load_digits(
    *,
    root: Optional[Path] = None,
    seed: int = 0,
    cache_dir: Optional[Path] = None,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    train_size: Optional[int] = None,
    test_size: Optional[int] = None,
) -> Dataset:
    """Digits with a stratified train/test split fixed by ``split_seed`` (not ``seed``), so every run
    compares on the same test set; scaled by the train mean/std; ``seed`` only picks subsets."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    split_seed = check_seed(split_seed, "split_seed")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1 (got {test_fraction!r})")
    bunch = sk_load_digits()
    images = bunch.images.astype(np.float32)[:, None]  # (N, 1, 8, 8), ink 0..16
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=float(test_fraction), stratify=labels, random_state=split_seed
    )
    # One scalar mean/std from the train split only, so test statistics never leak into training;
    # per-pixel statistics would divide by zero on the always-blank border pixels.
    mean, std = float(x_tr.mean()), float(x_tr.std())
    x_train = torch.from_numpy((x_tr - mean) / std)
    x_test = torch.from_numpy((x_te - mean) / std)
    x_train, y_train = seeded_subset(
        x_train, torch.from_numpy(y_tr), train_size, seed=seed, stream="train", what="train_size"
    )
    x_test, y_test = seeded_subset(
        x_test, torch.from_numpy(y_te), test_size, seed=seed, stream="test", what="test_size"
    )
    return Dataset(
        name="digits",
        x_train=x_train.contiguous(),
        y_train=y_train,
        x_test=x_test.contiguous(),
        y_test=y_test,
        num_classes=10,
        input_shape=(1, 8, 8),
        meta={"mean": mean, "std": std, "split_seed": split_seed, "test_fraction": float(test_fraction)},
    )
