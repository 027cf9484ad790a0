"""load_dataset: the registry, option checking, and the contract every source keeps."""

from __future__ import annotations

import pytest
import torch

from effrep_hpc.data import DATASETS, Dataset, dataset_options, list_datasets, load_dataset

from imagefolder_helpers import make_tree


@pytest.fixture
def small_kwargs(tmp_path, cifar_root):
    """Keyword arguments that make each registered dataset small and self-contained."""
    return {
        "digits": {"train_size": 200, "test_size": 50},
        "mnist1d": {"cache_dir": tmp_path / "cache", "num_samples": 100},
        "cifar10": {"root": cifar_root},
        "synthetic": {"train_size": 64, "test_size": 16, "input_shape": (3, 8, 8)},
        "imagenet": {"root": make_tree(tmp_path / "imagenet"), "cache_dir": tmp_path / "cache", "image_size": 8},
    }


def test_registered_names():
    assert list_datasets() == ["cifar10", "digits", "imagenet", "mnist1d", "synthetic"]


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_keeps_the_contract(name, small_kwargs):
    ds = load_dataset(name, **small_kwargs[name])
    assert isinstance(ds, Dataset) and ds.name == name
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == ds.input_shape and len(x) == len(y) > 0
        assert x.device.type == "cpu" and y.device.type == "cpu"
        assert 0 <= int(y.min()) and int(y.max()) < ds.num_classes
        assert torch.isfinite(x).all()


def test_unknown_name_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean 'mnist1d'"):
        load_dataset("mnist-1d")
    with pytest.raises(KeyError, match="cifar10"):
        load_dataset("cifar")


def test_unknown_option_suggests_close_option():
    with pytest.raises(ValueError, match="unknown option 'trian_size'; did you mean 'train_size'"):
        load_dataset("digits", trian_size=10)
    with pytest.raises(ValueError, match="input_shape"):
        load_dataset("digits", input_shape=(1, 8, 8))


def test_none_options_mean_default():
    a = load_dataset("synthetic", train_size=None, test_size=None, input_shape=None, num_classes=None)
    b = load_dataset("synthetic")
    assert torch.equal(a.x_train, b.x_train)
    assert a.input_shape == dataset_options("synthetic")["input_shape"]
    d = load_dataset("digits", input_shape=None, num_classes=None)  # synthetic-only fields, unset
    assert d.input_shape == (1, 8, 8)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ValueError, match="seed"):
        load_dataset("synthetic", seed=seed)


def test_dataset_record_checks_its_tensors():
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="input_shape"):
        Dataset("t", x, y, x, y, num_classes=2, input_shape=(3,))
    with pytest.raises(ValueError, match="int64"):
        Dataset("t", x, y.int(), x, y, num_classes=2, input_shape=(2,))
    ds = Dataset("t", x, y, x, y, num_classes=2, input_shape=[2])
    assert ds.input_shape == (2,) and ds.to("cpu") is ds and ds.num_train == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_places_every_tensor():
    ds = load_dataset("synthetic", device="cuda", train_size=8, test_size=4)
    assert all(t.is_cuda for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    cpu = load_dataset("synthetic", train_size=8, test_size=4)
    assert torch.equal(ds.x_train.cpu(), cpu.x_train), "the data must not depend on the device"
