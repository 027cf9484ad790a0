"""scikit-learn digits: shapes, a fixed stratified split, and train-set normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from effrep_hpc.data import load_dataset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_shapes_dtypes_classes(digits):
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert set(digits.y_train.tolist()) == set(range(10)) == set(digits.y_test.tolist())


def test_normalised_with_train_statistics(digits):
    assert digits.x_train.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert digits.x_train.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    # The test split uses the train mean/std, so its own statistics are close but not forced.
    assert abs(digits.x_test.mean().item()) < 0.1


def test_split_partitions_the_original_images(digits):
    bunch = sk_load_digits()
    m, s = digits.meta["mean"], digits.meta["std"]
    raw = torch.cat([digits.x_train, digits.x_test]) * s + m
    raw = raw.round().reshape(len(raw), 64).numpy().astype(np.int64)
    labels = torch.cat([digits.y_train, digits.y_test]).numpy()
    got = sorted(map(tuple, np.column_stack([raw, labels]).tolist()))
    want = sorted(map(tuple, np.column_stack([bunch.data.astype(np.int64), bunch.target]).tolist()))
    assert got == want


def test_split_is_stratified(digits):
    total = np.bincount(sk_load_digits().target, minlength=10)
    test = np.bincount(digits.y_test.numpy(), minlength=10)
    assert np.all(np.abs(test - 0.2 * total) <= 1)


def test_split_is_fixed_by_split_seed_not_seed(digits):
    again = load_dataset("digits", seed=5)
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_test, digits.y_test)
    other = load_dataset("digits", split_seed=1)
    assert not torch.equal(other.y_test, digits.y_test)


def test_subset_and_fraction_options(digits):
    small = load_dataset("digits", train_size=100, test_size=50, seed=3)
    assert small.x_train.shape == (100, 1, 8, 8) and small.x_test.shape == (50, 1, 8, 8)
    half = load_dataset("digits", test_fraction=0.5)
    assert abs(len(half.y_test) - 1797 / 2) <= 1
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.5)
