"""MNIST-1D: generated offline, cached as .npz on first use, reused afterwards."""

from __future__ import annotations

import random
import socket

import numpy as np
import pytest
import torch

from effrep_hpc.data import load_dataset, mnist1d_gen

SMALL = 200  # samples: 20 per class keeps generation in the tens of milliseconds


def _cache_files(cache_dir):
    return sorted((cache_dir / "mnist1d").glob("*"))


def test_default_dataset_shapes(tmp_path):
    ds = load_dataset("mnist1d", cache_dir=tmp_path)
    assert ds.input_shape == (1, 40) and ds.num_classes == 10
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert set(ds.y_train.tolist()) == set(range(10))
    # The generator standardises the whole set: mean ~0, std ~1.
    assert abs(ds.x_train.mean().item()) < 0.05 and abs(ds.x_train.std().item() - 1) < 0.05


def test_matches_the_package_generator(tmp_path):
    from mnist1d.data import get_dataset_args, make_dataset

    ds = load_dataset("mnist1d", cache_dir=tmp_path, num_samples=SMALL, data_seed=7)
    args = get_dataset_args()
    args.num_samples, args.seed = SMALL, 7
    ref = make_dataset(args)
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy(), ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test.numpy(), ref["y_test"])
    assert len(ds.y_train) == 160 and len(ds.y_test) == 40


def test_cache_is_written_once_then_reused(tmp_path, monkeypatch):
    first = load_dataset("mnist1d", cache_dir=tmp_path, num_samples=SMALL)
    files = _cache_files(tmp_path)
    assert len(files) == 1 and files[0].suffix == ".npz", files  # no stray temporary files
    with np.load(files[0], allow_pickle=False) as npz:  # plain arrays, no pickle inside
        np.testing.assert_array_equal(npz["y_train"], first.y_train.numpy())

    def must_not_run(*args, **kwargs):
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(mnist1d_gen, "generate_mnist1d", must_not_run)
    second = load_dataset("mnist1d", cache_dir=tmp_path, num_samples=SMALL)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_test, second.y_test)
    with pytest.raises(AssertionError, match="regenerated"):
        load_dataset("mnist1d", cache_dir=tmp_path, num_samples=SMALL, data_seed=1)


def test_damaged_cache_is_regenerated(tmp_path):
    first = load_dataset("mnist1d", cache_dir=tmp_path, num_samples=SMALL)
    (path,) = _cache_files(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    again = load_dataset("mnist1d", cache_dir=tmp_path, num_samples=SMALL)
    assert torch.equal(first.x_train, again.x_train)
    assert _cache_files(tmp_path) == [path] and path.stat().st_size > 1000


def test_cache_dir_defaults_to_effrep_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFREP_CACHE", str(tmp_path / "envcache"))
    load_dataset("mnist1d", num_samples=SMALL)
    assert len(_cache_files(tmp_path / "envcache")) == 1


def test_generation_uses_no_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(OSError, match="network access attempted"):  # the guard is effective
        socket.create_connection(("example.org", 443))
    ds = load_dataset("mnist1d", cache_dir=tmp_path, num_samples=SMALL)
    assert len(ds.y_train) == 160


def test_same_arguments_same_data_and_seed_only_picks_subsets(tmp_path):
    a = load_dataset("mnist1d", cache_dir=tmp_path / "a", num_samples=SMALL)
    b = load_dataset("mnist1d", cache_dir=tmp_path / "b", num_samples=SMALL, seed=9)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = load_dataset("mnist1d", cache_dir=tmp_path / "a", num_samples=SMALL, data_seed=43)
    assert not torch.equal(a.x_train, c.x_train)
    s1 = load_dataset("mnist1d", cache_dir=tmp_path / "a", num_samples=SMALL, train_size=50, seed=1)
    s2 = load_dataset("mnist1d", cache_dir=tmp_path / "a", num_samples=SMALL, train_size=50, seed=2)
    assert s1.x_train.shape == (50, 1, 40) and not torch.equal(s1.x_train, s2.x_train)


def test_global_random_state_is_left_alone(tmp_path):
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    load_dataset("mnist1d", cache_dir=tmp_path, num_samples=SMALL)  # generates: the package reseeds
    assert (np.random.rand(), random.random()) == expected


@pytest.mark.parametrize("bad", [15, 5, 0])
def test_num_samples_must_be_a_multiple_of_ten(tmp_path, bad):
    with pytest.raises(ValueError, match="num_samples"):
        load_dataset("mnist1d", cache_dir=tmp_path, num_samples=bad)
