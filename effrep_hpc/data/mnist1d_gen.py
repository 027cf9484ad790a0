"""MNIST-1D (Greydanus, 2020), generated locally with the ``mnist1d`` package and cached as ``.npz``.

The package's ``get_dataset`` downloads a pickle from GitHub and unpickles it; this module never
calls it. It calls ``make_dataset`` (pure numpy/scipy) and caches the arrays itself, so a compute
node without network access, or a shared file system, works the same.
"""

from __future__ import annotations

import hashlib
import json
import random
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from effrep_hpc.data.base import Dataset, check_count, check_seed, default_cache_dir, register_dataset, seeded_subset
from effrep_hpc.data.npz_cache import read_npz, write_npz_atomic

NUM_CLASSES = 10
DEFAULT_NUM_SAMPLES = 5000  # the package default: 4000 train / 1000 test
DEFAULT_DATA_SEED = 42  # the package default seed
_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "args_json")


def generation_args(num_samples: int, data_seed: int) -> dict[str, Any]:
    """The package's default generation arguments with size and seed replaced (download URL dropped)."""
    from mnist1d.data import get_dataset_args

    args = dict(get_dataset_args(as_dict=True))
    args.pop("url", None)
    args["num_samples"] = int(num_samples)
    args["seed"] = int(data_seed)
    return args


def generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` offline; returns float32 (N, 40) signals and int64 labels."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset reseeds the global numpy and python RNGs; restore them so loading data does not
    # silently change the random stream of the caller.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x_train": np.asarray(data["x"], dtype=np.float32),
        "y_train": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def cache_path(cache_dir: Path, num_samples: int, data_seed: int) -> Path:
    """Cache file for one size/seed; the package version is hashed in because it fixes every other
    generation argument (so a cache hit needs no import of the package)."""
    key = json.dumps({"num_samples": num_samples, "seed": data_seed, "mnist1d": _package_version()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(cache_dir) / "mnist1d" / f"mnist1d_n{num_samples}_seed{data_seed}_{digest}.npz"


def _cache_matches(arrays: dict[str, np.ndarray], num_samples: int, data_seed: int) -> bool:
    """True when cached arrays were generated for this size and seed."""
    try:
        stored = json.loads(str(arrays["args_json"]))
    except ValueError:
        return False
    return stored.get("num_samples") == num_samples and stored.get("seed") == data_seed


def _package_version() -> str:
    """Installed mnist1d version, read from its metadata without importing it."""
    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            "the mnist1d dataset needs the 'mnist1d' package: pip install mnist1d"
        ) from None


@register_dataset("mnist1d")
def load_mnist1d(
    *,
    root: Optional[Path] = None,
    seed: int = 0,
    cache_dir: Optional[Path] = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    data_seed: int = DEFAULT_DATA_SEED,
    train_size: Optional[int] = None,
    test_size: Optional[int] = None,
) -> Dataset:
    """MNIST-1D as (N, 1, 40) float32 signals, 10 classes, from the on-disk cache or generated once.

    ``data_seed`` and ``num_samples`` define the data (defaults: the package's own size and seed, split 80/20);
    ``seed`` only picks the optional ``train_size``/``test_size`` subsets.
    """
    num_samples = check_count(num_samples, "num_samples", minimum=2 * NUM_CLASSES)
    if num_samples % NUM_CLASSES:
        raise ValueError(
            f"num_samples must be a multiple of {NUM_CLASSES} (got {num_samples}): the generator "
            "makes num_samples // 10 signals per class"
        )
    data_seed = check_seed(data_seed, "data_seed")
    path = cache_path(Path(cache_dir) if cache_dir is not None else default_cache_dir(), num_samples, data_seed)
    arrays = read_npz(path, _ARRAYS)
    if arrays is None or not _cache_matches(arrays, num_samples, data_seed):
        # Missing, unreadable, or written for other arguments: generate and replace it.
        args = generation_args(num_samples, data_seed)
        arrays = generate_mnist1d(args)
        arrays["args_json"] = np.asarray(json.dumps(args, sort_keys=True))
        write_npz_atomic(path, arrays)
    x_train, y_train = seeded_subset(
        torch.from_numpy(arrays["x_train"]).unsqueeze(1),
        torch.from_numpy(arrays["y_train"]),
        train_size,
        seed=seed,
        stream="train",
        what="train_size",
    )
    x_test, y_test = seeded_subset(
        torch.from_numpy(arrays["x_test"]).unsqueeze(1),
        torch.from_numpy(arrays["y_test"]),
        test_size,
        seed=seed,
        stream="test",
        what="test_size",
    )
    return Dataset(
        name="mnist1d",
        x_train=x_train.contiguous(),
        y_train=y_train,
        x_test=x_test.contiguous(),
        y_test=y_test,
        num_classes=NUM_CLASSES,
        input_shape=(1, x_train.shape[-1]),
        meta={"num_samples": num_samples, "data_seed": data_seed, "cache_file": str(path)},
    )
