"""CIFAR-10 read from tiny files in the official python-pickle batch format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from effrep_hpc.data import CIFAR10_MEAN, CIFAR10_STD, load_dataset
from effrep_hpc.data.safe_pickle import ForbiddenGlobalError

TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def _unnormalize(x: torch.Tensor) -> np.ndarray:
    """Invert the per-channel normalisation back to uint8 pixel rows (N, 3072)."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_reads_pixels_and_labels_back_exactly(tmp_path, make_cifar, protocol):
    written = make_cifar(tmp_path / "cifar-10-batches-py", per_batch=20, protocol=protocol)
    ds = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py")
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.num_classes == 10 and ds.input_shape == (3, 32, 32)
    want_train = np.concatenate([written[f][b"data"] for f in TRAIN])
    want_labels = np.concatenate([written[f][b"labels"] for f in TRAIN])
    np.testing.assert_array_equal(_unnormalize(ds.x_train), want_train)
    np.testing.assert_array_equal(ds.y_train.numpy(), want_labels)
    np.testing.assert_array_equal(_unnormalize(ds.x_test), written["test_batch"][b"data"])
    np.testing.assert_array_equal(ds.y_test.numpy(), written["test_batch"][b"labels"])


def test_channel_layout_and_normalisation_constants(tmp_path, make_cifar):
    written = make_cifar(tmp_path, per_batch=4)
    ds = load_dataset("cifar10", root=tmp_path)
    # Row layout of the official files: 1024 red values, then green, then blue, each row-major 32x32.
    row = written["data_batch_1"][b"data"][0]
    green_pixel = row[1024 + 5 * 32 + 7]
    expected = (green_pixel / 255.0 - CIFAR10_MEAN[1]) / CIFAR10_STD[1]
    assert ds.x_train[0, 1, 5, 7].item() == pytest.approx(expected, abs=1e-5)
    assert CIFAR10_MEAN == pytest.approx((0.4914, 0.4822, 0.4467), abs=1e-3)
    assert CIFAR10_STD == pytest.approx((0.2471, 0.2435, 0.2616), abs=1e-3)


def test_root_may_be_the_parent_of_the_batch_folder(cifar_root):
    ds = load_dataset("cifar10", root=cifar_root)
    assert ds.meta["root"] == str(cifar_root / "cifar-10-batches-py")
    assert len(ds.y_train) == 100


def test_missing_directory_names_files_and_places_searched(tmp_path):
    where = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", root=where)
    msg = str(err.value)
    for name in TRAIN + ["test_batch"]:
        assert name in msg
    assert str(where) in msg and str(where / "cifar-10-batches-py") in msg


def test_incomplete_directory_names_the_missing_files(tmp_path, make_cifar):
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar(folder, per_batch=2)
    os.remove(folder / "data_batch_3")
    os.remove(folder / "test_batch")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path)
    assert f"missing in {folder}: data_batch_3, test_batch" in str(err.value)


def test_root_is_required():
    with pytest.raises(ValueError, match="root"):
        load_dataset("cifar10")


def test_seeded_subsets(cifar_root):
    full = load_dataset("cifar10", root=cifar_root)
    a = load_dataset("cifar10", root=cifar_root, seed=1, train_size=30, test_size=7)
    b = load_dataset("cifar10", root=cifar_root, seed=1, train_size=30, test_size=7)
    c = load_dataset("cifar10", root=cifar_root, seed=2, train_size=30, test_size=7)
    d = load_dataset("cifar10", root=cifar_root, seed=1, train_size=50, test_size=7)
    assert a.x_train.shape == (30, 3, 32, 32) and a.x_test.shape == (7, 3, 32, 32)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, d.x_test), "the test subset must not depend on train_size"
    # Every subset sample is a sample of the full split, with its own label, each taken once.
    match = (a.x_train.flatten(1)[:, None] == full.x_train.flatten(1)[None]).all(-1)
    assert (match.sum(1) >= 1).all()
    picked = match.float().argmax(1)
    assert len(set(picked.tolist())) == 30
    assert torch.equal(full.y_train[picked], a.y_train)


def test_subset_larger_than_split_is_an_error(cifar_root):
    with pytest.raises(ValueError, match="train_size=101 is larger than the 100"):
        load_dataset("cifar10", root=cifar_root, train_size=101)


def test_malformed_batch_names_the_file(tmp_path, make_cifar):
    make_cifar(tmp_path, per_batch=3)
    with open(tmp_path / "data_batch_2", "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, fh)
    with pytest.raises(ValueError, match="data_batch_2.*3072"):
        load_dataset("cifar10", root=tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as fh:
        fh.write(b"\x80\x02}q\x00(")  # truncated pickle
    with pytest.raises(ValueError, match="data_batch_2 is not a readable CIFAR-10 batch"):
        load_dataset("cifar10", root=tmp_path)


class _RunsCode:
    """Unpickling this calls os.mkdir: stands in for any payload (os.system, eval, ...)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_batch_file_that_would_run_code_is_refused_before_running(tmp_path, make_cifar):
    make_cifar(tmp_path, per_batch=2)
    marker = tmp_path / "payload_ran"
    with open(tmp_path / "data_batch_4", "wb") as fh:
        pickle.dump({b"data": _RunsCode(marker), b"labels": [0, 1]}, fh, protocol=2)
    with pytest.raises(ForbiddenGlobalError, match="refusing to load posix.mkdir|refusing to load os.mkdir"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()
    # The same file through plain pickle would have run the payload: the test above can fail.
    with open(tmp_path / "data_batch_4", "rb") as fh:
        pickle.load(fh)
    assert marker.exists()
