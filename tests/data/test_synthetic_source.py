"""Synthetic data: any shape, seeded, labelled by a fixed linear teacher (so it is learnable)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from effrep_hpc.data import load_dataset


def test_defaults():
    ds = load_dataset("synthetic")
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.x_train.shape == (1024, 3, 32, 32) and ds.x_test.shape == (256, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert set(ds.y_train.tolist()) == set(range(10))


def test_any_shape_and_class_count():
    ds = load_dataset("synthetic", input_shape=[2, 5], num_classes=3, train_size=40, test_size=9)
    assert ds.input_shape == (2, 5) and ds.x_train.shape == (40, 2, 5) and ds.x_test.shape == (9, 2, 5)
    assert int(ds.y_train.max()) < 3 and int(ds.y_train.min()) >= 0


def test_same_seed_same_data_other_seed_other_data():
    a = load_dataset("synthetic", seed=4, train_size=64, test_size=16)
    b = load_dataset("synthetic", seed=4, train_size=64, test_size=16)
    c = load_dataset("synthetic", seed=5, train_size=64, test_size=16)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.x_train, c.x_train)


def test_sizes_do_not_change_the_other_split():
    a = load_dataset("synthetic", seed=1, train_size=64, test_size=16)
    b = load_dataset("synthetic", seed=1, train_size=32, test_size=16)
    c = load_dataset("synthetic", seed=1, train_size=64, test_size=8)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    assert torch.equal(a.x_train, c.x_train) and torch.equal(a.y_train, c.y_train)


def test_task_is_learnable_by_a_linear_model():
    ds = load_dataset("synthetic", input_shape=(6,), num_classes=4, train_size=2000, test_size=500)
    counts = np.bincount(ds.y_train.numpy(), minlength=4)
    assert counts.min() > 0.1 * len(ds.y_train), counts  # no class starved
    clf = LogisticRegression(C=100.0, max_iter=2000).fit(ds.x_train.numpy(), ds.y_train.numpy())
    assert clf.score(ds.x_train.numpy(), ds.y_train.numpy()) > 0.97
    assert clf.score(ds.x_test.numpy(), ds.y_test.numpy()) > 0.93


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"input_shape": (3, 0)}, "input_shape"),
        ({"input_shape": 7}, "input_shape"),
        ({"input_shape": ()}, "input_shape"),
        ({"num_classes": 1}, "num_classes"),
        ({"train_size": 0}, "train_size"),
    ],
)
def test_bad_options_are_reported(kw, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("synthetic", **kw)
