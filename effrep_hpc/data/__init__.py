"""In-memory datasets (digits, MNIST-1D, CIFAR-10, synthetic), mini-batches and augmentation.

Everything is a tensor on one device: ``load_dataset`` returns a :class:`Dataset` whose splits live
where the model runs, ``iterate_batches`` slices them, ``augment`` crops and flips on that device.
"""

from __future__ import annotations

from effrep_hpc.data.base import DATASETS, Dataset, default_cache_dir, register_dataset
from effrep_hpc.data.batches import augment, crop_flip, iterate_batches, num_batches
from effrep_hpc.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from effrep_hpc.data.loading import dataset_options, list_datasets, load_dataset

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "Dataset",
    "augment",
    "crop_flip",
    "dataset_options",
    "default_cache_dir",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
    "num_batches",
    "register_dataset",
]
