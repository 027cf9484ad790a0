"""``load_dataset``: one entry point for every registered source, returning tensors on a device."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import torch

# The source modules register themselves in DATASETS on import.
from effrep_hpc.data import cifar10, digits, imagefolder, mnist1d_gen, synthetic  # noqa: F401
from effrep_hpc.data.base import DATASETS, Dataset, check_seed, default_cache_dir
from effrep_hpc.registry import unknown_name_message

_COMMON = ("root", "seed", "cache_dir")


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return DATASETS.names()


def dataset_options(name: str) -> dict[str, Any]:
    """The dataset-specific keyword options of ``name`` with their defaults (for help and configs)."""
    params = inspect.signature(DATASETS.get(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _COMMON and p.kind is p.KEYWORD_ONLY}


def load_dataset(
    name: str,
    *,
    root: Optional[str | Path] = None,
    seed: int = 0,
    cache_dir: Optional[str | Path] = None,
    device: str | torch.device = "cpu",
    **kw: Any,
) -> Dataset:
    """Load dataset ``name`` into memory on ``device``; unknown names and options raise with suggestions.

    ``seed`` drives randomness the loader adds (synthetic data, seeded subsets); splits that define
    a dataset (digits' ``split_seed``, mnist1d's ``data_seed``) stay fixed unless asked. An option
    given as None means "use the default", so a config can pass every optional field unconditionally.
    """
    loader = DATASETS.get(name)
    seed = check_seed(seed)
    device = torch.device(device)
    options = dataset_options(name)
    given = {k: v for k, v in kw.items() if v is not None}
    unknown = sorted(set(given) - set(options))
    if unknown:
        valid = list(options)
        raise ValueError(
            f"dataset {name!r}: " + "; ".join(unknown_name_message("option", k, valid) for k in unknown)
        )
    ds = loader(
        root=Path(root).expanduser() if root is not None else None,
        seed=seed,
        cache_dir=Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(),
        **given,
    )
    return ds.to(device)
